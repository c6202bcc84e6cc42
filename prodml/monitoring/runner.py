"""Running a monitor: read what is new in the log, close complete windows, store the series,
move the alerts, tell the sinks.

One run of :func:`run_monitor`:

1. reads the served predictions (routes primary, canary, fallback, human: never the shadow
   mirrors) logged after the monitor's cursor, up to ``now - lag`` (commits still in flight
   are left for the next run), and puts them after the rows of the window still open;
2. cuts complete windows: every ``n`` predictions, or every time span (``[k·span,
   (k+1)·span)``, complete once ``now - lag`` has passed its end); the rest stays open;
3. computes each complete window's series (:class:`~prodml.monitoring.window_checks.
   WindowChecks`): metrics, drift against the reference, prior shift, skew on the first
   window after a deployment, CBPE, the confidence test;
4. settles the windows whose labels have arrived (``performance.min_coverage`` of their
   rows labelled, or ``label_wait_windows`` newer windows closed since): realised
   performance, CBPE against realised, event rates, and the error stream through the
   concept-drift detectors, in window order;
5. feeds the values to the alert rules; an alert that fires gets a finding: the kind of
   change (``classify_change`` over the series' trailing windows, with the noise ``scale``
   of a rate where it is one) and the detection delay;
6. stores all of it in ONE transaction, compare-and-set on the monitor's revision: a crash
   leaves the previous run's state whole, and two runners never both commit a window;
7. then sends the alerts to the sinks and runs their actions, and records what they did.

A second run with nothing new reads nothing and writes only ``last_run_at``.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import delete, select, update

from prodml.errors import ProdmlError
from prodml.monitoring.alerts import AlertEvent, AlertState
from prodml.monitoring.spec import LogStretch, MonitorSpec
from prodml.monitoring.store import get_alert, record_actions, save_monitor
from prodml.monitoring.window_checks import SERVED_ROUTES, WindowChecks
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t

log = logging.getLogger("prodml.monitoring")
DEFAULT_LAG_MS = 2_000
LABEL_WAIT_WINDOWS = 20  # a window settles after this many newer windows, labelled or not
RECENT_WINDOWS = 64  # window descriptors kept in the state (settling, findings)
PENDING_MAX_ROWS = 200_000  # a larger open window is read again from the log, not stored
DEPLOY_ACTIONS = ("deploy", "promote", "switch", "rollback")


class ConcurrentRunError(ProdmlError):
    """Another run of the same monitor committed first."""


@dataclass(frozen=True)
class MonitorRun:
    """What one run did."""

    monitor: str
    endpoint: str
    read: int  # new predictions read
    windows: list[dict[str, Any]]  # closed in this run: index, start, end, rows, values
    settled: list[dict[str, Any]]  # label series of windows settled in this run
    events: list[dict[str, Any]]  # alert transitions, with the stored alert's id
    detections: list[dict[str, Any]]  # concept-drift detector firings
    pending_rows: int
    cursor_id: str | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def run_all(*, store: Store | None = None, now: int | None = None,
            lag_ms: int = DEFAULT_LAG_MS, probe: Callable[[], dict[str, float]] | None = None,
            skip_within_ms: int | None = None) -> list[MonitorRun]:
    """Run every enabled monitor once; a failing monitor is logged (and its error stored),
    the others still run. ``skip_within_ms`` skips monitors run that recently (by another
    server worker, say)."""
    store = store or get_store()
    m = t.monitors
    query = select(m.c.name).where(m.c.enabled.is_(True)).order_by(m.c.name)
    if skip_within_ms is not None:
        recent = (now_ms() if now is None else now) - skip_within_ms
        query = query.where((m.c.last_run_at.is_(None)) | (m.c.last_run_at < recent))
    with store.read() as conn:
        names = conn.execute(query).scalars().all()
    out = []
    for name in names:
        try:
            out.append(run_monitor(name, store=store, now=now, lag_ms=lag_ms, probe=probe))
        except Exception as exc:  # noqa: BLE001 - one broken monitor must not stop the rest
            log.error("monitor %s failed: %s: %s", name, type(exc).__name__, exc)
    return out


def run_monitor(monitor: str | MonitorSpec | dict[str, Any], *, store: Store | None = None,
                now: int | None = None, full: bool = False, lag_ms: int = DEFAULT_LAG_MS,
                probe: Callable[[], dict[str, float]] | None = None) -> MonitorRun:
    """Run one monitor (a saved monitor's name, or a spec, saved first) incrementally, or
    from the start of the log with ``full=True`` (its series are recomputed)."""
    store = store or get_store()
    if not isinstance(monitor, str):
        monitor = save_monitor(monitor, store=store).name
    started = time.perf_counter()
    with store.read() as conn:
        row = conn.execute(select(t.monitors).where(t.monitors.c.name == monitor)).first()
    if row is None:
        from prodml.monitoring.store import get_monitor
        get_monitor(monitor, store=store)  # raises NotFoundError
    try:
        run = _Run(row, store, full=full, now=now_ms() if now is None else now, lag_ms=lag_ms,
                   probe=probe)
        result = run.execute(started)
    except ConcurrentRunError as exc:
        return MonitorRun(monitor, row.endpoint, 0, [], [], [], [], 0, row.cursor_id,
                          time.perf_counter() - started, skipped=str(exc))
    except Exception as exc:
        with store.write() as conn:
            conn.execute(update(t.monitors).where(t.monitors.c.name == monitor).values(
                last_error=f"{type(exc).__name__}: {exc}"[:2000], last_run_at=now_ms()))
        raise
    run.deliver(result)
    return result


class _Run:
    def __init__(self, row: Any, store: Store, *, full: bool, now: int, lag_ms: int,
                 probe: Callable[[], dict[str, float]] | None) -> None:
        self.row, self.store, self.full, self.now, self.probe = row, store, full, now, probe
        self.spec = MonitorSpec.load(row.spec)
        self.name, self.endpoint = row.name, row.endpoint
        self.until = now - lag_ms
        fresh = full or not row.state
        self.state: dict[str, Any] = _fresh_state(now) if fresh else dict(row.state)
        blob = None if fresh or row.detectors is None else pickle.loads(row.detectors)
        self.checks = WindowChecks(self.spec, store)
        if blob:
            self.checks.detectors = blob.get("detectors", {})
            self.checks.previous_confidence = blob.get("previous_confidence")
        self.windows_before = 0 if full else row.windows
        self.cursor_id = None if fresh else row.cursor_id
        self.cursor_time = self.spec.since_ms if fresh else row.cursor_time
        self.alerts = {rule.name: AlertState(rule) for rule in self.spec.alert_rules()}
        for name, saved in (self.state.get("alerts") or {}).items():
            if name in self.alerts:
                self.alerts[name] = AlertState.from_dict(saved)
        if fresh and isinstance(self.spec.reference, LogStretch):
            from prodml.monitoring.window_checks import learn_from_reference
            learn_from_reference(self.spec, store, list(self.alerts.values()))
        self.actions = {rule.name: list(s.actions)
                        for rule, s in zip(self.spec.alert_rules(), self.spec.alerts)}
        self.results: list[dict[str, Any]] = []
        self.events: list[tuple[AlertEvent, dict[str, Any] | None]] = []
        self.new_values: dict[str, dict[int, float]] = {}
        self.frames: dict[int, pl.DataFrame] = {}
        self.closed_so_far = 0
        self.latest: dict[str, Any] = {} if fresh else dict(row.latest or {})
        self.latest_end = None if fresh else row.latest_window_end

    # -- reading ------------------------------------------------------------------------------
    def _chunks(self) -> Any:
        """The open window's rows (kept in the store), then the new rows slice by slice:
        ``(frame, new rows in it, the slice's upper time bound)``."""
        from prodml.monitoring.log_windows import read_new

        if not self.full and self.row.pending is not None and self.row.state:
            yield pl.read_ipc(io.BytesIO(self.row.pending)), 0, self.cursor_time or 0
        reread = None if self.full else self.state.get("pending_from")
        after_id, since = self.cursor_id, self.cursor_time
        if reread:  # an open window too large to store: read again from its first row
            after_id, since = reread["id"], reread["time"]
        known = self.state.get("pending_rows", 0) if reread else 0
        pruned = self._pruned_before()
        if pruned is not None and (since is None or since < pruned):
            # Retention pruned the log before `pruned` (labelled rows may remain): windows
            # there would be partial and their series bogus, so they are not read.
            since = pruned
        for frame, upper in read_new(self.store, self.endpoint, since=since, until=self.until,
                                     after_id=after_id, include_after=bool(reread),
                                     routes=SERVED_ROUTES):
            if frame.height:
                self.cursor_id, self.cursor_time = frame["id"][-1], int(frame["time"][-1])
            new = max(0, frame.height - known)
            known = max(0, known - frame.height)
            yield frame, new, upper

    def _pruned_before(self) -> int | None:
        from prodml.serving.retention import latest_cutoff

        with self.store.read() as conn:
            return latest_cutoff(conn, self.endpoint)

    def _cut(self, rows: pl.DataFrame, until: int | None = None
             ) -> tuple[list[dict[str, Any]], pl.DataFrame]:
        from prodml.monitoring.log_windows import cut_windows

        return cut_windows(rows, self.spec.window, self.until if until is None else until)

    # -- one run ------------------------------------------------------------------------------
    def execute(self, started: float) -> MonitorRun:
        deploys = self._deployments()
        summaries: list[dict[str, Any]] = []
        open_rows: pl.DataFrame | None = None
        read = 0
        for chunk, new, upper in self._chunks():
            read += new
            rows = chunk if open_rows is None or open_rows.height == 0 else pl.concat(
                [open_rows, chunk], how="diagonal_relaxed")
            closed, open_rows = self._cut(rows, until=min(upper, self.until))
            for window in closed:
                summaries.append(self._close(window, deploys))
        if open_rows is None:
            open_rows = pl.DataFrame()
        if summaries and self.probe is not None:  # the server's own numbers, at this run
            last = self._window(summaries[-1]["index"])
            probed = self.probe()
            self._store(last, probed)
            summaries[-1]["values"].update(probed)
            self.latest.update(_clean(probed))
        self.closed = len(summaries)
        settled, detections = self._settle()
        self._pending(open_rows)
        notes = list(self.checks.notes)
        events = self._commit()
        return MonitorRun(self.name, self.endpoint, read, summaries, settled,
                          events, detections, open_rows.height, self.cursor_id,
                          time.perf_counter() - started, notes)

    def _close(self, window: dict[str, Any], deploys: list[tuple[int, int]]
               ) -> dict[str, Any]:
        index = self.windows_before + self.closed_so_far
        self.closed_so_far += 1
        frame = window.pop("frame")
        self._deployments_through(deploys, window["start"])
        due = self.state.get("skew_due_after")
        skew = due is not None and window["start"] >= due
        values = self.checks.on_close(frame, span_s=window["span_s"], skew=skew)
        if skew:
            self.state["skew_due_after"] = None
        descriptor = {"index": index, "start": window["start"], "end": window["end"],
                      "rows": frame.height, "first_id": frame["id"][0],
                      "last_id": frame["id"][-1], "settled": not self.checks.needs_feedback()}
        self._remember(descriptor)
        if not descriptor["settled"] and self._has_feedback(descriptor):
            self.frames[index] = frame  # its labels are in already: settled from memory
            for old in [k for k in self.frames if k <= index - self._wait()]:
                del self.frames[old]  # waited its longest: read again if it has feedback
        self._store(descriptor, values)
        self.latest.update(_clean(values))
        self.latest_end = window["end"]
        return {**{k: v for k, v in descriptor.items() if k != "settled"}, "values": values}

    def _has_feedback(self, window: dict[str, Any]) -> bool:
        f = t.feedback
        with self.store.read() as conn:
            return conn.execute(select(f.c.id).where(
                f.c.prediction_id >= window["first_id"],
                f.c.prediction_id <= window["last_id"]).limit(1)).first() is not None

    def _remember(self, descriptor: dict[str, Any]) -> None:
        recent = self.state.setdefault("recent", [])
        recent.append(descriptor)
        keep = max(RECENT_WINDOWS, self._wait() + 2)
        # never drop an unsettled window: it still waits for its labels
        while len(recent) > keep and recent[0]["settled"]:
            recent.pop(0)

    def _wait(self) -> int:
        performance = self.spec.checks.performance
        return performance.label_wait_windows if performance is not None \
            else LABEL_WAIT_WINDOWS

    def _store(self, descriptor: dict[str, Any], values: dict[str, float]) -> None:
        for series, value in values.items():
            value = float(value) if value is not None else math.nan
            self.new_values.setdefault(series, {})[descriptor["index"]] = value
            self.results.append({
                "monitor": self.name, "endpoint": self.endpoint,
                "window_index": descriptor["index"], "window_start": descriptor["start"],
                "window_end": descriptor["end"], "num_rows": descriptor["rows"],
                "series": series, "value": value if math.isfinite(value) else None,
                "computed_at": self.now})
        for event in _update(self.alerts.values(), values, descriptor["index"]):
            self.events.append((event, None))

    # -- deployments --------------------------------------------------------------------------
    def _deployments(self) -> list[tuple[int, int]]:
        seen = self.state.get("deploy_event_id", 0)
        e = t.deployment_events
        with self.store.read() as conn:
            rows = conn.execute(select(e.c.id, e.c.time, e.c.action).where(
                e.c.endpoint == self.endpoint, e.c.id > seen).order_by(e.c.id)).all()
        return [(r.id, r.time) for r in rows if r.action in DEPLOY_ACTIONS] + (
            [(rows[-1].id, -1)] if rows else [])

    def _deployments_through(self, deploys: list[tuple[int, int]], start: int) -> None:
        # a deployment at or before a window's start makes it the first window after it
        while deploys and deploys[0][1] <= start:
            event_id, at = deploys.pop(0)
            self.state["deploy_event_id"] = max(self.state.get("deploy_event_id", 0), event_id)
            if at >= 0:
                self.state["skew_due_after"] = at

    # -- labels -------------------------------------------------------------------------------
    def _settle(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        from prodml.monitoring.log_windows import join_feedback, window_feedback

        waiting = [w for w in self.state.get("recent", []) if not w["settled"]]
        if not waiting:
            return [], []
        feedback = window_feedback(self.store, self.endpoint, waiting[0]["first_id"],
                                   waiting[-1]["last_id"], routes=SERVED_ROUTES)
        performance = self.spec.checks.performance
        min_coverage = performance.min_coverage if performance is not None else 0.5
        newest = self.state["recent"][-1]["index"]
        labelled_ids = feedback[0]["prediction_id"] if feedback[0] is not None else None
        any_ids = pl.concat([f["prediction_id"] for f in feedback if f is not None]) \
            if any(f is not None for f in feedback) else None
        settled, detections = [], []
        for window in waiting:
            first, last = pl.lit(window["first_id"]), pl.lit(window["last_id"])
            labelled = 0 if labelled_ids is None else int(
                labelled_ids.is_between(first, last).sum())
            if labelled / window["rows"] < min_coverage and newest - window["index"] < \
                    self._wait():
                break  # windows settle in order: the error stream keeps its order
            window["stream_start"] = self.checks.stream_position()
            if any_ids is None or not any_ids.is_between(first, last).any():
                values, found = self.checks.without_feedback(window["rows"]), []
            else:  # its rows (in memory if closed in this run) with their feedback
                frame = self._window_frame(window)
                if frame.height == 0:  # pruned by retention since it closed
                    values, found = self.checks.without_feedback(window["rows"]), []
                else:
                    values, found = self.checks.on_settle(join_feedback(frame, *feedback))
            self.frames.pop(window["index"], None)
            window["settled"] = True
            self._store(window, values)
            self.latest.update(_clean(values))
            for detection in found:
                detections.append({**detection, "window_index": window["index"]})
            self.state.setdefault("detections", []).extend(
                {**d, "window_index": window["index"]} for d in found)
            self.state["detections"] = self.state["detections"][-100:]
            settled.append({"index": window["index"], "values": values})
        return settled, detections

    def _window_frame(self, window: dict[str, Any]) -> pl.DataFrame:
        if window["index"] in self.frames:
            return self.frames[window["index"]]
        from prodml.monitoring.log_windows import window_rows

        return window_rows(self.store, self.endpoint, window, routes=SERVED_ROUTES)

    def _pending(self, open_rows: pl.DataFrame) -> None:
        self.state["pending_rows"] = open_rows.height
        self.state.pop("pending_from", None)
        self.pending_blob = None
        if open_rows.height > PENDING_MAX_ROWS:
            self.state["pending_from"] = {"id": open_rows["id"][0],
                                          "time": int(open_rows["time"][0])}
        elif open_rows.height:
            buffer = io.BytesIO()
            open_rows.write_ipc(buffer, compression="lz4")
            self.pending_blob = buffer.getvalue()

    # -- storing ------------------------------------------------------------------------------
    def _commit(self) -> list[dict[str, Any]]:
        self.state["alerts"] = {name: s.to_dict() for name, s in self.alerts.items()}
        detectors = pickle.dumps({"detectors": self.checks.detectors,
                                  "previous_confidence": self.checks.previous_confidence})
        findings = [self._finding(event) if event.status == "firing" else None
                    for event, _ in self.events]  # read before the write transaction
        m = t.monitors
        stored = []
        with self.store.write() as conn:
            done = conn.execute(update(m).where(m.c.name == self.name,
                                                m.c.revision == self.row.revision).values(
                revision=self.row.revision + 1, cursor_id=self.cursor_id,
                cursor_time=self.cursor_time,
                windows=self.windows_before + self.closed,
                pending=self.pending_blob, state=self.state, detectors=detectors,
                latest=self.latest or None, latest_window_end=self.latest_end,
                last_run_at=self.now, last_error=None, updated_at=now_ms()))
            if done.rowcount != 1:
                raise ConcurrentRunError(f"monitor {self.name!r} was changed or run by "
                                         "someone else meanwhile; nothing stored")
            if self.full:
                conn.execute(delete(t.monitor_results)
                             .where(t.monitor_results.c.monitor == self.name))
            if self.results:
                conn.execute(t.monitor_results.insert(), self.results)
            for (event, _), finding in zip(self.events, findings):
                stored.append(self._store_event(conn, event, finding))
        return stored

    def _finding(self, event: AlertEvent) -> dict[str, Any]:
        from prodml.monitoring.findings import finding

        concept = self.spec.checks.concept_drift
        return finding(event, store=self.store, monitor=self.name, state=self.state,
                       new_values=self.new_values, stored=not self.full,
                       trend_windows=concept.trend_windows if concept is not None else 6)

    def _window(self, index: Any) -> dict[str, Any]:
        for window in self.state.get("recent", []):
            if window["index"] == index:
                return window
        return {}

    def _store_event(self, conn: Any, event: AlertEvent, finding: dict[str, Any] | None
                     ) -> dict[str, Any]:
        from prodml.monitoring.store import store_alert_event

        pending = [{"sink": s.type, "ok": None, "detail": "pending"} for s in self.spec.sinks
                   ] + [{"action": x, "ok": None, "detail": "pending"}
                        for x in self.actions.get(event.rule, [])]
        alert_id = store_alert_event(
            conn, event, monitor=self.name, endpoint=self.endpoint,
            key=f"{self.state['epoch']}:{event.alert_id}", window=self._window(event.at),
            first_window=self._window(event.started_at), finding=finding, pending=pending,
            now=self.now)
        return {**event.to_dict(), "id": alert_id, "window_index": event.at,
                "finding": finding}

    # -- after the commit ---------------------------------------------------------------------
    def deliver(self, result: MonitorRun) -> None:
        from prodml.monitoring.sinks import deliver

        for event in result.events:
            alert = get_alert(event["id"], store=self.store)
            reports = deliver(alert, event["status"], self.spec,
                              actions=self.actions.get(event["rule"], []), store=self.store)
            done = [a for a in alert.actions if a.get("ok") is not None] + reports
            with self.store.write() as conn:
                record_actions(conn, alert.id, done)
            event["actions"] = reports


def _update(states: Any, values: dict[str, float], at: int) -> list[AlertEvent]:
    from prodml.monitoring.alerts import update_alerts

    return update_alerts(states, values, at=at)


def _fresh_state(now: int) -> dict[str, Any]:
    # the epoch prefixes the keys of this state's alert episodes: a monitor started over
    # (a full run, a new window) never reuses the key of an earlier episode
    epoch = f"{now_ms():x}{os.urandom(3).hex()}"
    return {"epoch": epoch, "alerts": {}, "recent": [], "pending_rows": 0,
            "deploy_event_id": 0, "skew_due_after": None, "detections": []}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: _finite(v) for k, v in values.items()}
