"""Thresholds on a monitored series: fixed bounds, or a band learnt from past values.

A threshold answers one question per new value, ``update(value) -> breached``: is the value
outside the bounds in force? Bounds are inclusive (a value equal to a bound is inside), and
either side may be open (None). A NaN value (no data in the window) is never a breach and is
not learnt.

- :class:`StaticThreshold` keeps its bounds.
- :class:`AdaptiveThreshold` learns ``mean ± k·std`` of past values, as NannyML sets its
  thresholds from reference chunks: from a fixed reference (``reference=[...]``, learnt once),
  or from the trailing ``window`` values, re-learnt every ``relearn_every`` updates. A value
  that breaches is not learnt unless ``learn_breaches=True``, so that a level shift keeps
  breaching (and an alert keeps firing) instead of widening the band until it hides itself;
  slow movement inside the band is followed.

Both round-trip through ``to_dict``/:func:`threshold_from_dict`, state included, so a runner
can keep them between runs.

>>> band = AdaptiveThreshold(k=2, min_history=3)
>>> [band.update(v) for v in [10, 11, 9, 10, 30]]
[False, False, False, False, True]
>>> [round(b, 3) for b in band.bounds]
[8.586, 11.414]
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any
from collections.abc import Iterable

import numpy as np

from prodml.errors import InvalidInputError

DIRECTIONS = ("both", "upper", "lower")


class StaticThreshold:
    """Fixed bounds: a breach is a value below ``lower`` or above ``upper``.

    >>> t = StaticThreshold(upper=0.05)
    >>> t.update(0.01), t.update(0.2), t.describe()
    (False, True, '<= 0.05')
    """

    kind = "static"

    def __init__(self, lower: float | None = None, upper: float | None = None) -> None:
        for name, value in (("lower", lower), ("upper", upper)):
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value)):
                raise InvalidInputError(name, value, "must be a finite number or None")
        if lower is None and upper is None:
            raise InvalidInputError("threshold", "no bounds", "give lower, upper or both")
        if lower is not None and upper is not None and lower > upper:
            raise InvalidInputError("upper", upper, f"must be >= lower ({lower})")
        self.lower = None if lower is None else float(lower)
        self.upper = None if upper is None else float(upper)

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return self.lower, self.upper

    def breached(self, value: float) -> bool:
        return _outside(value, self.lower, self.upper)

    def update(self, value: float) -> bool:
        return self.breached(value)

    def describe(self) -> str:
        return _describe(self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lower": self.lower, "upper": self.upper}

    def __repr__(self) -> str:
        return f"StaticThreshold(lower={self.lower}, upper={self.upper})"


class AdaptiveThreshold:
    """A band ``mean ± k·std`` (``np.std`` with ``ddof``) learnt from past values.

    - ``reference``: values to learn from at once (the reference's windows). With
      ``relearn_every=None`` the band stays the reference's for good.
    - ``window``: how many trailing values are kept and learnt from (None: all of them).
    - ``min_history``: no bounds (no breach) until this many values are known.
    - ``relearn_every``: re-learn the band after this many updates (None: never).
    - ``direction``: ``"upper"`` or ``"lower"`` keeps one side of the band only.

    >>> t = AdaptiveThreshold(k=3, reference=[0.10, 0.12, 0.11, 0.09, 0.10],
    ...                       relearn_every=None)
    >>> t.update(0.2), t.update(0.105)
    (True, False)
    """

    kind = "adaptive"

    def __init__(self, k: float = 3.0, *, window: int | None = 20, min_history: int = 5,
                 relearn_every: int | None = 1, ddof: int = 0, direction: str = "both",
                 learn_breaches: bool = False, reference: Iterable[float] | None = None
                 ) -> None:
        if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
            raise InvalidInputError("k", k, "must be a positive number")
        for name, value, least in (("window", window, 2), ("min_history", min_history, 2),
                                   ("relearn_every", relearn_every, 1)):
            if value is not None and (not isinstance(value, int) or value < least):
                raise InvalidInputError(name, value, f"must be an integer >= {least}")
        if min_history is None:
            raise InvalidInputError("min_history", None, "must be an integer >= 2")
        if window is not None and window < min_history:
            raise InvalidInputError("window", window, f"must be >= min_history ({min_history})")
        if direction not in DIRECTIONS:
            raise InvalidInputError("direction", direction, "must be one of "
                                    + ", ".join(DIRECTIONS))
        if ddof not in (0, 1):
            raise InvalidInputError("ddof", ddof, "must be 0 or 1")
        self.k = float(k)
        self.window = window
        self.min_history = min_history
        self.relearn_every = relearn_every
        self.ddof = ddof
        self.direction = direction
        self.learn_breaches = learn_breaches
        self.history: deque[float] = deque(maxlen=window)
        self.mean = math.nan
        self.std = math.nan
        self.since_learnt = 0
        if reference is not None:
            self.learn(reference)

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        if math.isnan(self.mean):
            return None, None
        lower, upper = self.mean - self.k * self.std, self.mean + self.k * self.std
        return (None if self.direction == "upper" else lower,
                None if self.direction == "lower" else upper)

    def learn(self, values: Iterable[float]) -> None:
        """Add ``values`` to the history and re-learn the band now (a reference, a backfill)."""
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        self.history.extend(finite)
        self._relearn()

    def breached(self, value: float) -> bool:
        return _outside(value, *self.bounds)

    def update(self, value: float) -> bool:
        """Whether ``value`` breaches the band in force; then learn it on schedule."""
        if value is None or not math.isfinite(value):
            return False
        breached = self.breached(value)
        if self.relearn_every is None:
            return breached
        if not breached or self.learn_breaches:
            self.history.append(float(value))
        self.since_learnt += 1
        if self.since_learnt >= self.relearn_every:
            self._relearn()
        return breached

    def _relearn(self) -> None:
        self.since_learnt = 0
        if len(self.history) < self.min_history:
            return
        values = np.fromiter(self.history, dtype=np.float64, count=len(self.history))
        self.mean, self.std = float(np.mean(values)), float(np.std(values, ddof=self.ddof))

    def describe(self) -> str:
        lower, upper = self.bounds
        band = f"mean ± {self.k:g}·std of " + (f"the last {self.window} values"
                                               if self.window else "past values")
        if lower is None and upper is None:
            return f"{band} (learning: {len(self.history)} of {self.min_history} values)"
        return f"{_describe(lower, upper)} ({band})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k, "window": self.window,
                "min_history": self.min_history, "relearn_every": self.relearn_every,
                "ddof": self.ddof, "direction": self.direction,
                "learn_breaches": self.learn_breaches, "history": list(self.history),
                "mean": _json(self.mean), "std": _json(self.std),
                "since_learnt": self.since_learnt}

    def __repr__(self) -> str:
        return (f"AdaptiveThreshold(k={self.k:g}, window={self.window}, bounds="
                f"{self.bounds})")


Threshold = StaticThreshold | AdaptiveThreshold
CONFIG_FIELDS = ("k", "window", "min_history", "relearn_every", "ddof", "direction",
                 "learn_breaches")


def threshold_from_dict(d: dict[str, Any]) -> Threshold:
    """Rebuild a threshold (and its learnt state) from ``to_dict``'s output.

    >>> t = AdaptiveThreshold(min_history=2, reference=[1.0, 3.0])
    >>> threshold_from_dict(t.to_dict()).bounds == t.bounds
    True
    """
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind == "static":
        return StaticThreshold(d.get("lower"), d.get("upper"))
    if kind != "adaptive":
        raise InvalidInputError("threshold.kind", kind, "must be 'static' or 'adaptive'")
    t = AdaptiveThreshold(**{k: d[k] for k in CONFIG_FIELDS if k in d})
    t.history.extend(float(v) for v in d.get("history", []))
    t.mean = math.nan if d.get("mean") is None else float(d["mean"])
    t.std = math.nan if d.get("std") is None else float(d["std"])
    t.since_learnt = int(d.get("since_learnt", 0))
    return t


def _outside(value: float, lower: float | None, upper: float | None) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return (lower is not None and value < lower) or (upper is not None and value > upper)


def _describe(lower: float | None, upper: float | None) -> str:
    if lower is not None and upper is not None:
        return f"in [{lower:.4g}, {upper:.4g}]"
    return f">= {lower:.4g}" if lower is not None else f"<= {upper:.4g}"


def _json(x: float) -> float | None:
    return None if math.isnan(x) else x
