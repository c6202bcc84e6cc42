"""The real server over HTTP: plain JSON, validation, deployments, shadows, canaries,
automation, fallbacks, admin auth and metrics. One server for the module (see conftest)."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest
from sqlalchemy import select

from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.store import tables as t

pytestmark = pytest.mark.slow


def reset(served, spec="loan/1", **options):
    """Deploy ``spec`` directly in the store and wait until the server answers with it."""
    endpoint = eps.deploy("loan", spec, store=served.store, **options)
    with served.client() as client:
        assert served.wait_for(lambda: client.post(
            "/endpoints/loan/predict", json=served.records(1)[0]).json().get("revision")
            == endpoint.revision, timeout=10)
    return endpoint


def register(served, model, **kwargs):
    from prodml.tracking import registry
    from tests.serving.conftest import FEATURES
    return registry.register("loan", model, input_example=served.data[FEATURES],
                             store=served.store, **kwargs)


def logged(served, ids):
    with served.store.read() as conn:
        rows = conn.execute(select(t.predictions).where(t.predictions.c.id.in_(ids))).all()
    return {r.id: r for r in rows}


def test_plain_predict_one_and_many_and_the_log(served):
    reset(served)
    with served.client() as client:
        one = client.post("/endpoints/loan/predict", json=served.records(1)[0])
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["model_name"] == "loan" and body["model_version"] == 1
        assert body["route"] == "primary" and body["status"] == "ok"
        assert body["prediction"] in (0, 1) and len(body["prediction_id"]) == 32
        assert set(body["probabilities"]) == {"0", "1"}
        assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
        many = client.post("/endpoints/loan/predict", json={"records": served.records(5, 10)})
        assert many.status_code == 200, many.text
        rows = many.json()["predictions"]
    assert len(rows) == 5 and len({r["prediction_id"] for r in rows}) == 5
    # The answers are those of the registered model, and each is in the log (durable mode).
    from prodml.tracking import registry
    from tests.serving.conftest import FEATURES
    model = registry.load("loan/1", store=served.store)
    expected = model.predict(served.data[FEATURES].iloc[10:15]).tolist()
    assert [r["prediction"] for r in rows] == expected
    found = logged(served, [body["prediction_id"], *(r["prediction_id"] for r in rows)])
    assert len(found) == 6
    assert {r.route for r in found.values()} == {"primary"} and \
        {r.model_version for r in found.values()} == {1}


@pytest.mark.parametrize("payload, code, field", [
    ({"salary": "lots"}, 400, "salary"),  # wrong type (the rest of the record is valid)
    ({"age": None}, 400, "age"),  # null where the schema forbids it
    ({"age": 500}, 400, "age"),  # outside the schema's range
    ({"drop": "elevel"}, 400, "elevel"),  # missing field
])
def test_bad_records_get_400_naming_the_field(served, payload, code, field):
    reset(served)
    record = served.records(1)[0]
    if "drop" in payload:
        record.pop(payload["drop"])
    else:
        record.update(payload)
    with served.client() as client:
        response = client.post("/endpoints/loan/predict", json=record)
    assert response.status_code == code, response.text
    error = response.json()
    assert error["field"] == field and error["rule"], error


def test_malformed_oversized_and_unknown_requests(served):
    with served.client() as client:
        bad_json = client.post("/endpoints/loan/predict", content=b"{not json",
                               headers={"content-type": "application/json"})
        assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
        nan = client.post("/endpoints/loan/predict", content=b'{"salary": NaN}')
        assert nan.status_code == 400
        huge = client.post("/endpoints/loan/predict", content=b"[" + b"1," * 9_000_000 + b"1]")
        assert huge.status_code == 413 and huge.json()["field"] == "body"
        missing = client.post("/endpoints/nope/predict", json=served.records(1)[0])
        assert missing.status_code == 404 and missing.json()["field"] == "endpoint"
        wrong = client.post("/endpoints/loan/predict", json={"records": "x"})
        assert wrong.status_code == 400 and wrong.json()["field"] == "records"


def test_feedback_labels_and_events(served):
    reset(served)
    with served.client() as client:
        pid = client.post("/endpoints/loan/predict", json=served.records(1)[0]
                          ).json()["prediction_id"]
        ok = client.post("/feedback", json=[{"prediction_id": pid, "label": 1},
                                            {"prediction_id": pid, "event": "clicked"}])
        assert ok.status_code == 200 and ok.json()["recorded"] == 2
        unknown = client.post("/feedback", json={"prediction_id": "f" * 32, "label": 1})
        assert unknown.status_code == 404 and "f" * 32 in unknown.text
    with served.store.read() as conn:
        kinds = sorted(r.kind for r in conn.execute(
            select(t.feedback).where(t.feedback.c.prediction_id == pid)))
    assert kinds == ["event", "label"]


def test_flaky_canary_is_rolled_back_and_no_caller_sees_an_error(served):
    from prodml.serving.drills import FlakyModel
    from prodml.tracking import registry

    reset(served)
    flaky = register(served, FlakyModel(registry.load("loan/1", store=served.store),
                                        failure_rate=0.2, seed=3), flavor="python")
    with served.client() as client:
        deployed = client.post("/endpoints/loan/deploy", json={
            "model": flaky.ref, "strategy": "canary", "steps": [50, 100],
            "step_every_requests": 200, "guards": {"max_error_rate": 0.05,
                                                   "min_requests": 30},
            "reason": "try the flaky one"})
        assert deployed.status_code == 200, deployed.text
        codes, routes = [], []
        for i in range(240):
            r = client.post("/endpoints/loan/predict",
                            json={**served.records(1, i)[0], "routing_key": f"user-{i}"})
            codes.append(r.status_code)
            routes.append(r.json().get("route"))
        assert set(codes) == {200}  # the primary answered whenever the candidate raised
        assert "canary" in routes
        rolled = served.wait_for(lambda: client.get("/endpoints/loan").json()["spec"]
                                 == {"kind": "direct", "model": "loan/1"}, timeout=10)
        assert rolled, client.get("/endpoints/loan").json()
        events = client.get("/endpoints/loan/history").json()
    assert events[0]["action"] == "rollback" and events[0]["actor"] == "canary-controller"
    assert "error rate" in events[0]["reason"]
    with served.store.read() as conn:
        errors = conn.execute(select(t.predictions.c.id).where(
            t.predictions.c.model_version == flaky.version,
            t.predictions.c.status == "error")).all()
    assert errors  # the candidate's failures are in the log, not in any answer


def test_healthy_canary_ramps_up_and_is_promoted(served):
    reset(served)
    with served.client() as client:
        assert client.post("/endpoints/loan/deploy", json={
            "model": "loan/2", "strategy": "canary", "steps": [30, 100],
            "step_every_requests": 25, "guards": {"min_requests": 25,
                                                  "max_latency_p99_ms": 2000}}
        ).status_code == 200
        seen = set()
        for i in range(600):
            r = client.post("/endpoints/loan/predict",
                            json={**served.records(1, i % 500)[0], "routing_key": f"c{i}"})
            assert r.status_code == 200
            seen.add((r.json()["route"], r.json()["model_version"]))
            spec = client.get("/endpoints/loan").json()["spec"] if i % 50 == 49 else None
            if spec == {"kind": "direct", "model": "loan/2"}:
                break
        assert served.wait_for(lambda: client.get("/endpoints/loan").json()["spec"]
                               == {"kind": "direct", "model": "loan/2"}, timeout=10)
        actions = [e["action"] for e in client.get("/endpoints/loan/history").json()]
    assert actions[:3] == ["promote", "step", "deploy"]
    assert ("canary", 2) in seen and ("primary", 1) in seen
    # The primary's answers to the candidate's requests were logged as shadows, linked.
    with served.store.read() as conn:
        linked = conn.execute(select(t.predictions.c.parent_id).where(
            t.predictions.c.route == "shadow", t.predictions.c.model_version == 1,
            t.predictions.c.parent_id.is_not(None))).all()
    assert linked


def test_slow_shadow_never_slows_the_primary(served):
    from prodml.serving.drills import SlowModel
    from prodml.tracking import registry

    reset(served)
    slow = register(served, SlowModel(registry.load("loan/1", store=served.store), 2.0),
                    flavor="python")

    def p99(client, n=150):
        times = []
        for i in range(n):
            start = time.perf_counter()
            assert client.post("/endpoints/loan/predict",
                               json=served.records(1, i)[0]).status_code == 200
            times.append(time.perf_counter() - start)
        return float(np.percentile(times, 99))

    with served.client() as client:
        before = p99(client)
        client.post("/endpoints/loan/deploy", json={"model": slow.ref, "strategy": "shadow",
                                                    "percent": 100})
        assert served.wait_for(lambda: client.post(
            "/endpoints/loan/predict", json=served.records(1)[0]).json()["revision"]
            == client.get("/endpoints/loan").json()["revision"])
        after = p99(client)
    assert after < max(3 * before, before + 0.05), (before, after)  # nowhere near 2 s
    time.sleep(2.5)
    with served.store.read() as conn:
        shadows = conn.execute(select(t.predictions.c.status).where(
            t.predictions.c.model_version == slow.version,
            t.predictions.c.route == "shadow")).all()
    assert shadows and {s.status for s in shadows} <= {"ok", "timeout"}


def test_blue_green_switch_with_smoke_check_and_rollback(served):
    reset(served)
    smoke = served.records(2, 100)
    with served.client() as client:
        staged = client.post("/endpoints/loan/deploy", json={
            "model": "loan/2", "strategy": "blue-green", "smoke": smoke})
        assert staged.status_code == 200 and "idle loan/2" in staged.json()["summary"]
        switched = client.post("/endpoints/loan/switch", json={"reason": "release"})
        assert switched.status_code == 200, switched.text
        assert served.wait_for(lambda: client.post(
            "/endpoints/loan/predict", json=served.records(1)[0]).json()["model_version"] == 2)
        back = client.post("/endpoints/loan/rollback", json={"reason": "drill"})
        assert back.status_code == 200
        assert served.wait_for(lambda: client.post(
            "/endpoints/loan/predict", json=served.records(1)[0]).json()["model_version"] == 1)


def test_pause_uses_the_fallback_rule_or_answers_503(served):
    reset(served, fallback="1 if salary > 100000 else 0")
    with served.client() as client:
        assert client.post("/endpoints/loan/pause", json={"reason": "incident"}
                           ).status_code == 200
        record = {**served.records(1)[0], "salary": 120000.0}
        answer = served.wait_for(lambda: (r := client.post(
            "/endpoints/loan/predict", json=record).json()).get("route") == "fallback" and r)
        assert answer["prediction"] == 1 and answer["model_version"] is None
        assert client.post("/endpoints/loan/resume").status_code == 200
    eps.set_fallback("loan", None, store=served.store)
    eps.set_paused("loan", True, store=served.store)
    with served.client() as client:
        refused = served.wait_for(lambda: (r := client.post(
            "/endpoints/loan/predict", json=served.records(1)[0])).status_code == 503 and r)
        assert refused and "no fallback rule" in refused.json()["message"]
    eps.set_paused("loan", False, store=served.store)


def test_partial_automation_sends_unsure_cases_to_review(served):
    reset(served, "loan/1", mode=None)
    eps.deploy("loan", {"kind": "automation", "mode": "partial", "threshold": 0.58,
                        "node": "loan/1"}, store=served.store)
    with served.client() as client:
        bodies = []
        for i in range(60):
            bodies.append(served.wait_for(lambda: (r := client.post(
                "/endpoints/loan/predict", json=served.records(1, i)[0]).json()).get(
                "mode") == "partial" and r))
        human = [b for b in bodies if b["status"] == "review"]
        sure = [b for b in bodies if b["status"] == "ok"]
        assert human and sure
        assert all(b["prediction"] is None and b["suggestion"] in (0, 1)
                   and b["confidence"] < 0.58 and b["route"] == "human" for b in human)
        assert all(b["confidence"] >= 0.58 for b in sure)
        queue = client.get("/reviews", params={"endpoint": "loan"}).json()
        queued = {item["prediction_id"] for item in queue}
        assert {b["prediction_id"] for b in human} <= queued
        item = next(i for i in queue if i["prediction_id"] == human[0]["prediction_id"])
    with served.client_as("ana", "labeler") as ana:
        done = ana.post(f"/reviews/{item['id']}/resolve", json={"label": 1})
        assert done.status_code == 200, done.text
        assert done.json()["resolver"] == "ana"  # from her token, not from the body
        again = ana.post(f"/reviews/{item['id']}/resolve", json={"label": 0})
        assert again.status_code in (400, 409)
    with served.store.read() as conn:
        labels = conn.execute(select(t.feedback).where(
            t.feedback.c.prediction_id == human[0]["prediction_id"])).all()
    assert [(r.kind, r.source, r.actor) for r in labels] == [("label", "review", "ana")]


def test_metrics_and_openapi(served):
    reset(served)
    with served.client() as client:
        client.post("/endpoints/loan/predict", json=served.records(1)[0])
        text = client.get("/metrics").text
        assert 'prodml_requests_total{endpoint="loan",route="primary",status="ok",version="1"}' \
            in text
        assert "prodml_request_latency_seconds_bucket" in text
        assert "prodml_log_queue_depth" in text and "process_resident_memory_bytes" in text
        spec = client.get("/openapi.json").json()
        assert "/endpoints/{name}/predict" in spec["paths"]
        assert client.get("/docs").status_code == 200


def test_concurrent_requests_are_batched(served):
    reset(served)
    with served.client() as client:
        def call(i):
            return client.post("/endpoints/loan/predict", json=served.records(1, i)[0]
                               ).status_code
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert set(pool.map(call, range(400))) == {200}
        text = client.get("/metrics").text
    means = [float(line.split()[-1]) for line in text.splitlines()
             if line.startswith("prodml_batch_size_mean")]
    assert means and max(means) > 1.0  # some model calls answered several requests
