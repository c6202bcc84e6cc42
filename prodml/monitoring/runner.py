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

import numpy as np
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
RATE_PREFIXES = ("accuracy", "precision", "recall", "f1", "error_rate", "labelled_error_rate",
                 "class_share[", "missing_share[", "drift_share", "out_of_domain_share[",
                 "label_coverage", "null_prediction_share", "event_rate[", "skew_share")
LABEL_RATES = ("accuracy", "precision", "recall", "f1", "labelled_error_rate")


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
        self.cursor_time = None if fresh else row.cursor_time
        self.alerts = {rule.name: AlertState(rule) for rule in self.spec.alert_rules()}
        for name, saved in (self.state.get("alerts") or {}).items():
            if name in self.alerts:
                self.alerts[name] = AlertState.from_dict(saved)
        if fresh and isinstance(self.spec.reference, LogStretch):
            self._learn_from_reference()
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
        from prodml.monitoring.log_slices import read_new

        if not self.full and self.row.pending is not None and self.row.state:
            yield pl.read_ipc(io.BytesIO(self.row.pending)), 0, self.cursor_time or 0
        reread = None if self.full else self.state.get("pending_from")
        after_id, since = self.cursor_id, self.cursor_time
        if reread:  # an open window too large to store: read again from its first row
            after_id, since = reread["id"], reread["time"]
        known = self.state.get("pending_rows", 0) if reread else 0
        for frame, upper in read_new(self.store, self.endpoint, since=since, until=self.until,
                                     after_id=after_id, include_after=bool(reread),
                                     routes=SERVED_ROUTES):
            if frame.height:
                self.cursor_id, self.cursor_time = frame["id"][-1], int(frame["time"][-1])
            new = max(0, frame.height - known)
            known = max(0, known - frame.height)
            yield frame, new, upper

    def _cut(self, rows: pl.DataFrame, until: int | None = None
             ) -> tuple[list[dict[str, Any]], pl.DataFrame]:
        window = self.spec.window
        until = self.until if until is None else until
        out = []
        if window.predictions is not None:
            n = window.predictions
            complete = rows.height // n
            for k in range(complete):
                part = rows.slice(k * n, n)
                out.append({"frame": part, "start": int(part["time"][0]),
                            "end": int(part["time"][-1]), "span_s": None})
            return out, rows.slice(complete * n)
        span = window.span_ms
        assert span is not None
        if rows.height == 0:
            return out, rows
        bucket = rows["time"] // span
        last_complete = until // span - 1  # windows ending at or before `until`
        for k in bucket.unique(maintain_order=True).to_list():
            if k > last_complete:
                break
            part = rows.filter(bucket == k)
            out.append({"frame": part, "start": k * span, "end": (k + 1) * span,
                        "span_s": span / 1000})
        return out, rows.filter(bucket > last_complete)

    def _learn_from_reference(self) -> None:
        """Adaptive bands start from the reference stretch's windows (then trailing ones)."""
        from prodml.monitoring.window_checks import log_reference

        adaptive = [s for s in self.alerts.values() if s.threshold.kind == "adaptive"]
        if not adaptive:
            return
        stretch = self.spec.reference
        reference = log_reference(self.spec, stretch, self.store)
        assert reference.frame is not None
        checks = WindowChecks(self.spec, self.store)
        history: dict[str, list[float]] = {}
        windows, _ = self._cut(reference.frame, until=stretch.until_ms)
        for window in windows:
            values = checks.on_close(window["frame"], span_s=window["span_s"])
            if checks.needs_feedback():
                values.update(checks.on_settle(window["frame"])[0])
            for name, value in values.items():
                history.setdefault(name, []).append(value)
        for state in adaptive:
            state.threshold.learn(history.get(state.rule.series, []))

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
        if not descriptor["settled"]:
            self.frames[index] = frame  # settled from memory if its labels are in already
        self._store(descriptor, values)
        self.latest.update(_clean(values))
        self.latest_end = window["end"]
        return {**{k: v for k, v in descriptor.items() if k != "settled"}, "values": values}

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
        waiting = [w for w in self.state.get("recent", []) if not w["settled"]]
        if not waiting:
            return [], []
        feedback = self._feedback(waiting[0]["first_id"], waiting[-1]["last_id"])
        performance = self.spec.checks.performance
        min_coverage = performance.min_coverage if performance is not None else 0.5
        newest = self.state["recent"][-1]["index"]
        labelled_ids = feedback[0]["prediction_id"] if feedback[0] is not None else None
        settled, detections = [], []
        for window in waiting:
            labelled = 0 if labelled_ids is None else int(labelled_ids.is_between(
                pl.lit(window["first_id"]), pl.lit(window["last_id"])).sum())
            if labelled / window["rows"] < min_coverage and newest - window["index"] < \
                    self._wait():
                break  # windows settle in order: the error stream keeps its order
            frame = self._window_frame(window)
            frame = _join_feedback(frame, *feedback)
            window["stream_start"] = self.checks.stream_position()
            values, found = self.checks.on_settle(frame)
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

    def _feedback(self, first_id: str, last_id: str) -> tuple[Any, Any]:
        from prodml.serving.log_reader import _feedback_frames

        f, p = t.feedback, t.predictions
        # driven from the feedback index (a range of prediction ids): with no labels yet it
        # costs nothing, whatever the size of the windows waiting
        served = select(p.c.id).where(p.c.id == f.c.prediction_id, p.c.endpoint == self.endpoint,
                                      p.c.route.in_(SERVED_ROUTES)).exists()
        with self.store.read() as conn:
            rows = conn.execute(
                select(f.c.prediction_id, f.c.kind, f.c.name, f.c.value, f.c.time, f.c.id)
                .where(f.c.prediction_id >= first_id, f.c.prediction_id <= last_id, served)
            ).all()
        return _feedback_frames(rows)

    def _window_frame(self, window: dict[str, Any]) -> pl.DataFrame:
        if window["index"] in self.frames:
            return self.frames[window["index"]]
        from prodml.serving.log_reader import read_predictions

        frame = read_predictions(self.endpoint, since=window["start"], until=window["end"] + 1,
                                 routes=SERVED_ROUTES, with_feedback=False, store=self.store)
        return frame.filter(pl.col("id").is_between(pl.lit(window["first_id"]),
                                                    pl.lit(window["last_id"])))

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
                    for event, _ in self.events]
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

    def _window(self, index: Any) -> dict[str, Any]:
        for window in self.state.get("recent", []):
            if window["index"] == index:
                return window
        return {}

    def _store_event(self, conn: Any, event: AlertEvent, finding: dict[str, Any] | None
                     ) -> dict[str, Any]:
        a = t.alerts
        key = f"{self.state['epoch']}:{event.alert_id}"
        at, first = self._window(event.at), self._window(event.started_at)
        lower, upper = event.bounds
        if event.status == "firing":
            pending = [{"sink": s.type, "ok": None, "detail": "pending"} for s in self.spec.sinks
                       ] + [{"action": x, "ok": None, "detail": "pending"}
                            for x in self.actions.get(event.rule, [])]
            alert_id = conn.execute(a.insert().values(
                key=key, monitor=self.name, endpoint=self.endpoint, rule=event.rule,
                series=event.series, severity=event.severity, status="firing",
                started_at=first.get("end", at.get("end", self.now)),
                fired_at=at.get("end", self.now), window_index=event.at,
                window_start=at.get("start"), window_end=at.get("end"),
                value=_finite(event.value), peak=_finite(event.peak), lower=lower, upper=upper,
                breaches=event.breaches, message=event.message(), finding=finding,
                actions=pending, updated_at=self.now)).inserted_primary_key[0]
        else:
            conn.execute(update(a).where(a.c.monitor == self.name, a.c.key == key).values(
                status="resolved", resolved_at=at.get("end", self.now),
                value=_finite(event.value), peak=_finite(event.peak), breaches=event.breaches,
                updated_at=self.now))
            alert_id = conn.execute(select(a.c.id).where(a.c.monitor == self.name,
                                                         a.c.key == key)).scalar()
        return {**event.to_dict(), "id": alert_id, "window_index": event.at,
                "finding": finding}

    # -- findings -----------------------------------------------------------------------------
    def _finding(self, event: AlertEvent) -> dict[str, Any]:
        """The kind of change behind a firing alert, where it started, how late we were."""
        from prodml.monitoring.change_kind import classify_change

        series = _judged(event.series)
        indices, values = self._trailing(series, event.at)
        concept = self.spec.checks.concept_drift
        k = concept.trend_windows if concept is not None else 6
        out: dict[str, Any] = {"series": series}
        try:
            finding = classify_change(values, k=min(k, max(3, len(values))),
                                      scale=self._scale(series, indices, values))
            out.update(finding.to_dict())
            change = None if finding.window is None else indices[finding.window]
        except ProdmlError as exc:
            out.update({"kind": "none", "window": None, "evidence": {"reason": str(exc)}})
            change = None
        out["change_window"] = change
        detection = None
        if event.series.startswith("concept_drift["):
            name = event.series[len("concept_drift["):-1]
            detection = next((d for d in self.state.get("detections", [])
                              if d["detector"] == name and d["window_index"] == event.at), None)
            out["detection"] = detection
        if change is not None:
            start, fired = self._window(change), self._window(event.at)
            detected_at = detection["time"] if detection else fired.get("end")
            out["delay"] = {
                "windows": event.at - change,
                "seconds": (detected_at - start["start"]) / 1000
                if start and detected_at is not None else None,
                "predictions": detection["position"] - start["stream_start"]
                if detection and start.get("stream_start") is not None else None}
        return out

    def _trailing(self, series: str, at: int, n: int = 16) -> tuple[list[int], list[float]]:
        r = t.monitor_results
        with self.store.read() as conn:
            rows = [] if self.full else conn.execute(
                select(r.c.window_index, r.c.value).where(
                    r.c.monitor == self.name, r.c.series == series, r.c.window_index <= at)
                .order_by(r.c.window_index.desc()).limit(n)).all()
        points = {i: (math.nan if v is None else v) for i, v in rows}
        points.update({i: v for i, v in self.new_values.get(series, {}).items() if i <= at})
        ordered = sorted((i, v) for i, v in points.items() if math.isfinite(v))[-n:]
        return [i for i, _ in ordered], [v for _, v in ordered]

    def _scale(self, series: str, indices: list[int], values: list[float]) -> float | None:
        if not series.startswith(RATE_PREFIXES) or not values:
            return None
        p = float(np.median(values))
        if series.startswith(LABEL_RATES):
            _, counts = self._trailing("labelled", indices[-1])
        else:
            counts = [w["rows"] for w in self.state.get("recent", []) if w["index"] in indices]
        n = float(np.median(counts)) if counts else 0.0
        if n <= 0 or not 0 < p < 1:
            return None
        return math.sqrt(p * (1 - p) / n)

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


def _judged(series: str) -> str:
    """The series whose course says what kind of change an alert on ``series`` saw: a
    verdict (0/1) or a count is judged on the score or the rate behind it."""
    for prefix, target in (("drifted[", "drift_score["), ("skewed[", "skew_score["),
                           ("cbpe_outside_band[", "cbpe_gap[")):
        if series.startswith(prefix):
            return target + series[len(prefix):]
    return {"dataset_drift": "drift_share", "prior_shift": "prior_shift_score",
            "multivariate_drift": "multivariate_auc", "confidence_shift": "mean_confidence",
            "confidence_p_value": "mean_confidence"}.get(
        series, "labelled_error_rate" if series.startswith("concept_drift[") else series)


def _update(states: Any, values: dict[str, float], at: int) -> list[AlertEvent]:
    from prodml.monitoring.alerts import update_alerts

    return update_alerts(states, values, at=at)


def _fresh_state(now: int) -> dict[str, Any]:
    # the epoch prefixes the keys of this state's alert episodes: a monitor started over
    # (a full run, a new window) never reuses the key of an earlier episode
    epoch = f"{now_ms():x}{os.urandom(3).hex()}"
    return {"epoch": epoch, "alerts": {}, "recent": [], "pending_rows": 0,
            "deploy_event_id": 0, "skew_due_after": None, "detections": []}


def _join_feedback(frame: pl.DataFrame, labels: Any, events: Any) -> pl.DataFrame:
    if labels is not None:
        frame = frame.join(labels, left_on="id", right_on="prediction_id", how="left",
                           maintain_order="left")
    else:
        frame = frame.with_columns(pl.lit(None).alias("label"),
                                   pl.lit(None, pl.Int64).alias("label_time"))
    if events is not None:
        names = [c for c in events.columns if c != "prediction_id"]
        frame = frame.join(events, left_on="id", right_on="prediction_id", how="left",
                           maintain_order="left").with_columns(pl.col(names).fill_null(0))
    return frame


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: _finite(v) for k, v in values.items()}
