"""Fallback rules against a real ``prodml serve``: the drive-by import is refused at deploy
and at serving time, a bomb is refused at deploy, and a slow allow-listed rule answers a clear
503 within its time limit while liveness keeps answering (issue 14, findings 1 and 8)."""

from __future__ import annotations

import concurrent.futures
import os
import textwrap
import time

import httpx
import pytest
from sqlalchemy import update

from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.serving.conftest import (admin_headers, build_store, free_port, start_server,
                                    stop_server)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fallback")
    rules = home / "rules"
    rules.mkdir()
    marker = home / "imported.marker"
    (rules / "trap_rules.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")
        def run(record):
            return 1
    """))
    (rules / "slow_rules.py").write_text(textwrap.dedent("""
        import time
        def sleepy(record):
            time.sleep(3)
            return 0
    """))
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store)
    port = free_port()
    path = os.pathsep.join(p for p in (str(rules), os.environ.get("PYTHONPATH")) if p)
    process, _ = start_server(home, port, "--allow-fallback", "slow_rules:sleepy",
                              env_extra={"PYTHONPATH": path, "PRODML_FALLBACK_ALLOW": ""})
    try:
        yield {"url": f"http://127.0.0.1:{port}", "store": store, "marker": marker,
               "headers": admin_headers(home),
               "record": data.drop(columns=["approved"]).iloc[0].to_dict()}
    finally:
        stop_server(process)


def test_deploying_an_import_path_not_in_the_allow_list_is_refused(server):
    with httpx.Client(base_url=server["url"], timeout=30, headers=server["headers"]) as client:
        for rule in ("subprocess:run", "trap_rules:run", "os:system"):
            answer = client.post("/endpoints/loan/deploy",
                                 json={"model": "loan/1", "fallback": rule})
            assert answer.status_code == 400, answer.text
            body = answer.json()
            assert body["field"] == "fallback" and body["value"] == rule
            assert "not in the server's allow-list" in body["message"]
    assert not server["marker"].exists()


def test_a_rule_written_into_the_store_imports_nothing(server):
    store = server["store"]
    with store.write() as conn:  # past every API check, as an attacker with the file would
        conn.execute(update(t.endpoints).where(t.endpoints.c.name == "loan").values(
            fallback="trap_rules:run", paused=True, revision=t.endpoints.c.revision + 1))
    with httpx.Client(base_url=server["url"], timeout=30, headers=server["headers"]) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = client.post("/endpoints/loan/predict", json=server["record"])
            if answer.status_code == 503:
                break
            time.sleep(0.1)
        assert answer.status_code == 503, answer.text
        assert "fallback rule was refused" in answer.json()["message"]
        assert "allow-list" in answer.json()["message"]
    assert not server["marker"].exists()
    eps.set_fallback("loan", None, store=store)
    eps.set_paused("loan", False, store=store)


def test_a_costly_expression_is_refused_at_deploy_and_liveness_never_waits(server):
    with httpx.Client(base_url=server["url"], timeout=30, headers=server["headers"]) as client:
        started = time.perf_counter()
        for rule in ("9 ** 9 ** 8", "'x' * 10 ** 9", "1 + " * 400 + "1"):
            answer = client.post("/endpoints/loan/deploy",
                                 json={"model": "loan/1", "fallback": rule})
            assert answer.status_code == 400 and answer.json()["field"] == "fallback"
        assert time.perf_counter() - started < 2
        assert client.get("/v2/health/live", timeout=1).status_code == 200


def test_a_slow_rule_times_out_with_a_clear_error_while_the_server_stays_live(server):
    with httpx.Client(base_url=server["url"], timeout=30, headers=server["headers"]) as client:
        deployed = client.post("/endpoints/loan/deploy",
                               json={"model": "loan/1", "fallback": "slow_rules:sleepy"})
        assert deployed.status_code == 200, deployed.text
        assert client.post("/endpoints/loan/pause").status_code == 200  # applied at once

    def predict():
        with httpx.Client(base_url=server["url"], timeout=30, headers=server["headers"]) as c:
            started = time.perf_counter()
            return c.post("/endpoints/loan/predict", json=server["record"]), \
                time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(predict) for _ in range(3)]
        with httpx.Client(base_url=server["url"], timeout=1) as probe:
            while not all(c.done() for c in calls):
                assert probe.get("/v2/health/live").status_code == 200
                time.sleep(0.02)
        for call in calls:
            answer, took = call.result()
            assert answer.status_code == 503, answer.text
            assert "time limit (50 ms a record)" in answer.json()["message"]
            assert took < 1.0
    with httpx.Client(base_url=server["url"], timeout=30, headers=server["headers"]) as client:
        assert client.get("/v2/health/live", timeout=1).status_code == 200
        assert client.post("/endpoints/loan/resume").status_code == 200
