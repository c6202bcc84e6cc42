"""Monitors, their series and their alerts in the store.

- a **monitor** is a :class:`~prodml.monitoring.spec.MonitorSpec` saved under its name with
  its progress: the last prediction read (the cursor), the open window's rows, the alert
  states and the concept-drift detectors (``monitors`` table);
- its **series** are one value per complete window and series name, long format
  (``monitor_results``): :func:`monitor_series` reads them back as a Polars frame;
- an **alert** is one episode of one rule, ok → firing → resolved (``alerts``): one row,
  updated when it resolves or is acknowledged.

The runner (:mod:`prodml.monitoring.runner`) writes all three in one transaction per run;
everything here is the reading side plus saving a spec and acknowledging an alert.

>>> import pandas as pd, prodml as pm
>>> from sklearn.dummy import DummyClassifier
>>> from prodml.serving.endpoints import deploy
>>> X = pd.DataFrame({"x": [0.0, 1.0]})
>>> _ = pm.models.register("loans", DummyClassifier().fit(X, [0, 1]), input_example=X)
>>> _ = deploy("loans", "loans/1")
>>> info = pm.monitor({"endpoint": "loans", "name": "loans-daily",
...                    "window": {"predictions": 500}})
>>> info.name, info.cursor_id, info.windows
('loans-daily', None, 0)
>>> monitor_series("loans-daily").columns
['monitor', 'endpoint', 'window_index', 'window_start', 'window_end', 'rows', 'series', 'value']
>>> list_alerts(monitor="loans-daily")
[]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, delete, func, select, update

from prodml.errors import InvalidInputError, NotFoundError
from prodml.monitoring.spec import MonitorSpec
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t

ALERT_STATUSES = ("firing", "resolved")
MAX_LIMIT = 10_000
SERIES_COLUMNS = {"monitor": pl.String, "endpoint": pl.String, "window_index": pl.Int64,
                  "window_start": pl.Int64, "window_end": pl.Int64, "rows": pl.Int64,
                  "series": pl.String, "value": pl.Float64}


# -- monitors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonitorInfo:
    """A saved monitor and how far it got."""

    name: str
    endpoint: str
    spec: MonitorSpec
    enabled: bool
    cursor_id: str | None  # the last prediction read
    cursor_time: int | None
    windows: int  # complete windows so far
    pending_rows: int  # rows of the window still open
    latest: dict[str, float | None]  # the last complete window's series
    latest_window_end: int | None
    last_run_at: int | None
    last_error: str | None
    created_at: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "endpoint": self.endpoint, "spec": self.spec.to_dict(),
                "enabled": self.enabled, "cursor_id": self.cursor_id,
                "cursor_time": self.cursor_time, "windows": self.windows,
                "pending_rows": self.pending_rows, "latest": self.latest,
                "latest_window_end": self.latest_window_end, "last_run_at": self.last_run_at,
                "last_error": self.last_error, "created_at": self.created_at,
                "updated_at": self.updated_at}


def save_monitor(spec: MonitorSpec | dict[str, Any] | str | os.PathLike[str], *,
                 enabled: bool = True, store: Store | None = None) -> MonitorInfo:
    """Save (or replace) a monitor; ``spec`` is a MonitorSpec, a dict, YAML text or a path.

    Replacing a monitor with the same window and reference keeps its progress: the cursor,
    the open window, the detectors and the state of every alert rule left unchanged (a
    changed or new rule starts afresh). A new window or reference starts the monitor over
    (its stored series are deleted; its alerts stay).
    """
    store = store or get_store()
    spec = MonitorSpec.load(spec)
    _check_endpoint(spec.endpoint, store)
    now = now_ms()
    values = {"endpoint": spec.endpoint, "spec": spec.to_dict(), "enabled": enabled,
              "updated_at": now}
    with store.write() as conn:
        row = conn.execute(select(t.monitors).where(t.monitors.c.name == spec.name)).first()
        if row is None:
            conn.execute(t.monitors.insert().values(
                name=spec.name, revision=0, windows=0, state=None, created_at=now, **values))
        else:
            old = MonitorSpec.load(row.spec)
            if old.window != spec.window or old.reference != spec.reference \
                    or old.endpoint != spec.endpoint or old.since != spec.since:
                conn.execute(delete(t.monitor_results)
                             .where(t.monitor_results.c.monitor == spec.name))
                values.update(cursor_id=None, cursor_time=None, windows=0, pending=None,
                              state=None, detectors=None, latest=None,
                              latest_window_end=None)
            else:
                if old.checks.concept_drift != spec.checks.concept_drift:
                    values["detectors"] = None
                values["state"] = _keep_rules(row.state, spec)
            conn.execute(update(t.monitors).where(t.monitors.c.name == spec.name)
                         .values(revision=row.revision + 1, **values))
    return get_monitor(spec.name, store=store)


def _check_endpoint(endpoint: str, store: Store) -> None:
    with store.read() as conn:
        known = conn.execute(select(t.endpoints.c.name)
                             .where(t.endpoints.c.name == endpoint)).first()
    if known is None:
        raise NotFoundError("endpoint", endpoint, "deploy a model to it before monitoring it")


def _keep_rules(state: dict[str, Any] | None, spec: MonitorSpec) -> dict[str, Any] | None:
    if not state:
        return state
    rules = {rule.name: rule.to_dict() for rule in spec.alert_rules()}
    kept = {name: s for name, s in (state.get("alerts") or {}).items()
            if name in rules and s.get("rule") == rules[name]}
    return {**state, "alerts": kept}


def get_monitor(name: str, *, store: Store | None = None) -> MonitorInfo:
    store = store or get_store()
    with store.read() as conn:
        row = conn.execute(select(*_INFO_COLUMNS).where(t.monitors.c.name == name)).first()
    if row is None:
        raise NotFoundError("monitor", name, "add it first (prodml monitor add FILE.yaml)")
    return _info(row)


def list_monitors(endpoint: str | None = None, *, store: Store | None = None
                  ) -> list[MonitorInfo]:
    store = store or get_store()
    query = select(*_INFO_COLUMNS).order_by(t.monitors.c.name)
    if endpoint is not None:
        query = query.where(t.monitors.c.endpoint == endpoint)
    with store.read() as conn:
        return [_info(row) for row in conn.execute(query)]


def delete_monitor(name: str, *, store: Store | None = None) -> None:
    """Delete a monitor and its series (its alerts stay, as history)."""
    store = store or get_store()
    get_monitor(name, store=store)
    with store.write() as conn:
        conn.execute(delete(t.monitor_results).where(t.monitor_results.c.monitor == name))
        conn.execute(delete(t.monitors).where(t.monitors.c.name == name))


_INFO_COLUMNS = [c for c in t.monitors.c if c.name not in ("pending", "detectors", "state")] + [
    func.length(t.monitors.c.pending).label("pending_bytes"),
    t.monitors.c.state]


def _info(row: Any) -> MonitorInfo:
    state = row.state or {}
    return MonitorInfo(row.name, row.endpoint, MonitorSpec.load(row.spec), bool(row.enabled),
                       row.cursor_id, row.cursor_time, row.windows,
                       int(state.get("pending_rows", 0)), dict(row.latest or {}),
                       row.latest_window_end, row.last_run_at, row.last_error, row.created_at,
                       row.updated_at)


def latest_values(*, store: Store | None = None
                  ) -> list[tuple[str, str, dict[str, float | None], int | None]]:
    """``(monitor, endpoint, {series: value}, window_end)`` of every enabled monitor's last
    complete window: one small query, what ``/metrics`` exports."""
    store = store or get_store()
    m = t.monitors
    with store.read() as conn:
        rows = conn.execute(select(m.c.name, m.c.endpoint, m.c.latest, m.c.latest_window_end)
                            .where(m.c.enabled.is_(True)).order_by(m.c.name)).all()
    return [(r.name, r.endpoint, dict(r.latest or {}), r.latest_window_end) for r in rows]


# -- series -----------------------------------------------------------------------------------
def monitor_series(monitor: str, series: str | Iterable[str] | None = None, *,
                   since: int | None = None, until: int | None = None,
                   store: Store | None = None) -> pl.DataFrame:
    """The stored series of a monitor (or of every monitor of an endpoint, when ``monitor``
    names no monitor but an endpoint), one row per window and series, oldest first.

    ``series`` is a name (``"accuracy"``), a pattern with ``*`` (``"drift_score[*]"``) or a
    list of names; ``since``/``until`` bound the window's end (ms, ``since <= end < until``).
    Columns: monitor, endpoint, window_index, window_start, window_end, rows, series, value
    (NaN where the window had no value).
    """
    store = store or get_store()
    r = t.monitor_results
    with store.read() as conn:
        named = conn.execute(select(t.monitors.c.name).where(t.monitors.c.name == monitor)
                             ).first()
        if named is not None:
            query = select(r).where(r.c.monitor == monitor)
        else:
            query = select(r).where(r.c.endpoint == monitor)
            if conn.execute(select(t.monitors.c.name).where(t.monitors.c.endpoint == monitor)
                            .limit(1)).first() is None:
                raise NotFoundError("monitor", monitor, "no monitor or monitored endpoint "
                                    "has this name")
        if isinstance(series, str):
            if "*" in series:
                pattern = series.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(r.c.series.like(pattern.replace("*", "%"), escape="\\"))
            else:
                query = query.where(r.c.series == series)
        elif series is not None:
            query = query.where(r.c.series.in_(list(series)))
        if since is not None:
            query = query.where(r.c.window_end >= since)
        if until is not None:
            query = query.where(r.c.window_end < until)
        query = query.order_by(r.c.monitor, r.c.window_index, r.c.series)
        rows = conn.execute(select(query.subquery().c[*(
            "monitor", "endpoint", "window_index", "window_start", "window_end", "num_rows",
            "series", "value")])).all()
    columns = list(zip(*rows)) if rows else [()] * len(SERIES_COLUMNS)
    frame = pl.DataFrame([pl.Series(name, values, dtype=dtype) for (name, dtype), values
                          in zip(SERIES_COLUMNS.items(), columns)])
    return frame.with_columns(pl.col("value").fill_null(math.nan))


# -- alerts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    """One alert episode of one rule (see the ``alerts`` table)."""

    id: int
    key: str
    monitor: str
    endpoint: str
    rule: str
    series: str
    severity: str
    status: str  # firing, resolved
    started_at: int  # end of the first breaching window (ms)
    fired_at: int  # end of the window that fired it (ms)
    resolved_at: int | None
    window_index: int | None
    window_start: int | None
    window_end: int | None
    value: float | None
    peak: float | None
    lower: float | None
    upper: float | None
    breaches: int
    message: str
    finding: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    acked_at: int | None = None
    acked_by: str | None = None
    updated_at: int = 0

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "acked": self.acked}


def _alert(row: Any) -> Alert:
    return Alert(row.id, row.key, row.monitor, row.endpoint, row.rule, row.series,
                 row.severity, row.status, row.started_at, row.fired_at, row.resolved_at,
                 row.window_index, row.window_start, row.window_end, row.value, row.peak,
                 row.lower, row.upper, row.breaches, row.message, row.finding,
                 list(row.actions or []), row.acked_at, row.acked_by, row.updated_at)


def list_alerts(*, monitor: str | None = None, endpoint: str | None = None,
                status: str | None = None, acked: bool | None = None,
                since: int | None = None, limit: int = 100,
                store: Store | None = None) -> list[Alert]:
    """Alerts, newest first; ``status`` is firing or resolved, ``since`` bounds ``fired_at``."""
    store = store or get_store()
    if status is not None and status not in ALERT_STATUSES:
        raise InvalidInputError("status", status, "must be firing or resolved")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError("limit", limit, f"must be an integer in 1..{MAX_LIMIT}")
    a = t.alerts
    query = select(a).order_by(a.c.fired_at.desc(), a.c.id.desc()).limit(limit)
    if monitor is not None:
        query = query.where(a.c.monitor == monitor)
    if endpoint is not None:
        query = query.where(a.c.endpoint == endpoint)
    if status is not None:
        query = query.where(a.c.status == status)
    if acked is not None:
        query = query.where(a.c.acked_at.is_not(None) if acked else a.c.acked_at.is_(None))
    if since is not None:
        query = query.where(a.c.fired_at >= since)
    with store.read() as conn:
        return [_alert(row) for row in conn.execute(query)]


def get_alert(alert_id: int | str, *, store: Store | None = None) -> Alert:
    store = store or get_store()
    number = _alert_id(alert_id)
    with store.read() as conn:
        row = conn.execute(select(t.alerts).where(t.alerts.c.id == number)).first()
    if row is None:
        raise NotFoundError("alert", number, "see prodml alerts list")
    return _alert(row)


def ack_alert(alert_id: int | str, by: str | None = None, *, store: Store | None = None
              ) -> Alert:
    """Acknowledge an alert (someone is on it); acknowledging twice keeps the first."""
    from prodml.serving.endpoints import default_actor

    store = store or get_store()
    number = _alert_id(alert_id)
    get_alert(number, store=store)
    now = now_ms()
    with store.write() as conn:
        conn.execute(update(t.alerts).where(t.alerts.c.id == number,
                                            t.alerts.c.acked_at.is_(None))
                     .values(acked_at=now, acked_by=by or default_actor(), updated_at=now))
    return get_alert(number, store=store)


def _alert_id(value: int | str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError("alert", value, "must be an alert's number") from None
    if number < 1:
        raise InvalidInputError("alert", value, "must be an alert's number (>= 1)")
    return number


def store_alert_event(conn: Connection, event: Any, *, monitor: str, endpoint: str, key: str,
                      window: dict[str, Any], first_window: dict[str, Any],
                      finding: dict[str, Any] | None, pending: list[dict[str, Any]],
                      now: int) -> int:
    """Write one transition of an alert episode (an ``AlertEvent``): a firing inserts the
    episode's row, a resolving updates it. ``window`` is the window of the transition,
    ``first_window`` the episode's first breaching one. Returns the alert's id."""
    a = t.alerts
    if event.status == "firing":
        lower, upper = event.bounds
        return conn.execute(a.insert().values(
            key=key, monitor=monitor, endpoint=endpoint, rule=event.rule, series=event.series,
            severity=event.severity, status="firing",
            started_at=first_window.get("end", window.get("end", now)),
            fired_at=window.get("end", now), window_index=event.at,
            window_start=window.get("start"), window_end=window.get("end"),
            value=_finite(event.value), peak=_finite(event.peak), lower=lower, upper=upper,
            breaches=event.breaches, message=event.message(), finding=finding,
            actions=pending, updated_at=now)).inserted_primary_key[0]
    conn.execute(update(a).where(a.c.monitor == monitor, a.c.key == key).values(
        status="resolved", resolved_at=window.get("end", now), value=_finite(event.value),
        peak=_finite(event.peak), breaches=event.breaches, updated_at=now))
    return conn.execute(select(a.c.id).where(a.c.monitor == monitor, a.c.key == key)).scalar()


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def record_actions(conn: Connection, alert_id: int, actions: list[dict[str, Any]]) -> None:
    """Set what the sinks and actions did for an alert (after they ran)."""
    conn.execute(update(t.alerts).where(t.alerts.c.id == alert_id)
                 .values(actions=actions, updated_at=now_ms()))
