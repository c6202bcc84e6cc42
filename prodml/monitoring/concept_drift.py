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
- :func:`classify_change` says what a change looks like over a series of window values
  (z = 4, k = 6 and alpha = 0.05 by default). The *noise* is the standard deviation of a step
  between consecutive windows: ``scale`` x sqrt(2) when the noise of one window's value is
  known (``sqrt(p(1-p)/n)`` for a rate, ``std/sqrt(n)`` for a mean), else 1.4826 x the
  median absolute deviation of the steps from their median. The rules, in this order:

  1. **recurrent** when the current window moved away from the previous one and matches an
     earlier window better: with ``distributions`` (one share vector per window: classes,
     binned errors, a feature's histogram), the Jensen-Shannon distance from the current to
     the previous window is at least ``distance_threshold`` while some window before that is
     closer than both ``distance_threshold`` and the previous window; with values alone, the
     last step is a jump (rule 2's test) and an earlier window's value lies within
     ``z`` x noise / sqrt(2) of the current one.
  2. **sudden** when one step among the last ``k - 1`` stands out: its deviation from the
     median step is more than ``z`` x noise, and it makes at least half of those steps'
     total deviation (a trend spreads its change over every step).
  3. **gradual** when the last ``k`` values trend: Kendall's tau against time is significant
     (p < ``alpha``) and the values moved by at least ``z`` x noise / sqrt(2) and
     ``min_change`` from the first of them to the last.
  4. **none** otherwise.

  Estimating the noise takes at least 6 windows; with ``scale``, 3 are enough. On 12
  windows of pure noise, 1,000 series: with ``scale`` 0.2 % get a finding (gradual), with
  the noise estimated 3.5 % (2 % sudden): give ``scale`` when it is known.

>>> classify_change([0.10, 0.11, 0.09, 0.10, 0.31, 0.30]).kind
'sudden'
>>> classify_change([0.10, 0.11, 0.10, 0.14, 0.18, 0.22, 0.26, 0.30]).kind
'gradual'
>>> classify_change([0.10, 0.11, 0.30, 0.31, 0.30, 0.10]).kind
'recurrent'
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

import numpy as np
import polars as pl

from prodml.errors import InvalidInputError

KINDS = ("sudden", "gradual", "recurrent", "none")
MAD_TO_STD = 1.4826  # the MAD of a normal sample times this estimates its std
MIN_WINDOWS_FOR_NOISE = 6  # five steps: the fewest whose MAD says something about the noise


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


# -- what kind of change --------------------------------------------------------------------------
@dataclass(frozen=True)
class ChangeFinding:
    """The kind of change a series of window values shows, and the numbers behind it.

    ``window`` is the index of the window where the change shows: the first after the jump
    (sudden), the first of the ``k`` windows tested for the trend (gradual), the current one
    (recurrent).
    """

    kind: str
    window: int | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "window": self.window,
                "evidence": {k: (_json(v) if isinstance(v, float) else v)
                             for k, v in self.evidence.items()}}


def classify_change(values: Sequence[float], *, distributions: Sequence[Any] | None = None,
                    k: int = 6, z: float = 4.0, alpha: float = 0.05,
                    scale: float | None = None, min_change: float = 0.0,
                    distance_threshold: float = 0.1) -> ChangeFinding:
    """Classify the change of a series of window values (oldest first; the last is current).

    See the module's docstring for the rules, tried in order recurrent, sudden, gradual.
    ``scale`` is the noise (std) of one window's value when known (e.g. ``sqrt(p(1-p)/n)``
    for an error rate); otherwise it is estimated from the steps.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise InvalidInputError("values", f"{v.size} values", "must be a 1-D series of "
                                "finite numbers")
    if k < 3:
        raise InvalidInputError("k", k, "must be at least 3 windows")
    shares = None
    if distributions is not None:
        if len(distributions) != v.size:
            raise InvalidInputError("distributions", f"{len(distributions)} windows",
                                    f"must hold one distribution per value ({v.size})")
        shares = [_shares(d, i) for i, d in enumerate(distributions)]
    if v.size < 3 or (scale is None and v.size < MIN_WINDOWS_FOR_NOISE):
        least = 3 if scale is not None else MIN_WINDOWS_FOR_NOISE
        return ChangeFinding("none", None, {"reason": f"fewer than {least} windows"
                                            + ("" if scale is not None else
                                               " (give scale to judge fewer)")})
    steps = np.diff(v)
    median_step = float(np.median(steps))
    if scale is not None:
        noise = float(scale) * math.sqrt(2)
    else:
        noise = MAD_TO_STD * float(np.median(np.abs(steps - median_step)))
    noise = max(noise, 1e-12 * max(1.0, float(np.abs(v).max())))
    deviation = np.abs(steps - median_step)
    evidence: dict[str, Any] = {"noise": noise, "median_step": median_step}

    found = _recurrent(v, steps, deviation, noise, z, min_change, shares,
                       distance_threshold)
    if found is not None:
        return ChangeFinding("recurrent", v.size - 1, {**evidence, **found})
    recent = deviation[-(k - 1):]
    j = int(np.argmax(recent))
    jump_at = steps.size - recent.size + j
    share = float(recent[j] / recent.sum()) if recent.sum() > 0 else 0.0
    jump = {"jump": float(steps[jump_at]), "jump_z": float(recent[j] / noise),
            "jump_share": share}
    if recent[j] > z * noise and abs(steps[jump_at]) >= min_change and share >= 0.5:
        return ChangeFinding("sudden", jump_at + 1, {**evidence, **jump})
    trend = _trend(v[-k:])
    moved = abs(v[-1] - v[-k:][0])
    trend["change"] = float(moved)
    if trend["p_value"] < alpha and moved >= max(min_change, z * noise / math.sqrt(2)):
        return ChangeFinding("gradual", v.size - min(k, v.size),
                             {**evidence, **jump, **trend})
    return ChangeFinding("none", None, {**evidence, **jump, **trend})


def _recurrent(v: np.ndarray, steps: np.ndarray, deviation: np.ndarray, noise: float,
               z: float, min_change: float, shares: list[np.ndarray] | None,
               distance_threshold: float) -> dict[str, Any] | None:
    if shares is not None:
        from scipy.spatial import distance

        width = max(s.size for s in shares)
        shares = [np.pad(s, (0, width - s.size)) for s in shares]
        to_previous = float(distance.jensenshannon(shares[-1], shares[-2]))
        earlier = [float(distance.jensenshannon(shares[-1], s)) for s in shares[:-2]]
        best = int(np.argmin(earlier))
        if to_previous >= distance_threshold and earlier[best] < min(distance_threshold,
                                                                     to_previous):
            return {"matches_window": best, "distance_to_match": earlier[best],
                    "distance_to_previous": to_previous}
        return None
    if deviation[-1] <= z * noise or abs(steps[-1]) < min_change:
        return None  # the current window did not leave the previous one
    gaps = np.abs(v[:-2] - v[-1])
    best = int(np.argmin(gaps))
    if gaps[best] <= z * noise / math.sqrt(2):  # one window's noise is the step's / sqrt 2
        return {"matches_window": best, "distance_to_match": float(gaps[best]),
                "distance_to_previous": float(abs(steps[-1]))}
    return None


def _trend(v: np.ndarray) -> dict[str, float]:
    from scipy import stats

    t = np.arange(v.size)
    if np.ptp(v) == 0:
        return {"kendall_tau": 0.0, "p_value": 1.0, "slope": 0.0}
    tau = stats.kendalltau(t, v)
    slope = stats.linregress(t, v).slope
    p = float(tau.pvalue) if math.isfinite(tau.pvalue) else 1.0
    return {"kendall_tau": float(tau.statistic), "p_value": p, "slope": float(slope)}


def _shares(d: Any, i: int) -> np.ndarray:
    a = np.asarray(list(d.values()) if isinstance(d, dict) else d, dtype=np.float64).ravel()
    if a.size == 0 or (a < 0).any() or a.sum() <= 0:
        raise InvalidInputError(f"distributions[{i}]", f"{a.size} values",
                                "must be non-negative counts or shares with a positive sum")
    return a / a.sum()


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
