"""Monitoring a live endpoint end to end: ``prodml serve`` (a real uvicorn process) answers a
replayed Agrawal stream over HTTP, labels come back through ``POST /feedback``, and the
monitor runs after each chunk, reading only what is new.

The truth is known: ``loan`` and ``commission`` move from row 4,000 (inputs the model does
not use), the concept changes at row 10,000. The monitor must flag drift on those two
features only and not before the shift, the concept drift after the change and not before,
with its detection delay; a webhook receiver (a real HTTP server on 127.0.0.1) gets the
alerts as JSON; the accuracy alert pauses the endpoint and the fallback rule answers. The
server also runs a second monitor on its own (``PRODML_MONITOR_EVERY``) and exports the
latest values on ``/metrics``.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sklearn.tree import DecisionTreeClassifier

from prodml.monitoring.concept_drift import detection_delay
from prodml.monitoring.runner import run_monitor
from prodml.monitoring.store import get_monitor, list_alerts, save_monitor
from prodml.serving import endpoints as eps
from prodml.store import open_store
from prodml.tracking import registry
from tests.monitoring.streams import FEATURES, agrawal, sudden_with_covariate_shift
from tests.monitoring.test_alerts_store import Receiver
from tests.serving.conftest import admin_headers, free_port, start_server, stop_server

WINDOW, SHIFT, CHANGE, ROWS = 2_000, 4_000, 10_000, 12_000
SHIFTED = {"loan", "commission"}
pytestmark = pytest.mark.slow


def test_monitoring_a_live_endpoint(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'prodml.db'}", str(tmp_path / "artifacts"))
    training = agrawal(0, 0, 3_000).to_pandas()
    tree = DecisionTreeClassifier(max_depth=5, min_samples_leaf=50, random_state=0).fit(
        training[list(FEATURES)], training["label"])
    version = registry.register("agr", tree, input_example=training[list(FEATURES)],
                                training_data=training, store=store)
    eps.deploy("agr", version.ref, store=store, fallback="1 if salary > 100000 else 0")
    rows = sudden_with_covariate_shift(ROWS, CHANGE, SHIFT)
    with Receiver() as receiver:
        save_monitor({
            "endpoint": "agr", "name": "agr", "window": {"predictions": WINDOW},
            "checks": {"performance": {"positive": 1, "min_coverage": 0.9},
                       "concept_drift": {"detectors": ["adwin"]}},
            "alerts": [*({"series": f"drifted[{f}]", "upper": 0.5} for f in FEATURES),
                       {"series": "accuracy", "adaptive": {"k": 3, "min_history": 4},
                        "severity": "critical", "actions": ["pause"]},
                       {"series": "concept_drift[adwin]", "upper": 0.5}],
            "sinks": ["log", {"webhook": receiver.url}]}, enabled=False, store=store)
        save_monitor({"endpoint": "agr", "name": "bg", "window": {"predictions": 1_000},
                      "checks": {"drift": False, "concept_drift": False}}, store=store)
        port = free_port()
        process, _ = start_server(tmp_path, port, env_extra={"PRODML_MONITOR_EVERY": "1s"})
        try:
            runs = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers=admin_headers(tmp_path)) as client:
                for start in range(0, ROWS, WINDOW):
                    part = rows.slice(start, WINDOW)
                    answers = []
                    for batch in range(0, WINDOW, 500):
                        response = client.post("/endpoints/agr/predict", json={
                            "records": part.slice(batch, 500).select(FEATURES).to_dicts()})
                        response.raise_for_status()
                        answers += response.json()["predictions"]
                    client.post("/feedback", json=[
                        {"prediction_id": a["prediction_id"], "label": int(y)}
                        for a, y in zip(answers, part["label"])]).raise_for_status()
                    runs.append(run_monitor("agr", store=store, lag_ms=0))
                    assert runs[-1].read == WINDOW  # only what is new
                assert run_monitor("agr", store=store, lag_ms=0).read == 0

                # the accuracy alert paused the endpoint: the fallback rule answers now
                def answered_by_fallback() -> bool:
                    answer = client.post("/endpoints/agr/predict",
                                         json={"record": part.row(0, named=True)}).json()
                    return answer["route"] == "fallback"
                deadline = time.monotonic() + 10
                while not answered_by_fallback() and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert answered_by_fallback()

                # the server's own monitor ran in the background and /metrics shows it
                deadline = time.monotonic() + 20
                while get_monitor("bg", store=store).windows < 12 and \
                        time.monotonic() < deadline:
                    time.sleep(0.3)
                metrics = client.get("/metrics").text
        finally:
            stop_server(process)
    fired = {}
    for alert in list_alerts(monitor="agr", store=store):
        fired[alert.series] = alert
    drifted = {s[len("drifted["):-1] for s in fired if s.startswith("drifted[")}
    assert drifted == SHIFTED
    assert {fired[f"drifted[{f}]"].window_index for f in SHIFTED} == {SHIFT // WINDOW}
    assert fired["accuracy"].window_index == CHANGE // WINDOW
    assert fired["concept_drift[adwin]"].window_index == CHANGE // WINDOW
    assert min(a.window_index for a in fired.values()) == SHIFT // WINDOW  # nothing before
    assert fired["accuracy"].finding["kind"] == "sudden"
    detection = fired["concept_drift[adwin]"].finding["detection"]
    delay = detection_delay([d["position"] for r in runs for d in r.detections], CHANGE)
    assert delay.false_alarms == 0 and 0 <= delay.delay < 500
    assert fired["concept_drift[adwin]"].finding["delay"]["predictions"] == delay.delay
    assert detection["position"] == delay.first_detection
    pause = next(r for r in fired["accuracy"].actions if r.get("action") == "pause")
    assert pause["ok"] and eps.get_endpoint("agr", store=store).paused
    # the webhook got one Slack-compatible JSON per alert
    posted = sorted(body["alert"]["series"] for _, body in receiver.bodies)
    assert posted == sorted(fired)
    assert all(body["text"] and body["attachments"] for _, body in receiver.bodies)
    assert 'prodml_monitor_value{endpoint="agr",monitor="bg",series="volume"} 1000.0' \
        in metrics
    assert 'series="memory_rss_mb"' in metrics and 'series="log_queue_depth"' in metrics
    assert "prodml_alerts_firing" in metrics
