"""Model performance in a window: realised from the labels that arrived, estimated without.

``realised_performance(frame)`` scores the labelled predictions of a window with the
definitions of :mod:`prodml.evaluation.metrics` (equal to scikit-learn's, per slice too) and
says how many predictions have a label (coverage) and how late the labels came (delay).

``estimate_performance(probabilities)`` is NannyML's confidence-based performance estimation
(CBPE) for binary classifiers. With calibrated probabilities ``p_j = P(y_j = 1)`` and the
predicted labels ``ŷ_j``, each prediction contributes its expected confusion counts:
``TP_j = p_j`` and ``FP_j = 1 - p_j`` when ``ŷ_j = 1``, ``FN_j = p_j`` and ``TN_j = 1 - p_j``
when ``ŷ_j = 0``. Accuracy, precision, recall and F1 are those metrics on the summed counts
(ratios of expectations, as NannyML computes them). ROC AUC is the area under the expected
ROC curve: rows ranked by the model's own score (the uncalibrated one when a calibrator
maps it), with the calibrated probabilities summed as expected positives at every threshold.

The standard errors say how far the realised metric of the same window may fall from the
estimate by chance alone when the probabilities are calibrated (labels independent
Bernoulli(p_j)): exact for accuracy and precision, delta method for recall and F1, and
Hanley & McNeil's (1982) formula with the expected class counts for ROC AUC. CBPE assumes no
concept drift: a realised metric that leaves the estimate's band once labels arrive is itself
a sign that P(y | x) moved.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = 1 / (1 + np.exp(-rng.normal(0, 2, 50_000)))
>>> y = (rng.random(p.size) < p).astype(int)
>>> est = estimate_performance(p)
>>> from sklearn.metrics import accuracy_score
>>> realised = accuracy_score(y, p >= 0.5)
>>> abs(est.metrics["accuracy"] - realised) < 3 * est.standard_errors["accuracy"]
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

import numpy as np
import polars as pl

from prodml.errors import InvalidInputError
from prodml.evaluation.metrics import cell_metrics, confusion_cells, rank_metrics
from prodml.evaluation.slices import column_codes
from prodml.monitoring.window_metrics import as_frame

AVERAGES = ("macro", "weighted")
METRICS = ("accuracy", "precision", "recall", "f1")


# -- realised ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealisedPerformance:
    """Metrics of a window's labelled predictions, overall and per slice.

    ``slices`` maps a slice column to its values, each to ``{"rows": n, "accuracy": ...}``.
    ``label_delay_s`` is the median of ``label_time - time`` over labelled rows, in seconds.
    """

    metrics: dict[str, float]
    rows: int
    labelled: int
    evaluated: int  # labelled rows with a prediction (an error has none)
    classes: tuple[str, ...]
    positive: str | None
    average: str
    label_delay_s: float = math.nan
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def label_coverage(self) -> float:
        return self.labelled / self.rows if self.rows else math.nan

    def series(self) -> dict[str, float]:
        """Flat ``{name: value}`` for the monitor's time series (slices as ``f1[col=value]``)."""
        out = dict(self.metrics)
        out["label_coverage"] = self.label_coverage
        out["label_delay_s"] = self.label_delay_s
        out["labelled"] = float(self.labelled)
        for column, values in self.slices.items():
            for value, metrics in values.items():
                for name, v in metrics.items():
                    out[f"{name}[{column}={value}]"] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": _clean(self.metrics), "rows": self.rows, "labelled": self.labelled,
                "evaluated": self.evaluated, "label_coverage": _json(self.label_coverage),
                "label_delay_s": _json(self.label_delay_s), "classes": list(self.classes),
                "positive": self.positive, "average": self.average,
                "slices": {c: {v: _clean(m) for v, m in vs.items()}
                           for c, vs in self.slices.items()}}


def realised_performance(frame: Any, *, label: str = "label", prediction: str = "prediction",
                         positive: Any = None, average: str = "macro",
                         score: str | None = None, slices: Sequence[str] = (),
                         time: str = "time", label_time: str = "label_time",
                         ) -> RealisedPerformance:
    """Accuracy, precision, recall and F1 of the window's labelled predictions.

    ``positive`` names the positive class of a binary task (precision, recall and F1 are
    then that class's, scikit-learn's ``average="binary"``); otherwise they are ``average``d
    over the classes present in the labels or the predictions (``"macro"`` or
    ``"weighted"``). Labels and predictions are compared as text when their types differ
    (the log keeps answers as JSON text). ``score`` names a column with the positive class's
    probability for ROC AUC. Rows without a label are left out; labelled rows without a
    prediction (errors) are counted in ``labelled`` but not scored.

    >>> w = pl.DataFrame({"time": [0, 0, 0, 0, 0], "label_time": [2000, 4000, None, 6000, 8000],
    ...                   "label": [1, 0, None, 1, 1], "prediction": [1, 1, 0, 1, 0]})
    >>> r = realised_performance(w, positive=1)
    >>> r.metrics["accuracy"], r.metrics["precision"], r.label_coverage, r.label_delay_s
    (0.5, 0.6666666666666666, 0.8, 5.0)
    """
    frame = as_frame(frame)
    if average not in AVERAGES:
        raise InvalidInputError("average", average, "must be 'macro' or 'weighted' (give "
                                "positive=... for a binary task's positive class)")
    for role, name in (("label", label), ("prediction", prediction), ("score", score),
                       *(("slices", s) for s in slices)):
        if name is not None and name not in frame.columns:
            raise InvalidInputError(role, name, "is not a column of the window")
    rows = frame.height
    labelled_frame = frame.filter(pl.col(label).is_not_null())
    delay = math.nan
    if label_time in frame.columns and time in frame.columns and labelled_frame.height:
        lag = (labelled_frame.get_column(label_time).cast(pl.Int64)
               - labelled_frame.get_column(time).cast(pl.Int64)).median()
        delay = math.nan if lag is None else float(lag) / 1000.0
    scored = labelled_frame.filter(pl.col(prediction).is_not_null())
    y_true, y_pred = scored.get_column(label), scored.get_column(prediction)
    if y_true.dtype != y_pred.dtype:
        y_true, y_pred = y_true.cast(pl.String), y_pred.cast(pl.String)
    codes, classes = column_codes(pl.concat([y_true, y_pred]))
    n = scored.height
    y, pred = codes[:n], codes[n:]
    k = max(len(classes), 1)
    pos_code = None
    if positive is not None:
        pos_code = classes.index(str(positive)) if str(positive) in classes else None
    families: list[tuple[str | None, np.ndarray | None, tuple[str, ...]]] = [(None, None, ("",))]
    for column in slices:
        slice_codes, names = column_codes(scored.get_column(column))
        families.append((column, slice_codes, names))
    scores = None
    if score is not None:
        scores = scored.get_column(score).cast(pl.Float64).fill_null(np.nan).to_numpy()
    overall: dict[str, float] = {}
    per_slice: dict[str, dict[str, dict[str, float]]] = {}
    for column, slice_codes, names in families:
        g = len(names)
        cells = confusion_cells(slice_codes, g, y, pred, k)
        values = _choose(cell_metrics(cells, positive=pos_code), positive, pos_code, average)
        if scores is not None and pos_code is not None:
            values["roc_auc"] = _auc(slice_codes, g, y == pos_code, scores)
        counts = cells.sum(axis=(1, 2))
        table = {names[i]: {"rows": float(counts[i]),
                            **{m: float(v[i]) for m, v in values.items()}} for i in range(g)}
        if column is None:
            overall = {m: v for m, v in table[""].items() if m != "rows"}
        else:
            per_slice[column] = table
    return RealisedPerformance(overall, rows, labelled_frame.height, n, classes,
                               None if positive is None else str(positive),
                               "binary" if positive is not None else average, delay, per_slice)


def _choose(values: dict[str, np.ndarray], positive: Any, pos_code: int | None,
            average: str) -> dict[str, np.ndarray]:
    out = {"accuracy": values["accuracy"]}
    for name in ("precision", "recall", "f1"):
        if positive is not None:
            # a positive class absent from labels and predictions: scikit-learn's 0
            out[name] = values[name] if pos_code is not None else np.where(
                np.isnan(values["accuracy"]), np.nan, 0.0)
        else:
            out[name] = values[f"{name}_{average}"]
    return out


def _auc(codes: np.ndarray | None, g: int, positive: np.ndarray,
         scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    if not finite.all():  # rows without a score are left out of the AUC only
        codes = np.where(finite, codes if codes is not None else 0, -1)
    order = np.argsort(np.where(finite, scores, 0.0), kind="stable")
    auc, _ap, _ranked = rank_metrics(codes, g, positive, np.where(finite, scores, 0.0), order)
    return auc


# -- estimated (CBPE) -------------------------------------------------------------------------
class Calibrator:
    """Maps a model's scores to calibrated probabilities: isotonic regression fitted on a
    labelled reference (as NannyML calibrates), clipped outside the reference's range.

    >>> cal = Calibrator.fit([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1])
    >>> cal([0.05, 0.95]).tolist()
    [0.0, 1.0]
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    @classmethod
    def fit(cls, scores: Any, labels: Any, *, positive: Any = 1) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression

        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels) == positive
        if s.shape != y.shape or s.ndim != 1:
            raise InvalidInputError("labels", f"{y.shape} values", f"must match the scores' "
                                    f"shape {s.shape} (one label per score)")
        if y.all() or not y.any():
            raise InvalidInputError("labels", "one class", "calibration needs labels of both "
                                    "classes")
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        return cls(model.fit(s, y.astype(np.float64)))

    def __call__(self, scores: Any) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(scores, dtype=np.float64)))


@dataclass(frozen=True)
class EstimatedPerformance:
    """CBPE's expected metrics, their standard errors and the expected confusion counts."""

    metrics: dict[str, float]
    standard_errors: dict[str, float]
    confusion: dict[str, float]  # expected tp, fp, fn, tn
    rows: int

    def series(self) -> dict[str, float]:
        """``estimated_<metric>`` and ``estimated_<metric>_se`` for the time series."""
        out = {f"estimated_{k}": v for k, v in self.metrics.items()}
        out.update({f"estimated_{k}_se": v for k, v in self.standard_errors.items()})
        return out

    def compare(self, realised: dict[str, float], z: float = 3.0) -> dict[str, dict[str, Any]]:
        """Each metric estimated and realised, their gap, and whether the gap exceeds ``z``
        standard errors (the realised value is outside the estimate's band)."""
        out = {}
        for name, est in self.metrics.items():
            if name not in realised:
                continue
            gap = realised[name] - est
            se = self.standard_errors.get(name, math.nan)
            out[name] = {"estimated": est, "realised": realised[name], "gap": gap,
                         "standard_error": se,
                         "outside_band": bool(math.isfinite(se) and abs(gap) > z * se)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": _clean(self.metrics), "standard_errors": _clean(
            self.standard_errors), "confusion": _clean(self.confusion), "rows": self.rows}


def estimate_performance(probabilities: Any, predictions: Any = None, *,
                         threshold: float = 0.5, calibrator: Calibrator | None = None,
                         positive: Any = 1) -> EstimatedPerformance:
    """CBPE for a binary classifier (see the module's docstring for the method).

    ``probabilities``: the positive class's probability per prediction, calibrated, or the
    model's raw scores together with a ``calibrator`` fitted on a labelled reference.
    ``predictions``: the predicted labels (``== positive`` is a positive prediction);
    by default ``score >= threshold``. Rows with a missing probability are left out.
    """
    raw = np.asarray(probabilities, dtype=np.float64).ravel()
    keep = np.isfinite(raw)
    if predictions is None:
        predicted = raw >= threshold
    else:
        labels = np.asarray(predictions).ravel()
        if labels.shape != raw.shape:
            raise InvalidInputError("predictions", f"{labels.size} values", f"must match the "
                                    f"{raw.size} probabilities")
        predicted = labels == positive
    raw, predicted = raw[keep], predicted[keep]
    p = calibrator(raw) if calibrator is not None else raw
    if p.size and (p.min() < 0 or p.max() > 1):
        raise InvalidInputError("probabilities", f"[{p.min():.3g}, {p.max():.3g}]",
                                "must lie in [0, 1] (pass a calibrator for raw scores)")
    n = p.size
    tp, fp = float(p[predicted].sum()), float((1 - p[predicted]).sum())
    fn, tn = float(p[~predicted].sum()), float((1 - p[~predicted]).sum())
    var = p * (1 - p)  # the variance of each row's label
    v1, v0 = float(var[predicted].sum()), float(var[~predicted].sum())
    n1 = tp + fp  # predicted positives: fixed, only the labels are random
    metrics = {"accuracy": _div(tp + tn, n), "precision": _div(tp, n1),
               "recall": _div(tp, tp + fn), "f1": _div(2 * tp, 2 * tp + fp + fn),
               "roc_auc": _expected_auc(raw, p)}
    d = tp + n1 + fn  # F1 = 2TP / (TP + n1 + FN)
    errors = {"accuracy": _div(math.sqrt(v1 + v0), n),
              "precision": _div(math.sqrt(v1), n1),
              "recall": _div(math.sqrt(fn ** 2 * v1 + tp ** 2 * v0), (tp + fn) ** 2),
              "f1": _div(2 * math.sqrt((n1 + fn) ** 2 * v1 + tp ** 2 * v0), d ** 2),
              "roc_auc": _hanley_mcneil(metrics["roc_auc"], tp + fn, fp + tn)}
    return EstimatedPerformance(metrics, errors, {"tp": tp, "fp": fp, "fn": fn, "tn": tn}, n)


def _expected_auc(scores: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve of expected counts, thresholds at the distinct scores."""
    if scores.size == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    s, q = scores[order], p[order]
    last_of_run = np.append(s[1:] != s[:-1], True)  # thresholds between distinct scores
    tps = np.cumsum(q)[last_of_run]
    fps = (np.arange(1, s.size + 1) - np.cumsum(q))[last_of_run]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return math.nan
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    return float(np.trapezoid(tpr, fpr))


def _hanley_mcneil(auc: float, n_pos: float, n_neg: float) -> float:
    if not (math.isfinite(auc) and n_pos > 0 and n_neg > 0):
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) \
        / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _json(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _clean(d: dict[str, float]) -> dict[str, float | None]:
    return {k: _json(v) for k, v in d.items()}
