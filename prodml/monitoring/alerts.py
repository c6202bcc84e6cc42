"""Alert rules and their state machine: ok → firing → resolved, one alert per episode.

An :class:`AlertRule` watches one series (a metric name such as ``"error_rate"`` or
``"drift_score[age]"``) through a threshold. Its :class:`AlertState` takes the series' values
window after window:

- ``ok`` (or ``resolved``): a breach counts; after ``min_consecutive`` breaches in a row the
  state turns ``firing`` and :meth:`AlertState.update` returns a ``firing`` event. A value
  inside the bounds resets the count.
- ``firing``: further breaches return nothing (deduplicated: the episode stays one alert,
  whose ``breaches`` and ``peak`` keep counting); after ``min_consecutive_ok`` values inside
  the bounds in a row it turns ``resolved`` and returns a ``resolved`` event.
- A NaN value (the window had no data for the series) changes nothing.

Everything is pure and round-trips through ``to_dict``/``from_dict``: the runner stores the
state and the events, and sends the events to sinks.

>>> from prodml.monitoring.thresholds import StaticThreshold
>>> state = AlertState(AlertRule("error_rate", StaticThreshold(upper=0.05), min_consecutive=2))
>>> [e.status if e else None for e in (state.update(v, at=i) for i, v in
...  enumerate([0.01, 0.09, 0.02, 0.08, 0.10, 0.12, 0.01]))]
[None, None, None, None, 'firing', None, 'resolved']
>>> state.status, state.alerts_fired
('resolved', 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prodml.errors import InvalidInputError
from prodml.monitoring.thresholds import Threshold, threshold_from_dict

STATUSES = ("ok", "firing", "resolved")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertRule:
    """Alert when ``series`` breaches ``threshold`` ``min_consecutive`` windows in a row.

    The rule's threshold is a template: each :class:`AlertState` learns on its own copy.
    """

    series: str
    threshold: Threshold
    min_consecutive: int = 1
    min_consecutive_ok: int = 1
    name: str = ""
    severity: str = "warning"

    def __post_init__(self) -> None:
        if not isinstance(self.series, str) or not self.series:
            raise InvalidInputError("series", self.series, "must name a monitored series")
        for name in ("min_consecutive", "min_consecutive_ok"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(name, value, "must be an integer >= 1")
        if self.severity not in SEVERITIES:
            raise InvalidInputError("severity", self.severity, "must be one of "
                                    + ", ".join(SEVERITIES))
        if not hasattr(self.threshold, "update") or not hasattr(self.threshold, "to_dict"):
            raise InvalidInputError("threshold", type(self.threshold).__name__,
                                    "must be a StaticThreshold or an AdaptiveThreshold")
        if not self.name:
            object.__setattr__(self, "name", f"{self.series} {self.threshold.describe()}"
                               if self.threshold.kind == "static" else
                               f"{self.series} outside mean ± {self.threshold.k:g}·std")

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "threshold": self.threshold.to_dict(),
                "min_consecutive": self.min_consecutive,
                "min_consecutive_ok": self.min_consecutive_ok, "name": self.name,
                "severity": self.severity}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertRule:
        return cls(series=d["series"], threshold=threshold_from_dict(dict(d["threshold"])),
                   min_consecutive=d.get("min_consecutive", 1),
                   min_consecutive_ok=d.get("min_consecutive_ok", 1),
                   name=d.get("name", ""), severity=d.get("severity", "warning"))


@dataclass(frozen=True)
class AlertEvent:
    """A transition of one alert: it started ``firing`` or it was ``resolved``.

    ``alert_id`` is the rule's name and the episode's number (``"rule#3"``): the same for
    the firing and the resolving event, so a store or a sink can deduplicate on it.
    """

    alert_id: str
    rule: str
    series: str
    status: str
    severity: str
    at: Any  # the window (time, or run number) of the transition
    value: float
    bounds: tuple[float | None, float | None]
    started_at: Any
    breaches: int  # breaching windows in the episode so far
    peak: float  # the value farthest outside the bounds in the episode

    def message(self) -> str:
        lower, upper = self.bounds
        band = (f"in [{_g(lower)}, {_g(upper)}]" if lower is not None and upper is not None
                else f">= {_g(lower)}" if lower is not None else f"<= {_g(upper)}")
        if self.status == "firing":
            return (f"{self.rule}: {self.series} = {_g(self.value)}, expected {band} "
                    f"({self.breaches} window{'s' if self.breaches != 1 else ''} in a row)")
        return (f"{self.rule}: resolved, {self.series} = {_g(self.value)} (was outside "
                f"{self.breaches} window{'s' if self.breaches != 1 else ''}, peak "
                f"{_g(self.peak)})")

    def to_dict(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "rule": self.rule, "series": self.series,
                "status": self.status, "severity": self.severity, "at": self.at,
                "value": _json(self.value), "bounds": list(self.bounds),
                "started_at": self.started_at, "breaches": self.breaches,
                "peak": _json(self.peak), "message": self.message()}


@dataclass
class AlertState:
    """The state of one rule over time (see the module's docstring for the transitions)."""

    rule: AlertRule
    threshold: Threshold | None = None  # this state's own copy, learning
    status: str = "ok"
    consecutive_breaches: int = 0
    consecutive_ok: int = 0
    alerts_fired: int = 0
    episode: dict[str, Any] | None = None  # the open alert while firing
    last_value: float = math.nan
    last_at: Any = None
    _first_breach_at: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.threshold is None:
            self.threshold = threshold_from_dict(self.rule.threshold.to_dict())
        if self.status not in STATUSES:
            raise InvalidInputError("status", self.status, "must be one of "
                                    + ", ".join(STATUSES))

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def update(self, value: float, at: Any = None) -> AlertEvent | None:
        """Take the series' value of one window; an event when the state changes."""
        if value is None or not math.isfinite(value):
            return None
        assert self.threshold is not None
        bounds = self.threshold.bounds
        breached = self.threshold.update(value)
        self.last_value, self.last_at = float(value), at
        if breached:
            self.consecutive_breaches += 1
            self.consecutive_ok = 0
            if self.consecutive_breaches == 1:
                self._first_breach_at = at
            if self.status == "firing":
                assert self.episode is not None
                self.episode["breaches"] += 1
                if _farther(value, self.episode["peak"], bounds):
                    self.episode["peak"] = float(value)
                self.episode["bounds"] = list(bounds)
                return None
            if self.consecutive_breaches >= self.rule.min_consecutive:
                self.status = "firing"
                self.alerts_fired += 1
                self.episode = {"alert_id": f"{self.rule.name}#{self.alerts_fired}",
                                "started_at": self._first_breach_at, "fired_at": at,
                                "breaches": self.consecutive_breaches, "peak": float(value),
                                "bounds": list(bounds)}
                return self._event("firing", value, at, bounds)
            return None
        self.consecutive_breaches = 0
        if self.status != "firing":
            return None
        self.consecutive_ok += 1
        if self.consecutive_ok < self.rule.min_consecutive_ok:
            return None
        event = self._event("resolved", value, at, bounds)
        self.status, self.episode, self.consecutive_ok = "resolved", None, 0
        return event

    def _event(self, status: str, value: float, at: Any,
               bounds: tuple[float | None, float | None]) -> AlertEvent:
        assert self.episode is not None
        return AlertEvent(self.episode["alert_id"], self.rule.name, self.rule.series, status,
                          self.rule.severity, at, float(value), tuple(bounds),
                          self.episode["started_at"], self.episode["breaches"],
                          self.episode["peak"])

    def to_dict(self) -> dict[str, Any]:
        assert self.threshold is not None
        return {"rule": self.rule.to_dict(), "threshold": self.threshold.to_dict(),
                "status": self.status, "consecutive_breaches": self.consecutive_breaches,
                "consecutive_ok": self.consecutive_ok, "alerts_fired": self.alerts_fired,
                "episode": self.episode, "last_value": _json(self.last_value),
                "last_at": self.last_at, "first_breach_at": self._first_breach_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertState:
        state = cls(AlertRule.from_dict(d["rule"]), threshold_from_dict(dict(d["threshold"])),
                    d.get("status", "ok"), d.get("consecutive_breaches", 0),
                    d.get("consecutive_ok", 0), d.get("alerts_fired", 0),
                    dict(d["episode"]) if d.get("episode") else None,
                    math.nan if d.get("last_value") is None else d["last_value"],
                    d.get("last_at"))
        state._first_breach_at = d.get("first_breach_at")
        return state


def update_alerts(states: Iterable[AlertState], values: Mapping[str, float],
                  at: Any = None) -> list[AlertEvent]:
    """Feed one window's series values to every state whose series is among them.

    >>> from prodml.monitoring.thresholds import StaticThreshold
    >>> states = [AlertState(AlertRule("error_rate", StaticThreshold(upper=0.1)))]
    >>> [e.alert_id for e in update_alerts(states, {"error_rate": 0.3}, at=1)]
    ['error_rate <= 0.1#1']
    """
    events = []
    for state in states:
        if state.rule.series in values:
            event = state.update(values[state.rule.series], at)
            if event is not None:
                events.append(event)
    return events


def _farther(value: float, peak: float, bounds: tuple[float | None, float | None]) -> bool:
    lower, upper = bounds
    excess = max((lower - value) if lower is not None else -math.inf,
                 (value - upper) if upper is not None else -math.inf)
    previous = max((lower - peak) if lower is not None else -math.inf,
                   (peak - upper) if upper is not None else -math.inf)
    return excess > previous


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _json(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
