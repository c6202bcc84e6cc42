"""Concept drift: did the relation between inputs and answers change, and how?

Three tools, each small and pure:

- :func:`confidence_shift` tests whether the mean confidence moved between two windows
  (Welch's t-test, or Mann-Whitney's U on the whole distribution). Mean confidence is the
  model's own view: it moves when the inputs move to where the model is more or less sure;
  under a change of ``P(y | x)`` alone, on unchanged inputs, it cannot move (the model's
  answers depend on ``x`` only), which is what the error stream is for.
- :class:`ErrorStreamMonitor` runs one of River's detectors (ADWIN, DDM, EDDM, HDDM,
  Page-Hinkley, KSWIN) over the 0/1 error stream of labelled predictions and records where
  it fired; :func:`detection_delay` measures it against a known change point.
- :func:`classify_change` (in :mod:`prodml.monitoring.change_kind`, re-exported here) says
  whether a change over a series of window values looks sudden, gradual or recurrent.

>>> rng = np.random.default_rng(0)
>>> errors = np.concatenate([rng.random(3000) < 0.05, rng.random(3000) < 0.3])
>>> found = ErrorStreamMonitor("adwin").update_many(errors)
>>> detection_delay(found, 3000)
DetectionDelay(change_point=3000, first_detection=3071, delay=71, false_alarms=0)
>>> classify_change([0.05, 0.06, 0.05, 0.04, 0.05, 0.3], scale=0.01).kind
'sudden'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from prodml.errors import InvalidInputError
from prodml.monitoring.change_kind import ChangeFinding, classify_change  # noqa: F401 (public)


# -- a change of mean confidence ----------------------------------------------------------------
@dataclass(frozen=True)
class ConfidenceShift:
    """A two-sample test of the confidences of two windows.

    ``effect`` is the change of the mean (current - previous); ``standardized`` is Cohen's d
    for Welch's test and the rank-biserial correlation for Mann-Whitney's.
    """

    method: str
    statistic: float
    p_value: float
    effect: float
    standardized: float
    significant: bool
    alpha: float
    mean_previous: float
    mean_current: float
    n_previous: int
    n_current: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (_json(v) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


def confidence_shift(previous: Any, current: Any, *, method: str = "welch",
                     alpha: float = 0.01, min_effect: float = 0.0) -> ConfidenceShift:
    """Test whether the confidence changed between two windows.

    ``method``: ``"welch"`` (t-test without equal variances, on the means) or
    ``"mannwhitney"`` (two-sided U test, on the distributions). ``significant`` needs
    ``p_value < alpha`` and ``|effect| >= min_effect``: on windows of many thousand rows a
    change too small to matter is still significant, and ``min_effect`` says what matters.
    Null and NaN confidences are left out.

    >>> rng = np.random.default_rng(0)
    >>> shift = confidence_shift(rng.beta(8, 2, 2000), rng.beta(6, 3, 2000))
    >>> shift.significant, round(shift.effect, 2)
    (True, -0.13)
    """
    from scipy import stats

    if method not in ("welch", "mannwhitney"):
        raise InvalidInputError("method", method, "must be 'welch' or 'mannwhitney'")
    if not 0 < alpha < 1:
        raise InvalidInputError("alpha", alpha, "must be in (0, 1)")
    a, b = _finite(previous, "previous"), _finite(current, "current")
    if a.size < 2 or b.size < 2:
        side = "previous" if a.size < 2 else "current"
        raise InvalidInputError(side, f"{min(a.size, b.size)} confidences",
                                "a test needs at least 2 values per window")
    effect = float(b.mean() - a.mean())
    if method == "welch":
        with warnings.catch_warnings():  # constant windows: SciPy warns, then gives NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_ind(b, a, equal_var=False)
        pooled = math.sqrt((a.var(ddof=1) * (a.size - 1) + b.var(ddof=1) * (b.size - 1))
                           / (a.size + b.size - 2))
        if pooled > 0:
            standardized = effect / pooled
        else:  # two constant windows
            standardized = 0.0 if effect == 0 else math.copysign(math.inf, effect)
    else:
        result = stats.mannwhitneyu(b, a, alternative="two-sided")
        standardized = 2 * float(result.statistic) / (a.size * b.size) - 1
    p = float(result.pvalue)
    if math.isnan(p):  # two constant, equal windows
        p = 1.0
    return ConfidenceShift(method, float(result.statistic), p, effect, float(standardized),
                           bool(p < alpha and abs(effect) >= min_effect), alpha,
                           float(a.mean()), float(b.mean()), int(a.size), int(b.size))


# -- River's detectors over the error stream ------------------------------------------------------
def _detectors() -> dict[str, Any]:
    from river import drift

    return {"adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley, "kswin": drift.KSWIN,
            "ddm": drift.binary.DDM, "eddm": drift.binary.EDDM, "hddm_a": drift.binary.HDDMA,
            "hddm_w": drift.binary.HDDMW}


DETECTORS = ("adwin", "ddm", "eddm", "hddm_a", "hddm_w", "page_hinkley", "kswin")
# Where prodml's default differs from River's. DDM judges the error rate against the lowest
# p + s seen since its warm start; a good model makes few errors, so after River's 30 values
# a stretch without errors (p = s = 0) turns the next error into a "drift". A thousand
# values give p and s an estimate first (on a 5 %-error stream River's 30 fired twice within
# the first 150 predictions).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"ddm": {"warm_start": 1000}}


class ErrorStreamMonitor:
    """One River drift detector over the 0/1 error stream, with the positions it fired at.

    ``detector`` is a name (``"adwin"``, ``"ddm"``, ``"page_hinkley"``, ...; ``params`` go to
    its constructor, over :data:`DEFAULT_PARAMS`) or a River detector instance. Positions count the values seen, from 0,
    across every ``update``/``update_many`` call. River resets a detector after it fires, so
    one change can be reported once and a later change again. The monitor pickles whole
    (River's state included), which is how a runner keeps it between runs.

    >>> monitor = ErrorStreamMonitor("adwin")
    >>> rng = np.random.default_rng(1)
    >>> stream = np.concatenate([rng.random(2000) < 0.1, rng.random(2000) < 0.4])
    >>> found = monitor.update_many(stream)
    >>> found[0] > 2000, detection_delay(found, 2000).false_alarms
    (True, 0)
    """

    def __init__(self, detector: str | Any = "adwin", **params: Any) -> None:
        if isinstance(detector, str):
            kinds = _detectors()
            if detector not in kinds:
                raise InvalidInputError("detector", detector, "must be one of "
                                        + ", ".join(DETECTORS))
            try:
                detector = kinds[detector](**{**DEFAULT_PARAMS.get(detector, {}), **params})
            except TypeError as exc:
                raise InvalidInputError(f"{detector} parameters", sorted(params),
                                        str(exc)) from None
            self.name = next(k for k, v in kinds.items() if isinstance(detector, v))
        else:
            if not hasattr(detector, "update") or not hasattr(detector, "drift_detected"):
                raise InvalidInputError("detector", type(detector).__name__,
                                        "must be a River drift detector (update, "
                                        "drift_detected)")
            self.name = type(detector).__name__.lower()
        self.detector = detector
        self.n = 0
        self.detections: list[int] = []
        self.warnings: list[int] = []

    @property
    def drift_detected(self) -> bool:
        """Whether the last value seen made the detector fire."""
        return bool(self.detector.drift_detected)

    def update(self, error: float) -> bool:
        """Feed one value (1 = wrong, 0 = right); True when the detector fires on it."""
        self.detector.update(error)
        fired = bool(self.detector.drift_detected)
        if fired:
            self.detections.append(self.n)
        if getattr(self.detector, "warning_detected", False):
            self.warnings.append(self.n)
        self.n += 1
        return fired

    def update_many(self, errors: Any) -> list[int]:
        """Feed values in order; the positions where the detector fired in this batch."""
        values = np.asarray(errors).ravel()
        if values.dtype == bool:
            values = values.astype(np.int64)
        before = len(self.detections)
        detector, detections, warnings = self.detector, self.detections, self.warnings
        watch_warning = hasattr(detector, "warning_detected")
        position = self.n
        for value in values.tolist():  # River's detectors take one value at a time
            detector.update(value)
            if detector.drift_detected:
                detections.append(position)
            if watch_warning and detector.warning_detected:
                warnings.append(position)
            position += 1
        self.n = position
        return detections[before:]

    def to_dict(self) -> dict[str, Any]:
        """What it found (the detector's internal state travels by pickle, not here)."""
        return {"detector": self.name, "params": _params(self.detector), "seen": self.n,
                "detections": list(self.detections), "warnings": _runs(self.warnings)}


def error_stream(frame: Any, *, label: str = "label", prediction: str = "prediction",
                 order_by: str | None = "time") -> np.ndarray:
    """The 0/1 errors of a window's labelled predictions, in ``order_by`` order.

    Labels and predictions are compared as text when their types differ; a labelled row
    without a prediction counts as an error.

    >>> error_stream(pl.DataFrame({"time": [2, 1, 3], "label": [1, 0, None],
    ...                            "prediction": ["1", "1", "0"]})).tolist()
    [1, 0]
    """
    from prodml.monitoring.window_metrics import as_frame

    frame = as_frame(frame)
    for role, name in (("label", label), ("prediction", prediction), ("order_by", order_by)):
        if name is not None and name not in frame.columns:
            raise InvalidInputError(role, name, "is not a column of the window")
    rows = frame.filter(pl.col(label).is_not_null())
    if order_by is not None:
        rows = rows.sort(order_by, maintain_order=True)
    y, pred = pl.col(label), pl.col(prediction)
    if rows.schema[label] != rows.schema[prediction]:
        y, pred = y.cast(pl.String), pred.cast(pl.String)
    wrong = (y != pred).fill_null(True)
    return rows.select(wrong.cast(pl.Int8)).to_series().to_numpy()


@dataclass(frozen=True)
class DetectionDelay:
    """Detections measured against a known change point (positions in the same stream)."""

    change_point: int
    first_detection: int | None  # the first detection at or after the change
    delay: int | None  # first_detection - change_point
    false_alarms: int  # detections before the change

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def detection_delay(detections: Sequence[int], change_point: int) -> DetectionDelay:
    """How long after ``change_point`` the first detection came, and how many came before.

    >>> detection_delay([120, 5030, 7000], 5000)
    DetectionDelay(change_point=5000, first_detection=5030, delay=30, false_alarms=1)
    """
    after = [d for d in detections if d >= change_point]
    first = min(after) if after else None
    return DetectionDelay(change_point, first, None if first is None else first - change_point,
                          sum(1 for d in detections if d < change_point))


def _finite(values: Any, field: str) -> np.ndarray:
    if isinstance(values, pl.Series):
        values = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
    try:
        a = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InvalidInputError(field, type(values).__name__, "must be numbers") from None
    return a[np.isfinite(a)]


def _params(detector: Any) -> dict[str, Any]:
    try:
        return {k: v for k, v in detector._get_params().items()
                if isinstance(v, (int, float, str, bool, type(None)))}
    except AttributeError:
        return {}


def _runs(positions: list[int]) -> list[list[int]]:
    """[[first, last], ...] of consecutive positions: a warning zone is a run of values."""
    out: list[list[int]] = []
    for p in positions:
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return out


def _json(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
