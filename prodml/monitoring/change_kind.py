"""What kind of change a series of window values shows: sudden, gradual or recurrent.

:func:`classify_change` takes one value per window, oldest first (an error rate, a mean
confidence, a drift score), optionally one distribution per window, and answers with the
kind and the numbers behind it. The defaults are z = 4, k = 6 and alpha = 0.05. The *noise*
is the standard deviation of a step between consecutive windows: ``scale`` x sqrt(2) when the
noise of one window's value is known (``sqrt(p(1-p)/n)`` for a rate, ``std/sqrt(n)`` for a
mean), else 1.4826 x the median absolute deviation of the steps from their median. The rules,
in this order:

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodml.errors import InvalidInputError

KINDS = ("sudden", "gradual", "recurrent", "none")
MAD_TO_STD = 1.4826  # the MAD of a normal sample times this estimates its std
MIN_WINDOWS_FOR_NOISE = 6  # five steps: the fewest whose MAD says something about the noise


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


def _json(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
