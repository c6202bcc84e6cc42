"""What a model relies on, and whether more data would help.

``permutation_importance`` shuffles one feature at a time and measures how much the metric
drops (scikit-learn's ``permutation_importance``), for one model or several versions, overall
and within each slice: a feature can matter on one slice and not on another, and a new version
can lean on a feature the old one ignored.

``learning_curve`` trains on growing fractions of the training data and scores each model on
the same held-out data (scikit-learn's ``learning_curve``). The verdict: **more data likely
helps** when the validation score still rises at the end of the curve, i.e. when the gain per
doubling of the training data, fitted over the last three points against log2(rows), is above
``tolerance`` (half a point by default); otherwise the curve has flattened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

ALIASES = {"rmse": "neg_root_mean_squared_error", "mse": "neg_mean_squared_error",
           "mae": "neg_mean_absolute_error", "log_loss": "neg_log_loss"}
MIN_SLICE_ROWS = 30


def _scorer(metric: str) -> Any:
    from sklearn.metrics import get_scorer, get_scorer_names

    name = ALIASES.get(metric, metric)
    if name not in get_scorer_names():
        raise InvalidInputError("metric", metric, "must be a scikit-learn scorer name (e.g. "
                                "accuracy, roc_auc, f1, r2) or rmse, mse, mae, log_loss")
    return get_scorer(name)


def _frame(data: Any, label: str) -> pd.DataFrame:
    frame = data if isinstance(data, pd.DataFrame) else to_arrow(data).to_pandas()
    if label not in frame.columns:
        raise InvalidInputError("label", label, "is not a column of the data (columns: "
                                + ", ".join(map(str, frame.columns)) + ")")
    if len(frame) == 0:
        raise InvalidInputError("data", "0 rows", "needs at least one row")
    return frame


# -- permutation importance ---------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureImportance:
    """Mean and spread of the metric's drop when ``feature`` is shuffled (bigger = relied on)."""

    version: str
    slice: str
    feature: str
    mean: float
    std: float
    score: float  # the unshuffled score on this slice
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "slice": self.slice, "feature": self.feature,
                "mean": self.mean, "std": self.std, "score": self.score, "rows": self.rows}


@dataclass(frozen=True)
class ImportanceReport:
    """Importance per model version, slice and feature."""

    metric: str
    repeats: int
    rows: tuple[FeatureImportance, ...]
    sampled_from: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return list(dict.fromkeys(r.version for r in self.rows))

    @property
    def slices(self) -> list[str]:
        return list(dict.fromkeys(r.slice for r in self.rows))

    def ranking(self, version: str | None = None,
                slice: str = "overall") -> list[FeatureImportance]:
        """The features of one version on one slice, most important first."""
        version = version or self.versions[0]
        chosen = [r for r in self.rows if r.version == version and r.slice == slice]
        if not chosen:
            raise InvalidInputError("slice", f"{version} / {slice}", "has no importances (have:"
                                    f" versions {self.versions}, slices {self.slices})")
        return sorted(chosen, key=lambda r: -r.mean)

    def top(self, n: int = 5, version: str | None = None,
            slice: str = "overall") -> list[str]:
        return [r.feature for r in self.ranking(version, slice)[:n]]

    def importance(self, feature: str, version: str | None = None,
                   slice: str = "overall") -> float:
        for r in self.ranking(version, slice):
            if r.feature == feature:
                return r.mean
        raise InvalidInputError("feature", feature, "was not permuted")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "repeats": self.repeats, "sampled_from":
                self.sampled_from, "rows": [r.to_dict() for r in self.rows],
                "skipped": dict(self.skipped)}

    def summary(self, n: int = 10) -> str:
        lines = [f"Permutation importance (drop in {self.metric}, {self.repeats} repeats)"]
        for version in self.versions:
            for name in self.slices:
                ranked = [r for r in self.rows if r.version == version and r.slice == name]
                if not ranked:
                    continue
                lines.append(f"{version} / {name} ({ranked[0].rows} rows, {self.metric} "
                             f"{ranked[0].score:.4g}):")
                width = max(len(r.feature) for r in ranked)
                lines += [f"  {r.feature.ljust(width)}  {r.mean:+.4f} ± {r.std:.4f}"
                          for r in sorted(ranked, key=lambda r: -r.mean)[:n]]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def permutation_importance(model: Any, data: Any, label: str, *, slices: Any = None,
                           metric: str = "accuracy", repeats: int = 5, seed: int = 0,
                           max_rows: int = 20_000, features: list[str] | None = None,
                           min_slice_rows: int = MIN_SLICE_ROWS) -> ImportanceReport:
    """Permutation importance of each feature, per model version, overall and per slice.

    ``model`` is a fitted estimator or ``{version: estimator}``; ``data`` holds the features
    and the ``label`` column. Features are ``features``, else the model's
    ``feature_names_in_``, else every column but the label and slice columns. ``slices`` names
    columns of ``data`` or is a frame of slice columns aligned with it (e.g. from
    :func:`~prodml.evaluation.error_analysis.tag_examples`); the features are shuffled within
    each slice, and slices under ``min_slice_rows`` rows are skipped. Over ``max_rows`` rows, a
    seeded sample is used. ``metric`` is a scikit-learn scorer name (or rmse, mse, mae).

    >>> import numpy as np, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"signal": rng.normal(size=300), "noise": rng.normal(size=300)})
    >>> df["y"] = (df["signal"] > 0).astype(int)
    >>> model = LogisticRegression().fit(df[["signal", "noise"]], df["y"])
    >>> permutation_importance(model, df, "y").top(1)
    ['signal']
    """
    from sklearn.inspection import permutation_importance as sklearn_importance

    from prodml.evaluation.error_analysis import slice_masks

    if not isinstance(repeats, int) or repeats < 1:
        raise InvalidInputError("repeats", repeats, "must be a whole number >= 1")
    if not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidInputError("max_rows", max_rows, "must be a whole number >= 1")
    models = dict(model) if isinstance(model, Mapping) else {"model": model}
    if not models:
        raise InvalidInputError("model", "{}", "give at least one model")
    scorer = _scorer(metric)
    frame = _frame(data, label)
    slice_names: list[str] = []
    if isinstance(slices, (str, list, tuple)):
        slice_names = [slices] if isinstance(slices, str) else list(slices)
        masks = slice_masks(frame, slice_names)
    else:
        masks = slice_masks(slices) if slices is not None else {}
    for name, mask in masks.items():
        if len(mask) != len(frame):
            raise InvalidInputError("slices", f"{len(mask)} rows", f"must align with the data "
                                    f"({len(frame)} rows)")
    rows_total, picked = len(frame), np.arange(len(frame))
    if rows_total > max_rows:  # one seeded sample, shared by every version and slice
        picked = np.sort(np.random.default_rng(seed).choice(rows_total, max_rows, replace=False))
    frame = frame.iloc[picked].reset_index(drop=True)
    masks = {name: mask[picked] for name, mask in masks.items()}
    y = frame[label].to_numpy()
    results, skipped = [], {}
    for version, estimator in models.items():
        columns = _feature_columns(estimator, frame, label, slice_names, features)
        X = frame[columns]
        for name, mask in {"overall": np.ones(len(frame), dtype=bool), **masks}.items():
            count = int(mask.sum())
            if name != "overall" and count < min_slice_rows:
                skipped[name] = f"{count} rows (fewer than {min_slice_rows})"
                continue
            Xs = X if name == "overall" else X[mask].reset_index(drop=True)
            try:
                found = sklearn_importance(estimator, Xs, y[mask], scoring=scorer,
                                           n_repeats=repeats, random_state=seed)
                score = float(scorer(estimator, Xs, y[mask]))
            except ValueError as exc:  # e.g. roc_auc on a slice holding one class
                skipped[f"{version} / {name}"] = str(exc).splitlines()[0]
                continue
            results += [FeatureImportance(str(version), name, str(col), float(mean), float(std),
                                          score, count)
                        for col, mean, std in zip(columns, found.importances_mean,
                                                  found.importances_std)]
    return ImportanceReport(metric=metric, repeats=repeats, rows=tuple(results),
                            sampled_from=rows_total, skipped=skipped)


def _feature_columns(model: Any, frame: pd.DataFrame, label: str, slice_names: list[str],
                     features: list[str] | None) -> list[str]:
    chosen = features if features is not None else getattr(model, "feature_names_in_", None)
    if chosen is None:
        return [c for c in frame.columns if c != label and c not in slice_names]
    chosen = [str(c) for c in chosen]
    missing = [c for c in chosen if c not in frame.columns]
    if missing:
        raise InvalidInputError("features", ", ".join(missing), "are not columns of the data")
    return chosen


# -- learning curve -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LearningCurve:
    """Scores at growing training sizes; ``verdict`` says whether more data likely helps."""

    metric: str
    fractions: tuple[float, ...]
    train_rows: tuple[int, ...]
    train_scores: tuple[float, ...]
    validation_scores: tuple[float, ...]
    validation_std: tuple[float, ...]
    gain_per_doubling: float
    tolerance: float
    splits: int

    @property
    def more_data_helps(self) -> bool:
        return self.gain_per_doubling > self.tolerance

    @property
    def verdict(self) -> str:
        if math.isnan(self.gain_per_doubling):
            return "not enough points to judge"
        return ("more data likely helps" if self.more_data_helps
                else "curve has flattened: more of the same data is unlikely to help")

    @property
    def gap(self) -> float:
        """Train minus validation score at full size: large = variance (over-fitting)."""
        return self.train_scores[-1] - self.validation_scores[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "fractions": list(self.fractions),
                "train_rows": list(self.train_rows), "train_scores": list(self.train_scores),
                "validation_scores": list(self.validation_scores),
                "validation_std": list(self.validation_std), "gain_per_doubling":
                self.gain_per_doubling, "tolerance": self.tolerance, "splits": self.splits,
                "more_data_helps": self.more_data_helps, "verdict": self.verdict,
                "gap": self.gap}

    def summary(self) -> str:
        lines = [(f"Learning curve ({self.metric}, {self.splits} split(s)): {self.verdict} "
                 f"(gain per doubling {self.gain_per_doubling:+.4f}, threshold "
                 f"{self.tolerance:g})"), "fraction  rows  train  validation"]
        lines += [f"{f:>8.0%}  {n:>4}  {t:.4f}  {v:.4f} ± {s:.4f}" for f, n, t, v, s in
                  zip(self.fractions, self.train_rows, self.train_scores,
                      self.validation_scores, self.validation_std)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def learning_curve(make_model: Callable[[], Any] | Any, data: Any, label: str, *,
                   fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0),
                   metric: str = "accuracy", cv: int | None = None, test_size: float = 0.25,
                   seed: int = 0, tolerance: float = 0.005,
                   features: list[str] | None = None) -> LearningCurve:
    """Score models trained on growing ``fractions`` of the training data.

    ``make_model`` returns a fresh unfitted estimator (an estimator is cloned instead).
    Held-out data: one seeded ``test_size`` split by default, or ``cv`` shuffled folds
    (stratified for classifiers); the smaller training sets are nested prefixes of one seeded
    shuffle. See the module docstring for the verdict's rule.

    >>> import numpy as np, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"x": rng.normal(size=2000)})
    >>> df["y"] = (df["x"] + rng.normal(size=2000) > 0).astype(int)  # noisy: ~75 % at best
    >>> curve = learning_curve(LogisticRegression, df, "y", cv=3)
    >>> curve.verdict, curve.train_rows[-1]
    ('curve has flattened: more of the same data is unlikely to help', 1333)
    """
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import (KFold, ShuffleSplit, StratifiedKFold,
                                         StratifiedShuffleSplit)
    from sklearn.model_selection import learning_curve as sklearn_curve

    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not 0 < f <= 1 for f in fractions) or list(fractions) != sorted(
            set(fractions)):
        raise InvalidInputError("fractions", fractions, "must be increasing fractions in (0, 1]")
    if cv is not None and (not isinstance(cv, int) or cv < 2):
        raise InvalidInputError("cv", cv, "must be a whole number of folds >= 2 (or None for "
                                "one held-out split)")
    if not 0 < test_size < 1:
        raise InvalidInputError("test_size", test_size, "must be in (0, 1)")
    is_instance = hasattr(make_model, "fit") and not isinstance(make_model, type)
    estimator = clone(make_model) if is_instance else make_model()
    if not hasattr(estimator, "fit"):
        raise InvalidInputError("make_model", type(estimator).__name__, "must return an "
                                "estimator with fit()")
    scorer = _scorer(metric)
    frame = _frame(data, label)
    X = frame[features] if features is not None else frame.drop(columns=[label])
    y = frame[label].to_numpy()
    stratify = is_classifier(estimator)
    if cv is None:
        splitter: Any = (StratifiedShuffleSplit if stratify else ShuffleSplit)(
            n_splits=1, test_size=test_size, random_state=seed)
    else:
        splitter = (StratifiedKFold if stratify else KFold)(n_splits=cv, shuffle=True,
                                                            random_state=seed)
    try:
        sizes, train, test = sklearn_curve(estimator, X, y, train_sizes=np.array(fractions),
                                           cv=splitter, scoring=scorer, shuffle=True,
                                           random_state=seed, error_score=np.nan)
    except ValueError as exc:
        raise InvalidInputError("data", f"{len(frame)} rows", "cannot make a learning curve: "
                                + str(exc).splitlines()[0]) from None
    validation = np.nanmean(test, axis=1)
    return LearningCurve(
        metric=metric, fractions=fractions, train_rows=tuple(int(n) for n in sizes),
        train_scores=tuple(float(v) for v in np.nanmean(train, axis=1)),
        validation_scores=tuple(float(v) for v in validation),
        validation_std=tuple(float(v) for v in np.nanstd(test, axis=1)),
        gain_per_doubling=_gain_per_doubling(sizes, validation), tolerance=tolerance,
        splits=test.shape[1])


def _gain_per_doubling(sizes: np.ndarray, scores: np.ndarray) -> float:
    """Least-squares slope of score on log2(rows) over the last three points."""
    x, y = np.log2(sizes[-3:].astype(float)), scores[-3:]
    keep = ~np.isnan(y)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return math.nan
    return float(np.polyfit(x[keep], y[keep], 1)[0])
