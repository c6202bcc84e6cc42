"""Metrics for many slices at once: one pass over columnar arrays, never a loop over slices.

Every slice of a *family* (the values of a column, the cells of a cross, the bins of a number,
one predicate) carries an integer code per row (-1: the row is in none of the family's slices).
Then:

- confusion counts for every slice are one ``np.bincount`` of ``(code, true, predicted)``
  cells, and accuracy, precision, recall and F1 (per class, macro, weighted) follow from the
  ``(slices, k, k)`` array, for any leading shape (the bootstrap reuses it on replicates);
- ROC AUC and average precision come from one sort by ``(code, score)``: the Mann-Whitney rank
  sum with average ranks for ties gives the AUC, suffix counts over tied runs the precision at
  every threshold;
- log loss, calibration error and the regression errors are ``bincount`` sums with weights.

Definitions follow scikit-learn exactly (tests compare to 1e-12): a zero division gives 0
(its ``zero_division="warn"`` value); macro averages run over the classes present in the
slice's true or predicted labels; ROC AUC is NaN when a slice lacks a class (multiclass:
one-vs-rest, macro, NaN if any class lacks positives or negatives); average precision is 0
without positives; log loss clips probabilities to ``[eps, 1 - eps]``; R² is 1 for a perfect
constant fit, 0 for an imperfect one, NaN under two rows.

The expected calibration error uses 10 equal-width bins on [0, 1], binned as
``sklearn.calibration.calibration_curve(strategy="uniform")`` bins them:
``ECE = sum_b n_b / n * |observed_b - predicted_b|``. For a binary task the probability is the
positive class's and *observed* the positive rate (the reliability diagram's gap); for more
classes it is the top-label form (confidence = highest probability, observed = accuracy).

>>> import numpy as np
>>> y, pred = np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 1])
>>> cells = confusion_cells(None, 1, y, pred, 2)
>>> m = cell_metrics(cells, positive=1)
>>> float(m["accuracy"][0]), float(m["recall"][0])
(0.8, 0.6666666666666666)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = float(np.finfo(np.float64).eps)
ECE_BINS = np.linspace(0.0, 1.0, 11)
HEADLINE = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc",
                               "log_loss", "ece"),
            "regression": ("mae", "rmse", "mape", "r2")}


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """Counts of (true, predicted) labels: rows are true labels, columns predicted ones.

    >>> cm = ConfusionMatrix(labels=(0, 1), matrix=np.array([[905, 9], [18, 68]]))
    >>> cm.count(true=1, predicted=1), cm.to_dict()["labels"]
    (68, [0, 1])
    """

    labels: tuple[Any, ...]
    matrix: np.ndarray

    def count(self, true: Any, predicted: Any) -> int:
        return int(self.matrix[self.labels.index(true), self.labels.index(predicted)])

    def to_dict(self) -> dict[str, Any]:
        return {"labels": [_plain(v) for v in self.labels],
                "matrix": np.asarray(self.matrix).astype(np.int64).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfusionMatrix:
        return cls(labels=tuple(d["labels"]), matrix=np.asarray(d["matrix"], dtype=np.int64))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfusionMatrix) and self.labels == other.labels
                and np.array_equal(self.matrix, other.matrix))

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        names = [str(v) for v in self.labels]
        width = max(len(s) for s in [*names, *(str(int(v)) for v in self.matrix.ravel()),
                                     "true\\pred"])
        lines = ["true\\pred".ljust(width) + "  " + "  ".join(s.rjust(width) for s in names)]
        for name, row in zip(names, self.matrix):
            lines.append(name.ljust(width) + "  "
                         + "  ".join(str(int(v)).rjust(width) for v in row))
        return "\n".join(lines)


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _shifted(codes: np.ndarray | None, n: int) -> np.ndarray:
    """Codes + 1 so that -1 (in no slice) lands in a bin that is dropped afterwards."""
    if codes is None:
        return np.ones(n, dtype=np.int64)
    return codes.astype(np.int64) + 1


def group_sum(codes: np.ndarray | None, n_groups: int, values: np.ndarray | None,
              n: int | None = None) -> np.ndarray:
    """Per-slice sums of ``values`` (counts when None); codes of -1 are left out."""
    size = len(values) if values is not None else int(n)  # type: ignore[arg-type]
    return np.bincount(_shifted(codes, size), weights=values, minlength=n_groups + 1)[1:]


def confusion_cells(codes: np.ndarray | None, n_groups: int, y: np.ndarray, pred: np.ndarray,
                    k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """``(n_groups, k, k)`` counts (or weight sums) of (true, predicted) codes per slice."""
    index = (_shifted(codes, len(y)) * k + y) * k + pred
    flat = np.bincount(index, weights=weights, minlength=(n_groups + 1) * k * k)
    return flat[k * k:].reshape(n_groups, k, k)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), empty)


def cell_metrics(cells: np.ndarray, positive: int | None = None,
                 classes: tuple[Any, ...] | None = None) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall and F1 from ``(..., k, k)`` confusion counts.

    With ``positive`` (binary), ``precision``/``recall``/``f1`` are the positive class's; else
    they are macro averages. ``classes`` adds per-class entries, ``"f1[cat]"``.
    """
    cells = np.asarray(cells, dtype=np.float64)
    n = cells.sum(axis=(-1, -2))
    tp = np.diagonal(cells, axis1=-2, axis2=-1)
    support, predicted = cells.sum(axis=-1), cells.sum(axis=-2)
    per_class = {"precision": _ratio(tp, predicted), "recall": _ratio(tp, support),
                 "f1": _ratio(2 * tp, support + predicted)}
    present = (support > 0) | (predicted > 0)
    n_present = present.sum(axis=-1)
    out = {"accuracy": _ratio(tp.sum(axis=-1), n, np.nan)}
    for name, values in per_class.items():
        out[f"{name}_macro"] = _ratio((values * present).sum(axis=-1), n_present, np.nan)
        out[f"{name}_weighted"] = _ratio((values * support).sum(axis=-1), n, np.nan)
        out[name] = (np.where(n > 0, values[..., positive], np.nan) if positive is not None
                     else out[f"{name}_macro"])
    if classes is not None:
        for name, values in per_class.items():
            for i, c in enumerate(classes):
                out[f"{name}[{c}]"] = np.where(n > 0, values[..., i], np.nan)
    return out


def auc_ap_sorted(group: np.ndarray, positive: np.ndarray, new_run: np.ndarray,
                  n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision per group of rows sorted by (group, score) ascending.

    ``new_run`` is True where a run of equal (group, score) begins. The AUC is the
    Mann-Whitney statistic with average ranks for ties; average precision sums, over the
    distinct scores, the positives at that score times the precision of ``score >= s``.
    """
    n = len(group)
    if n == 0:
        return np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.append(starts, n))
    run_group = group[starts]
    counts = np.bincount(group, minlength=n_groups)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    y = positive.astype(np.int64)
    pos_in_run = np.add.reduceat(y, starts)
    n1 = np.bincount(run_group, weights=pos_in_run, minlength=n_groups)
    n0 = counts - n1
    mean_rank = (starts - first[run_group]) + (lengths + 1) / 2.0
    rank_sum = np.bincount(run_group, weights=pos_in_run * mean_rank, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where((n1 > 0) & (n0 > 0), (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0), np.nan)
    before = np.concatenate([[0], np.cumsum(y)])
    pos_at_or_above = n1[run_group] - (before[starts] - before[first[run_group]])
    rows_at_or_above = first[run_group] + counts[run_group] - starts
    precision = pos_at_or_above / rows_at_or_above
    ap_sum = np.bincount(run_group, weights=pos_in_run * precision, minlength=n_groups)
    ap = np.where(counts == 0, np.nan, _ratio(ap_sum, n1))
    return auc, ap


def auc_ap_rows(positive: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`auc_ap_sorted` for equal-sized groups laid out as rows of a ``(b, m)`` matrix
    (the bootstrap's replicates), each row sorted by score; ``run`` ids mark ties."""
    b, m = positive.shape
    y = positive.astype(np.float64)
    idx = np.broadcast_to(np.arange(m), (b, m))
    new = np.ones((b, m), dtype=bool)
    new[:, 1:] = run[:, 1:] != run[:, :-1]
    first = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    ends = np.ones((b, m), dtype=bool)
    ends[:, :-1] = new[:, 1:]
    last = np.minimum.accumulate(np.where(ends, idx, m - 1)[:, ::-1], axis=1)[:, ::-1]
    n1 = y.sum(axis=1)
    n0 = m - n1
    rank_sum = (y * ((first + last) / 2.0 + 1.0)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where((n1 > 0) & (n0 > 0), (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0), np.nan)
        before = np.take_along_axis(np.cumsum(y, axis=1) - y, first, axis=1)
        precision = (n1[:, None] - before) / (m - first)
        ap = np.where(n1 > 0, (y * precision).sum(axis=1) / np.where(n1 > 0, n1, 1), 0.0)
    return auc, ap


@dataclass
class Ranked:
    """A family's rows sorted by (slice, score), kept for the AUC bootstrap."""

    order: np.ndarray  # row indices
    group: np.ndarray
    run: np.ndarray  # tied-run id per sorted row
    first: np.ndarray  # first sorted position of each slice
    counts: np.ndarray


def rank_metrics(codes: np.ndarray | None, n_groups: int, positive: np.ndarray,
                 score: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, Ranked]:
    """ROC AUC and average precision per slice; ``order`` is ``argsort(score)``, shared."""
    if codes is None:
        rows, group = order, np.zeros(len(order), dtype=np.int64)
    else:
        small = codes.astype(np.int16 if n_groups < 2 ** 15 - 1 else np.int64)
        by_code = small[order]
        regroup = np.argsort(by_code, kind="stable")  # radix sort for int16
        rows, group = order[regroup], by_code[regroup].astype(np.int64)
        start = int(np.searchsorted(group, 0))
        rows, group = rows[start:], group[start:]
    s = score[rows]
    new_run = np.ones(len(rows), dtype=bool)
    new_run[1:] = (group[1:] != group[:-1]) | (s[1:] != s[:-1])
    auc, ap = auc_ap_sorted(group, positive[rows], new_run, n_groups)
    counts = np.bincount(group, minlength=n_groups)
    ranked = Ranked(rows, group, np.cumsum(new_run) - 1,
                    np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return auc, ap, ranked


def grouped_order(codes: np.ndarray | None, n_groups: int, n: int) -> Ranked:
    """Rows sorted by slice (for row-resampling bootstraps that need no score order)."""
    if codes is None:
        rows, group = np.arange(n), np.zeros(n, dtype=np.int64)
    else:
        small = codes.astype(np.int16 if n_groups < 2 ** 15 - 1 else np.int64)
        rows = np.argsort(small, kind="stable")
        group = small[rows].astype(np.int64)
        start = int(np.searchsorted(group, 0))
        rows, group = rows[start:], group[start:]
    counts = np.bincount(group, minlength=n_groups)
    return Ranked(rows, group, np.arange(len(rows)),
                  np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)


@dataclass
class Outcomes:
    """Encoded truth and predictions for one model: the input of every grouped metric.

    Classification: ``y``/``pred`` are class codes (indices into ``classes``), ``positive``
    the positive class's code when binary, ``score`` its probability (binary) or ``proba`` the
    ``(n, k)`` class probabilities. Regression: ``y``/``pred`` are floats.
    """

    task: str
    y: np.ndarray
    pred: np.ndarray
    classes: tuple[Any, ...] = ()
    positive: int | None = None
    score: np.ndarray | None = None
    proba: np.ndarray | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def k(self) -> int:
        return len(self.classes)

    def cached(self, key: str, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def row_loss(self) -> np.ndarray | None:
        """Each row's log loss (sklearn's clipping), or None without probabilities."""
        def make() -> np.ndarray | None:
            if self.score is not None:
                p_true = np.where(self.y == self.positive, self.score, 1.0 - self.score)
            elif self.proba is not None:
                p_true = self.proba[np.arange(self.n), self.y]
            else:
                return None
            return -np.log(np.clip(p_true, EPS, 1 - EPS))
        return self.cached("loss", make)

    def calibration_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(bin, probability, observed) per row for the expected calibration error."""
        def make() -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
            if self.score is not None:
                p, hit = self.score, (self.y == self.positive).astype(np.float64)
            elif self.proba is not None:
                p, hit = self.proba.max(axis=1), (self.pred == self.y).astype(np.float64)
            else:
                return None
            return np.searchsorted(ECE_BINS[1:-1], p), p, hit
        return self.cached("calibration", make)

    def family(self, codes: np.ndarray | None, n_groups: int) -> FamilyMetrics:
        """Every metric for every slice of one family (``codes`` None: all rows, one slice)."""
        counts = group_sum(codes, n_groups, None, self.n).astype(np.int64)
        if self.task == "regression":
            return FamilyMetrics(counts, self._regression(codes, n_groups, counts))
        cells = confusion_cells(codes, n_groups, self.y, self.pred, self.k)
        out = cell_metrics(cells, self.positive, self.classes)
        ranked = None
        if self.score is not None:
            order = self.cached("order", lambda: np.argsort(self.score, kind="stable"))
            out["roc_auc"], out["pr_auc"], ranked = rank_metrics(
                codes, n_groups, self.y == self.positive, self.score, order)
        elif self.proba is not None:
            out["roc_auc"], out["pr_auc"] = self._one_vs_rest(codes, n_groups)
        loss = self.row_loss()
        if loss is not None:
            out["log_loss"] = _ratio(group_sum(codes, n_groups, loss), counts, np.nan)
            bins, p, hit = self.calibration_terms()  # type: ignore[misc]
            index = (np.where(codes >= 0, codes * 10 + bins, -1) if codes is not None
                     else bins)
            gaps = np.abs(group_sum(index, n_groups * 10, hit)
                          - group_sum(index, n_groups * 10, p)).reshape(n_groups, 10)
            out["ece"] = _ratio(gaps.sum(axis=1), counts, np.nan)
        if np.any(counts == 0):
            out = {k: np.where(counts > 0, v, np.nan) for k, v in out.items()}
        return FamilyMetrics(counts, out, cells, ranked)

    def _one_vs_rest(self, codes: np.ndarray | None,
                     n_groups: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.proba is not None
        aucs, aps = [], []
        for c in range(self.k):
            column = np.ascontiguousarray(self.proba[:, c])
            order = self.cached(f"order{c}",
                                lambda column=column: np.argsort(column, kind="stable"))
            auc, ap, _ = rank_metrics(codes, n_groups, self.y == c, column, order)
            aucs.append(auc)
            aps.append(ap)
        return np.mean(aucs, axis=0), np.mean(aps, axis=0)

    def _regression(self, codes: np.ndarray | None, n_groups: int,
                    counts: np.ndarray) -> dict[str, np.ndarray]:
        err = self.pred - self.y
        sq = err * err
        mean_y = _ratio(group_sum(codes, n_groups, self.y), counts, np.nan)
        centred = self.y - (mean_y[codes] if codes is not None else mean_y[0])
        if codes is not None:
            centred = np.where(codes >= 0, centred, 0.0)
        ss_res = group_sum(codes, n_groups, sq)
        ss_tot = group_sum(codes, n_groups, centred * centred)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                          np.where(ss_res == 0, 1.0, 0.0))
        ape = np.abs(err) / np.maximum(np.abs(self.y), EPS)
        return {"mae": _ratio(group_sum(codes, n_groups, np.abs(err)), counts, np.nan),
                "rmse": np.sqrt(_ratio(ss_res, counts, np.nan)),
                "mape": _ratio(group_sum(codes, n_groups, ape), counts, np.nan),
                "r2": np.where(counts >= 2, r2, np.nan)}


@dataclass
class FamilyMetrics:
    """Per-slice counts and metric arrays of one family, plus what the bootstrap reuses."""

    counts: np.ndarray
    metrics: dict[str, np.ndarray]
    cells: np.ndarray | None = None
    ranked: Ranked | None = None

    def slice_metrics(self, g: int) -> dict[str, float]:
        return {name: float(values[g]) for name, values in self.metrics.items()}


def weighted_metrics(outcomes: Outcomes, mask: np.ndarray,
                     weights: np.ndarray) -> dict[str, float]:
    """Cost-weighted accuracy and error of a critical subset (regression: weighted MAE)."""
    w = weights[mask]
    total = float(w.sum())
    if outcomes.task == "regression":
        err = np.abs(outcomes.pred[mask] - outcomes.y[mask])
        return {"weighted_mae": float(err @ w / total) if total > 0 else np.nan,
                "error_cost": float(err @ w), "weight": total}
    wrong = (outcomes.pred[mask] != outcomes.y[mask]).astype(np.float64)
    cost = float(wrong @ w)
    return {"weighted_accuracy": 1 - cost / total if total > 0 else np.nan,
            "weighted_error": cost / total if total > 0 else np.nan,
            "error_cost": cost, "weight": total}
