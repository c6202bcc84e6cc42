"""Data drift and prior shift of a window, as series: the data issue's statistics, reused.

- :func:`window_drift` is :func:`prodml.drift` on the window's feature columns against a
  reference (a frame, or a :class:`prodml.Profile` such as the served version's training
  profile); the report is the data issue's, unchanged.
- :func:`prior_shift` compares the class distribution of the window's predictions with a
  reference distribution (training labels, or the predictions on a reference stretch) with
  the same methods (:mod:`prodml.data.drift_methods`: Jensen-Shannon by default, chi-square,
  PSI, L-infinity, ...).
- :func:`drift_series` flattens both (and the multivariate domain classifier's report) into
  ``{name: float}`` for the monitor's time series.

>>> import numpy as np, polars as pl
>>> rng = np.random.default_rng(0)
>>> ref = pl.DataFrame({"age": rng.normal(40, 10, 3000), "x": rng.normal(0, 1, 3000)})
>>> win = pl.DataFrame({"age": rng.normal(50, 10, 1000), "x": rng.normal(0, 1, 1000),
...                     "prediction": rng.choice(["a", "b"], 1000)})
>>> report = window_drift(ref, win)
>>> report.drifted_columns
['age']
>>> shift = prior_shift(win["prediction"], {"a": 0.5, "b": 0.5})
>>> shift.method, shift.drifted
('jensenshannon', False)
>>> series = drift_series(report, prior=shift)
>>> series["drifted[age]"], series["drifted[x]"], series["drift_share"]
(1.0, 0.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.errors import InvalidInputError
from prodml.monitoring.window_metrics import as_frame, feature_columns


def window_drift(reference: Any, window: Any, *, features: Sequence[str] | None = None,
                 events: Iterable[str] = (), **options: Any) -> Any:
    """:func:`prodml.drift` of the window's features (default :func:`feature_columns`)
    against ``reference`` (a frame or a profile); ``options`` go to ``prodml.drift``."""
    from prodml.data.drift import drift

    frame = as_frame(window)
    names = list(features) if features is not None else feature_columns(frame, events=events)
    if not names:
        raise InvalidInputError("features", "none", "the window has no feature column to "
                                "compare")
    return drift(reference, frame.select(names), columns=names, **options)


@dataclass(frozen=True)
class PriorShift:
    """The window's predicted-class distribution against the reference's."""

    method: str
    score: float
    statistic: float
    threshold: float
    drifted: bool
    reference: dict[str, float]  # class -> share
    current: dict[str, float]
    current_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "score": _json(self.score),
                "statistic": _json(self.statistic), "threshold": self.threshold,
                "drifted": self.drifted, "reference": self.reference,
                "current": self.current, "current_rows": self.current_rows}


def prior_shift(current: Any, reference: Any, *, method: str = "jensenshannon",
                threshold: float | None = None) -> PriorShift:
    """Compare the distribution of predicted classes with a reference distribution.

    Each side is the predicted labels (an array, a list, a Polars or pandas Series) or a
    mapping ``class -> count or share``. ``method`` is any categorical method of
    :mod:`prodml.data.drift_methods` (``"jensenshannon"``, ``"chisquare"``, ``"psi"``,
    ``"l_infinity"``, ...) with its default threshold unless ``threshold`` is given. With
    shares on the reference side, ``"chisquare"`` tests the current counts against them
    (goodness of fit), as Evidently's does.

    >>> prior_shift(["a"] * 70 + ["b"] * 30, {"a": 0.5, "b": 0.5}, method="chisquare").drifted
    True
    """
    from prodml.data.drift_methods import compare

    ref, cur = _side(reference, "reference"), _side(current, "current")
    result = compare(ref, cur, "categorical", method, threshold, column="prediction")
    return PriorShift(result.method, result.score, result.statistic, result.threshold,
                      result.drifted, _shares(ref), _shares(cur), cur.count)


def drift_series(report: Any = None, *, prior: PriorShift | None = None,
                 multivariate: Any = None) -> dict[str, float]:
    """Flatten a drift report, a prior shift and a domain-classifier report into series.

    ``drift_score[f]`` is the column's score (a p-value or a distance, as its method gives),
    ``drifted[f]`` 1 or 0, ``drift_share`` the share of drifted features, ``dataset_drift``
    1 or 0; ``prior_shift_score`` / ``prior_shift`` for the predictions;
    ``multivariate_auc`` / ``multivariate_drift`` for the domain classifier.
    """
    out: dict[str, float] = {}
    if report is not None:
        for column in report.columns:
            out[f"drift_score[{column.name}]"] = float(column.score)
            out[f"drifted[{column.name}]"] = float(column.drifted)
        out["drift_share"] = float(report.share_drifted)
        out["dataset_drift"] = float(report.dataset_drift)
        for role, col in (("label_drift", report.label), ("prediction_drift",
                                                           report.prediction)):
            if col is not None:
                out[f"{role}_score"] = float(col.score)
                out[role] = float(col.drifted)
    if prior is not None:
        out["prior_shift_score"] = float(prior.score)
        out["prior_shift"] = float(prior.drifted)
    if multivariate is not None:
        out["multivariate_auc"] = float(multivariate.auc)
        out["multivariate_drift"] = float(multivariate.drifted)
    return out


def _side(data: Any, field: str) -> Any:
    from prodml.data.drift_methods import CategoricalSide

    if isinstance(data, Mapping):
        keys = [str(k) for k in data]
        counts = np.asarray([float(v) for v in data.values()], dtype=np.float64)
        if counts.size == 0 or (counts < 0).any() or not np.isfinite(counts).all() \
                or counts.sum() <= 0:
            raise InvalidInputError(field, dict(data), "class counts or shares must be "
                                    "non-negative numbers with a positive sum")
        keep = counts > 0
        side = CategoricalSide(pa.array([k for k, m in zip(keys, keep) if m],
                                        type=pa.large_string()), counts[keep],
                               count=round(float(counts.sum())), exact=True)
        side.n = max(side.n, 1)  # shares sum to 1: still one "value" for the empty checks
        return side
    frame = as_frame(data) if not isinstance(data, (list, tuple, np.ndarray)) else None
    if frame is not None:
        column = frame.to_arrow().column(0)
    else:
        column = pa.chunked_array([pa.array([None if v is None else str(v) for v in
                                             np.asarray(data, dtype=object).ravel()],
                                            type=pa.large_string())])
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_dictionary(column.type)):
        column = column.cast(pa.large_string())
    side = CategoricalSide.from_arrow(column)
    if side.n == 0:
        raise InvalidInputError(field, "no predictions", "needs at least one non-null class")
    return side


def _shares(side: Any) -> dict[str, float]:
    total = float(side.counts.sum())
    return {k: float(c) / total for k, c in zip(side.keys.to_pylist(), side.counts)}


def _json(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
