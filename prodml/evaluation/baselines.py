"""Baselines: what performance is possible, so that a model's numbers mean something.

Two of the course's ways to establish one:

- ``quick_baseline``: a quick-and-dirty model (the majority class or mean, or a scaled linear
  model with one-hot categories), so that a team always has a number to beat;
- ``human_level_performance``: how often people's labels agree with the ground truth, overall
  and per slice (an estimate of the irreducible error, and the usual baseline for error
  analysis on unstructured data).

The course's inspection example: an inspector agrees with the ground truth on 4 of 6 parts.

>>> hlp = human_level_performance([1, 1, 1, 0, 0, 0], {"inspector": [1, 0, 1, 0, 0, 1]})
>>> round(hlp.overall, 3), hlp.as_baseline()
(0.667, {'overall': 0.6666666666666666})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

AGGREGATES = ("mean", "best", "pooled")
KINDS = ("auto", "majority", "linear")
TASKS = ("classification", "regression")
Z95 = 1.959963984540054


# -- a quick model ------------------------------------------------------------------------------
def quick_baseline(X: Any, y: Any, *, kind: str = "auto", task: str | None = None,
                   seed: int = 0) -> Any:
    """Fit a baseline model: majority class / mean (``"majority"``) or linear (``"linear"``).

    The linear baseline is a pipeline: numeric columns median-imputed and scaled, the others
    most-frequent-imputed and one-hot encoded (unknown categories ignored), then
    ``LogisticRegression`` (classification) or ``Ridge`` (regression). ``kind="auto"`` picks the
    linear model when there are at least 10 rows and some feature varies, and the majority
    baseline otherwise. ``task`` is inferred from ``y`` (scikit-learn's ``type_of_target``).

    >>> import pandas as pd
    >>> X = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0] * 5, "color": ["r", "g", "r", "g"] * 5})
    >>> y = [0, 0, 1, 1] * 5
    >>> model = quick_baseline(X, y)
    >>> type(model[-1]).__name__, model.score(X, y)
    ('LogisticRegression', 1.0)
    >>> quick_baseline(X, y, kind="majority").predict(X[:2]).tolist()
    [0, 0]
    """
    if kind not in KINDS:
        raise InvalidInputError("kind", kind, f"must be one of {', '.join(KINDS)}")
    frame = _features(X)
    target = _labels(y, "y")
    if len(target) != len(frame):
        raise InvalidInputError("y", f"{len(target)} values", f"must have one per row of X "
                                f"({len(frame)} rows)")
    if len(target) == 0:
        raise InvalidInputError("X", "0 rows", "a baseline needs at least one row")
    if pd.isna(target).any():
        raise InvalidInputError("y", f"{int(pd.isna(target).sum())} missing", "every row "
                                "needs a target: drop the unlabeled rows first")
    task = task or infer_task(target)
    if task not in TASKS:
        raise InvalidInputError("task", task, f"must be one of {', '.join(TASKS)}")
    if kind == "auto":
        varies = frame.shape[1] > 0 and bool((frame.nunique(dropna=True) > 1).any())
        kind = "linear" if len(target) >= 10 and varies else "majority"
    model = _majority(task, seed) if kind == "majority" else _linear(frame, task, seed)
    return model.fit(frame, target)


def infer_task(y: Any) -> str:
    """``"classification"`` for binary or multi-class targets, else ``"regression"``.

    >>> infer_task([0, 1, 1]), infer_task(["a", "b"]), infer_task([0.5, 1.7, 3.2])
    ('classification', 'classification', 'regression')
    """
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(np.asarray(y))
    if kind in ("binary", "multiclass"):
        return "classification"
    if kind in ("continuous", "continuous-multioutput"):
        return "regression"
    raise InvalidInputError("y", kind, "a baseline needs a single class or numeric target")


def _majority(task: str, seed: int) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if task == "classification":
        return DummyClassifier(strategy="most_frequent", random_state=seed)
    return DummyRegressor(strategy="mean")


def _linear(frame: pd.DataFrame, task: str, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    other = [c for c in frame.columns if c not in numeric]
    prepare = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                      OneHotEncoder(handle_unknown="ignore")), other)])
    head = (LogisticRegression(max_iter=1000, random_state=seed) if task == "classification"
            else Ridge(random_state=seed))
    return make_pipeline(prepare, head)


def _features(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        frame = X
    elif isinstance(X, np.ndarray) and X.ndim == 2:
        frame = pd.DataFrame(X)  # integer column names: the model takes arrays at predict time
    else:
        frame = to_arrow(X).to_pandas()
    if frame.shape[1] == 0:
        raise InvalidInputError("X", "0 columns", "a baseline needs at least one feature")
    return frame


# -- human-level performance --------------------------------------------------------------------
@dataclass(frozen=True)
class LabelerScore:
    """One labeler's agreement with the ground truth on one slice (95 % Wilson interval)."""

    labeler: str
    slice: str
    accuracy: float
    correct: int
    count: int
    interval: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {"labeler": self.labeler, "slice": self.slice, "accuracy": self.accuracy,
                "correct": self.correct, "count": self.count, "interval": list(self.interval)}


@dataclass(frozen=True)
class HumanLevelPerformance:
    """HLP overall and per slice, from every labeler's accuracy against the ground truth.

    ``aggregate`` says how labelers combine: ``mean`` (the average labeler), ``best`` (the
    most accurate) or ``pooled`` (every label counts once).
    """

    overall: float
    slices: dict[str, float]
    scores: tuple[LabelerScore, ...]
    aggregate: str = "mean"
    items: int = 0
    slice_items: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_scores(cls, scores: Any, aggregate: str = "mean", items: int = 0,
                    slice_items: dict[str, int] | None = None) -> HumanLevelPerformance:
        """HLP from labeler scores counted elsewhere (against a leave-one-out consensus, say:
        :func:`prodml.data.labels.human_level`); slices in the order the scores name them."""
        if aggregate not in AGGREGATES:
            raise InvalidInputError("aggregate", aggregate,
                                    f"must be one of {', '.join(AGGREGATES)}")
        kept = tuple(s for s in scores if s.count > 0)
        names = dict.fromkeys(["overall", *(s.slice for s in kept)])
        levels = {n: _combine([s for s in kept if s.slice == n], aggregate) for n in names}
        return cls(overall=levels.pop("overall"), slices=levels, scores=kept,
                   aggregate=aggregate, items=items, slice_items=dict(slice_items or {}))

    @property
    def labelers(self) -> list[str]:
        return list(dict.fromkeys(s.labeler for s in self.scores))

    def labeler(self, name: str, slice: str = "overall") -> LabelerScore:
        for s in self.scores:
            if s.labeler == name and s.slice == slice:
                return s
        raise InvalidInputError("labeler", f"{name} on {slice}", "has no labels there "
                                f"(labelers: {', '.join(self.labelers)})")

    def as_baseline(self) -> dict[str, float]:
        """``{"overall": hlp, slice: hlp...}`` (slices nobody labeled left out): pass it as
        ``evaluate(..., baselines={"hlp": hlp.as_baseline()})``."""
        levels = {"overall": self.overall, **self.slices}
        return {name: value for name, value in levels.items() if not math.isnan(value)}

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "slices": dict(self.slices), "aggregate":
                self.aggregate, "items": self.items, "slice_items": dict(self.slice_items),
                "labelers": self.labelers, "scores": [s.to_dict() for s in self.scores]}

    def summary(self) -> str:
        k = len(self.labelers)
        lines = [(f"Human-level performance ({self.aggregate} of {k} labeler{'s' * (k != 1)}, "
                  f"{self.items} items): {self.overall:.1%}")]
        levels = {"overall": self.overall, **self.slices}
        rows = [("slice", "items", "hlp", *self.labelers)]
        for name, level in levels.items():
            by = {s.labeler: s for s in self.scores if s.slice == name}
            rows.append((name, str(self.items if name == "overall" else
                                   self.slice_items.get(name, 0)),
                         "-" if math.isnan(level) else f"{level:.1%}",
                         *(f"{by[n].accuracy:.1%}" if n in by else "-" for n in self.labelers)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                            enumerate(zip(r, widths))) for r in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def human_level_performance(truth: Any, labels: Any, *, slices: Any = None,
                            aggregate: str = "mean") -> HumanLevelPerformance:
    """Each labeler's accuracy against ``truth``, overall and per slice, and HLP from them.

    ``labels`` is one labeler's labels, a dict ``{labeler: labels}`` or a frame with a column
    per labeler; a missing label (None/NaN) means that labeler did not label that item.
    ``slices`` holds slice columns aligned with the items (a frame or dict): a boolean column is
    a tag named by the column, any other gives one slice per value (``"line=2"``), as
    :func:`~prodml.evaluation.error_analysis.slice_masks` names them.

    >>> hlp = human_level_performance(
    ...     ["cat", "dog", "dog", "cat"],
    ...     {"ann": ["cat", "dog", "cat", "cat"], "bob": ["cat", "dog", "dog", None]},
    ...     slices={"blurry": [False, False, True, True]})
    >>> hlp.labeler("bob").accuracy, hlp.overall, hlp.slices
    (1.0, 0.875, {'blurry': 0.75})
    """
    from prodml.evaluation.error_analysis import slice_masks

    if aggregate not in AGGREGATES:
        raise InvalidInputError("aggregate", aggregate, f"must be one of {', '.join(AGGREGATES)}")
    gold = _labels(truth, "truth")
    if pd.isna(gold).any():
        raise InvalidInputError("truth", "missing values", "every item needs a ground truth")
    labelers = _labelers(labels, len(gold))
    for who, given in labelers.items():
        if family(given) not in (family(gold), "other"):
            raise InvalidInputError(f"labels[{who!r}]", family(given), f"the ground truth holds"
                                    f" {family(gold)} labels: compare like with like")
    masks = {"overall": np.ones(len(gold), dtype=bool)}
    if slices is not None:
        named = slice_masks(slices)
        for name, mask in named.items():
            if len(mask) != len(gold):
                raise InvalidInputError("slices", f"{len(mask)} rows", f"must have one row per "
                                        f"item ({len(gold)} items)")
        masks.update(named)
    scores, hlp = [], {}
    for name, mask in masks.items():
        found = [_score(who, name, gold, given, mask) for who, given in labelers.items()]
        found = [s for s in found if s.count > 0]
        scores += found
        hlp[name] = _combine(found, aggregate)
    return HumanLevelPerformance(
        overall=hlp.pop("overall"), slices=hlp, scores=tuple(scores), aggregate=aggregate,
        items=len(gold), slice_items={n: int(m.sum()) for n, m in masks.items()
                                      if n != "overall"})


def _score(who: str, slice_name: str, gold: np.ndarray, given: np.ndarray,
           mask: np.ndarray) -> LabelerScore:
    labeled = mask & ~pd.isna(given)
    count = int(labeled.sum())
    correct = int((gold[labeled] == given[labeled]).sum()) if count else 0
    return LabelerScore(who, slice_name, correct / count if count else math.nan, correct, count,
                        wilson(correct, count))


def _combine(scores: list[LabelerScore], aggregate: str) -> float:
    if not scores:
        return math.nan
    if aggregate == "best":
        return max(s.accuracy for s in scores)
    if aggregate == "pooled":
        return sum(s.correct for s in scores) / sum(s.count for s in scores)
    return float(np.mean([s.accuracy for s in scores]))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (nan, nan when ``n`` is 0).

    >>> [round(x, 3) for x in wilson(4, 6)]
    [0.3, 0.903]
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _labelers(labels: Any, n: int) -> dict[str, np.ndarray]:
    if isinstance(labels, Mapping):
        named = {str(k): _labels(v, f"labels[{k!r}]") for k, v in labels.items()}
    elif _is_frame(labels):
        table = to_arrow(labels)
        named = {c: _labels(table.column(c).to_numpy(zero_copy_only=False), f"labels[{c!r}]")
                 for c in table.column_names}
    else:
        named = {"labeler": _labels(labels, "labels")}
    if not named:
        raise InvalidInputError("labels", "no labelers", "give at least one labeler's labels")
    for who, given in named.items():
        if len(given) != n:
            raise InvalidInputError(f"labels[{who!r}]", f"{len(given)} labels",
                                    f"must have one per item ({n} items; None where unlabeled)")
    return named


def _is_frame(obj: Any) -> bool:
    import pyarrow as pa

    module = type(obj).__module__.split(".")[0]
    return isinstance(obj, pa.Table) or (module in ("pandas", "polars")
                                         and hasattr(obj, "columns"))


def _labels(values: Any, name: str) -> np.ndarray:
    """A 1-D array of labels: numbers, or text; never a mix of the two."""
    if isinstance(values, (list, tuple)):
        array = pd.Series(list(values)).to_numpy()
    elif hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        array = np.asarray(values.to_numpy())
    else:
        array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInputError(name, f"shape {array.shape}", "must be one label per item")
    if array.dtype == object:
        # a C loop over the values' types, as prodml.data.frames.MixedColumn does
        kinds = set(pd.Series(array).dropna().map(_family).unique())
        if len(kinds) > 1:
            raise InvalidInputError(name, ", ".join(sorted(kinds)), "labels must be all text "
                                    "or all numbers")
        if kinds == {"number"}:
            array = pd.to_numeric(pd.Series(array)).to_numpy(dtype=float)
    return array


def _family(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    return "number" if isinstance(value, (int, float, np.number, np.bool_)) else "other"


def family(array: np.ndarray) -> str:
    """``"number"`` or ``"text"`` (or ``"other"``): what kind of labels an array holds."""
    if array.dtype.kind in "biuf":
        return "number"
    present = pd.Series(array).dropna()
    return _family(present.iloc[0]) if len(present) else "other"
