"""Reliability of the real server: kill -9 under load loses no answered prediction, a
restart keeps the deployment state, admin routes need the token."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import select

from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.serving.conftest import FEATURES, build_store, free_port, start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("reliable")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store)
    return home, store, data


def test_kill_9_under_load_loses_no_answered_prediction(home):
    home, store, data = home
    records = data[FEATURES].to_dict(orient="records")
    port = free_port()
    process, _ = start_server(home, port)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            i = worker
            while not stop.is_set():
                try:
                    r = client.post("/endpoints/loan/predict", json=records[i % len(records)])
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        answered.append(r.json()["prediction_id"])
                i += 8
    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(answered) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # SIGKILL: no shutdown hook runs
    process.wait()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(answered) >= 400
    with store.read() as conn:
        found = {r.id for r in conn.execute(select(t.predictions.c.id).where(
            t.predictions.c.id.in_(answered)))}
    assert set(answered) <= found, f"{len(set(answered) - found)} answered but not logged"
    # And the server comes back on the same store and keeps serving.
    port = free_port()
    process, _ = start_server(home, port)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/endpoints/loan/predict", json=records[0])
        assert r.status_code == 200
    finally:
        stop_server(process)


def test_restart_keeps_canary_weight_and_step(home):
    home, store, data = home
    eps.deploy("loan", "loan/1", store=store)
    eps.deploy("loan", {"kind": "canary", "primary": "loan/1", "candidate": "loan/2",
                        "steps": [10, 40, 100], "step_index": 1,
                        "step_every_requests": 100000}, store=store, reason="mid-rollout")
    records = data[FEATURES].to_dict(orient="records")
    for _ in range(2):  # the same state before and after a restart
        port = free_port()
        process, _ = start_server(home, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                spec = client.get("/endpoints/loan").json()["spec"]
                assert spec["kind"] == "canary" and spec["step_index"] == 1
                routes = [client.post("/endpoints/loan/predict", json={
                    **records[i], "routing_key": f"k{i}"}).json()["route"] for i in range(300)]
        finally:
            stop_server(process)
        share = routes.count("canary") / len(routes)
        assert 0.28 < share < 0.52  # 40 % of callers, give or take sampling
    canary = d.find(eps.get_endpoint("loan", store=store).spec, d.Canary)
    assert canary.step_index == 1


def test_admin_routes_need_the_token_read_routes_do_not(home):
    home, store, data = home
    eps.deploy("loan", "loan/1", store=store)
    port = free_port()
    process, _ = start_server(home, port, env_extra={"PRODML_ADMIN_TOKEN": "s3cret"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            body = {"model": "loan/2", "reason": "try"}
            none = client.post("/endpoints/loan/deploy", json=body)
            assert none.status_code == 401 and none.json()["field"] == "authorization"
            wrong = client.post("/endpoints/loan/deploy", json=body,
                                headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert client.post("/endpoints/loan/pause").status_code == 401
            assert client.get("/endpoints/loan").status_code == 200
            assert client.get("/endpoints/loan/history").status_code == 200
            ok = client.post("/endpoints/loan/deploy", json=body,
                             headers={"Authorization": "Bearer s3cret",
                                      "X-Prodml-Actor": "ana"})
            assert ok.status_code == 200, ok.text
            # the environment's admin token is who acted; a header names nobody
            assert client.get("/endpoints/loan/history").json()[0]["actor"] \
                == "admin (PRODML_ADMIN_TOKEN)"
        # PRODML_ADMIN_TOKEN set: the server made no token of its own
        assert "admin token" not in (home / f"server-{port}.log").read_text()
    finally:
        stop_server(process)
