"""Alerts in the store (SQLite and PostgreSQL): one row per episode, acknowledged once, sent
to a real webhook receiver, actions that pause and roll back the endpoint or call code; and
monitors saved, replaced and read back."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import polars as pl
import pytest

import prodml as pm
from prodml.errors import InvalidInputError, NotFoundError
from prodml.monitoring.runner import run_monitor
from prodml.monitoring.sinks import register_action, unregister_action
from prodml.monitoring.store import (
    ack_alert,
    get_alert,
    get_monitor,
    latest_values,
    list_alerts,
    monitor_series,
    save_monitor,
)
from prodml.serving import endpoints as eps
from tests.monitoring import logged
from tests.monitoring.logged import ENDPOINT, log_rows, register_and_deploy
from tests.monitoring.streams import agrawal, train_model
from tests.serving.conftest import free_port

WINDOW = 1_000


@pytest.fixture(scope="module")
def model():
    return train_model()


@pytest.fixture(scope="module")
def stream(model) -> pl.DataFrame:
    """Five windows; windows 2 and 3 answer 30 % of requests with an error."""
    frame = model.predict(agrawal(0, 5, 5 * WINDOW), start_ms=1_700_000_000_000, step_ms=10)
    row = pl.int_range(0, frame.height, eager=True)
    bad = ((row // WINDOW).is_in([2, 3])) & (row % 10 < 3)
    return frame.with_columns(status=pl.when(bad).then(pl.lit("error")).otherwise(
        pl.lit("ok")))


class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps the JSON bodies it gets."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append((self.headers["Content-Type"],
                               json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def errors_spec(**changes):
    base = {"endpoint": ENDPOINT, "name": "errors", "window": {"predictions": WINDOW},
            "checks": {"drift": False, "concept_drift": False},
            "alerts": [{"series": "error_rate", "upper": 0.1, "severity": "critical"}]}
    base.update(changes)
    return base


def test_an_alert_is_one_row_from_firing_to_resolved_and_reaches_the_webhook(
        store, model, stream):
    register_and_deploy(store, model)
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    with Receiver() as receiver:
        pm.monitor(errors_spec(sinks=["log", {"webhook": receiver.url},
                                      {"webhook": dead, "timeout_s": 2}]), store=store)
        log_rows(store, stream)
        run = run_monitor("errors", store=store, lag_ms=0)
    assert [(e["status"], e["window_index"]) for e in run.events] == [("firing", 2),
                                                                       ("resolved", 4)]
    (alert,) = list_alerts(monitor="errors", store=store)
    assert (alert.status, alert.window_index, alert.breaches, alert.severity) == (
        "resolved", 2, 2, "critical")
    windows = monitor_series("errors", "error_rate", store=store)
    ends = dict(zip(windows["window_index"], windows["window_end"]))
    assert (alert.started_at, alert.fired_at, alert.resolved_at) == (ends[2], ends[2], ends[4])
    assert alert.value == pytest.approx(0.0) and alert.peak == pytest.approx(0.3)
    assert (alert.lower, alert.upper) == (None, 0.1)
    reports = [(r.get("sink"), r["ok"]) for r in alert.actions]
    assert reports == [("log", True), ("webhook", True), ("webhook", False)] * 2
    # Slack-compatible JSON, once firing and once resolved
    assert [b["status"] for _, b in receiver.bodies] == ["firing", "resolved"]
    content_type, body = receiver.bodies[0]
    assert content_type == "application/json"
    assert body["text"].startswith("[FIRING] [critical] monitor errors")
    attachment = body["attachments"][0]
    assert attachment["color"] == "#d00000" and attachment["title"].startswith("error_rate")
    assert {f["title"] for f in attachment["fields"]} >= {"series", "value", "bounds"}
    assert body["alert"]["id"] == alert.id and body["alert"]["series"] == "error_rate"
    assert list_alerts(status="firing", store=store) == []
    assert [a.id for a in list_alerts(status="resolved", endpoint=ENDPOINT, store=store)] == [
        alert.id]


def test_acknowledging_an_alert(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(errors_spec(), store=store)
    log_rows(store, stream.head(3 * WINDOW))
    run_monitor("errors", store=store, lag_ms=0)
    (alert,) = list_alerts(status="firing", store=store)
    assert not alert.acked and list_alerts(acked=True, store=store) == []
    acked = ack_alert(alert.id, "alice", store=store)
    assert acked.acked_by == "alice" and acked.acked_at is not None
    again = ack_alert(str(alert.id), "bob", store=store)
    assert (again.acked_by, again.acked_at) == ("alice", acked.acked_at)
    assert [a.id for a in list_alerts(acked=True, store=store)] == [alert.id]
    with pytest.raises(NotFoundError, match="alert 999 not found"):
        get_alert(999, store=store)
    with pytest.raises(InvalidInputError, match="alert='x'"):
        ack_alert("x", store=store)
    with pytest.raises(InvalidInputError, match="status='open'"):
        list_alerts(status="open", store=store)


def test_actions_pause_roll_back_and_call_code(store, model, stream):
    ref = register_and_deploy(store, model, fallback="1 if salary > 100000 else 0")
    second = pm.models.register(ENDPOINT, model.tree, store=store)
    eps.deploy(ENDPOINT, second.ref, store=store, reason="v2")
    noted = []
    register_action("note", lambda alert: noted.append(alert.rule))
    logged.CALLS.clear()
    try:
        pm.monitor(errors_spec(alerts=[
            {"series": "error_rate", "upper": 0.1, "name": "errors",
             "actions": ["pause", "callable:tests.monitoring.logged:remember", "note",
                         "nosuch"]},
            {"series": "volume", "lower": 5_000, "name": "too quiet", "actions": ["rollback"]},
        ]), store=store)
        log_rows(store, stream.head(3 * WINDOW))
        run_monitor("errors", store=store, lag_ms=0)
    finally:
        unregister_action("note")
    endpoint = eps.get_endpoint(ENDPOINT, store=store)
    assert endpoint.paused and endpoint.describe() == f"{ref} [paused]"  # rolled back to v1
    history = eps.history(ENDPOINT, store=store)
    assert {e.action for e in history[:2]} == {"pause", "rollback"}
    assert all(e.actor == "monitor:errors" for e in history[:2])
    errors = next(a for a in list_alerts(store=store) if a.rule == "errors")
    by_action = {r["action"]: r for r in errors.actions if "action" in r}
    assert by_action["pause"]["ok"] and "paused" in by_action["pause"]["detail"]
    assert by_action["callable:tests.monitoring.logged:remember"]["detail"] == (
        f"remembered alert {errors.id}")
    assert [a.id for a in logged.CALLS] == [errors.id] and noted == ["errors"]
    assert by_action["nosuch"]["ok"] is False and "no action registered" in \
        by_action["nosuch"]["detail"]


def test_replacing_a_monitor_keeps_its_progress_unless_its_windows_change(
        store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(errors_spec(), store=store)
    log_rows(store, stream.head(3 * WINDOW))
    run_monitor("errors", store=store, lag_ms=0)
    before = get_monitor("errors", store=store)
    more = errors_spec(alerts=[*errors_spec()["alerts"], {"series": "volume", "lower": 1}])
    info = save_monitor(more, store=store)
    assert (info.cursor_id, info.windows) == (before.cursor_id, 3)
    log_rows(store, stream.slice(3 * WINDOW, WINDOW))
    run = run_monitor("errors", store=store, lag_ms=0)
    # the error_rate rule kept its state: its alert is still the same episode, no new one
    assert [e["status"] for e in run.events] == [] and len(list_alerts(store=store)) == 1
    assert latest_values(store=store)[0][2]["volume"] == WINDOW
    reset = save_monitor(errors_spec(window={"predictions": 500}), store=store)
    assert (reset.cursor_id, reset.windows) == (None, 0)
    assert monitor_series("errors", store=store).height == 0
    assert len(run_monitor("errors", store=store, lag_ms=0).windows) == 8


def test_errors_name_what_is_wrong(store, model):
    with pytest.raises(NotFoundError, match="endpoint 'nowhere' not found"):
        pm.monitor({"endpoint": "nowhere", "window": {"predictions": 10}}, store=store)
    register_and_deploy(store, model)
    with pytest.raises(InvalidInputError, match="webhook needs an http"):
        pm.monitor(errors_spec(sinks=[{"webhook": "ftp://x"}]), store=store)
    with pytest.raises(NotFoundError, match="monitor 'nope' not found"):
        run_monitor("nope", store=store)
    with pytest.raises(NotFoundError, match="no monitor or monitored endpoint"):
        monitor_series("nope", store=store)


def test_without_httpx_the_webhook_posts_with_the_standard_library():
    from prodml.monitoring.sinks import _post_with_urllib

    with Receiver() as receiver:
        assert _post_with_urllib(receiver.url, {"text": "hello"}, 5) == "posted (200)"
    assert receiver.bodies == [("application/json", {"text": "hello"})]
