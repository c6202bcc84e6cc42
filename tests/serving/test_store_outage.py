"""A PostgreSQL restart under load: 503 only while it is down, and readiness tells the truth.

A real ``prodml serve`` on its own PostgreSQL server (started here, so that stopping it
disturbs no other test), under a load that never pauses: anonymous predictions, predictions
sent with a stored token (looked up by the server's token cache), and feedback. The server
is stopped for about 5 s and started again on the same port. Every answer that is not a 2xx
must be a 503 with ``Retry-After``, and only while the database is down (and a moment
after); ``/v2/health/ready`` must say 503 meanwhile and 200 again by itself; every 2xx
prediction and label must be in the store exactly once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from prodml.access import create_token
from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.conftest import (PG_SYSTEM_USER, PostgresServer, _run, _start, _unavailable)
from tests.serving.conftest import (FEATURES, build_store, free_port, start_server,
                                    stop_server)

DOWN_S = 5.0
RECOVERY_GRACE_S = 3.0  # after pg_ctl start returns: pools reconnect, the log commits


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, which it may stop and start."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        _unavailable("initdb/pg_ctl are not on PATH")
    data_dir = Path(tempfile.mkdtemp(prefix="prodml-pg-outage-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, user=PG_SYSTEM_USER)
    done = _run(["initdb", "-D", str(data_dir), "-A", "trust", "-U", "postgres", "--no-sync"],
                timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    server = PostgresServer(_start(data_dir), data_dir)
    try:
        yield server
    finally:
        _run(["pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgres_restart_is_503_only_while_down_and_readiness_follows(own_postgres,
                                                                        tmp_path):
    url = own_postgres.url(own_postgres.create_database())
    home = tmp_path
    store, data = build_store(home, url)
    eps.deploy("loan", "loan/1", store=store)
    viewer = create_token("dashboards", "viewer", created_by="tests", store=store).token
    labeler = create_token("labels", "labeler", created_by="tests", store=store).token
    records = data[FEATURES].to_dict(orient="records")
    port, idle_port = free_port(), free_port()
    # A second replica gets no traffic: nothing it logs fails, so only its own probe of the
    # store can tell its readiness that the store is gone.
    idle_home = home / "idle"  # its own admin-token file; the same store and artifacts
    idle_home.mkdir()
    env = {"PRODML_DATABASE_URL": url, "PRODML_ARTIFACTS": str(home / "artifacts")}
    with ThreadPoolExecutor(2) as starting:
        started = [starting.submit(start_server, h, p, env_extra=env)
                   for h, p in ((home, port), (idle_home, idle_port))]
    processes = [f.result()[0] for f in started if f.exception() is None]
    for future in started:
        future.result()
    process = processes[0]
    base = f"http://127.0.0.1:{port}"
    lock = threading.Lock()
    answers: list[tuple[float, str, httpx.Response]] = []  # (time, kind, response)
    readiness: list[tuple[float, int]] = []
    idle_readiness: list[tuple[float, int]] = []
    stop = threading.Event()
    broken: list[str] = []  # a client that got no HTTP answer at all

    def load(kind: str, worker: int) -> None:
        try:
            send(kind, worker)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            broken.append(f"{kind}: {exc!r}")

    def send(kind: str, worker: int) -> None:
        headers = {"predict": {}, "token": {"Authorization": f"Bearer {viewer}"},
                   "feedback": {"Authorization": f"Bearer {labeler}"}}[kind]
        with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
            i = worker
            while not stop.is_set():
                if kind == "feedback":
                    with lock:
                        done = [r.json()["prediction_id"] for _, k, r in answers
                                if k == "predict" and r.status_code == 200]
                    if not done:
                        time.sleep(0.05)
                        continue
                    r = client.post("/feedback", json={"prediction_id": done[i % len(done)],
                                                       "label": i % 2})
                    time.sleep(0.02)
                else:
                    r = client.post("/endpoints/loan/predict", json=records[i % len(records)])
                with lock:
                    answers.append((time.monotonic(), kind, r))
                i += 7

    def watch(url: str, seen: list[tuple[float, int]]) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                try:
                    code = client.get("/v2/health/ready").status_code
                except Exception as exc:  # noqa: BLE001
                    broken.append(f"readiness: {exc!r}")
                    return
                seen.append((time.monotonic(), code))
                time.sleep(0.1)

    threads = [threading.Thread(target=load, args=(kind, w))
               for w, kind in enumerate(["predict"] * 3 + ["token", "feedback"])]
    threads += [threading.Thread(target=watch, args=(base, readiness)),
                threading.Thread(target=watch, args=(f"http://127.0.0.1:{idle_port}",
                                                     idle_readiness))]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        stopping = time.monotonic()
        done = _run(["pg_ctl", "-D", str(own_postgres.data_dir), "-m", "fast", "-w", "stop"],
                    timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(DOWN_S)
        _start(own_postgres.data_dir, own_postgres.port)
        up = time.monotonic()
        deadline = up + 20
        while time.monotonic() < deadline and not (
                readiness and readiness[-1][0] > up and readiness[-1][1] == 200):
            time.sleep(0.1)
        time.sleep(2.0)  # and load goes on a while after recovery
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        for each in processes:
            stop_server(each)
    server_log = (home / f"server-{port}.log").read_text()
    assert not broken, broken

    # Every refusal is a 503 a client retries, and only while the database was down.
    refused = [(at, kind, r) for at, kind, r in answers if r.status_code != 200]
    assert {(kind, r.status_code) for _, kind, r in refused} <= {
        ("predict", 503), ("token", 503), ("feedback", 503)}, \
        {(kind, r.status_code, r.text[:200]) for _, kind, r in refused}
    assert all(r.headers.get("retry-after") == "5" for _, _, r in refused)
    assert {kind for _, kind, _ in refused} == {"predict", "token", "feedback"}
    assert all(stopping <= at <= up + RECOVERY_GRACE_S for at, _, _ in refused), \
        [(round(at - stopping, 2), kind) for at, kind, _ in refused
         if not stopping <= at <= up + RECOVERY_GRACE_S]
    assert any(at > up and r.status_code == 200 for at, kind, r in answers if kind == "token")

    # Readiness: 200 before, 503 while down, 200 again by itself.
    for seen in (readiness, idle_readiness):
        assert all(code == 200 for at, code in seen if at < stopping)
        assert any(code == 503 for at, code in seen if stopping <= at <= up)
        assert all(code == 200 for at, code in seen if at > up + RECOVERY_GRACE_S)
        assert seen[-1][1] == 200

    # Every 2xx answer is in the store exactly once.
    predicted = [r.json()["prediction_id"] for _, kind, r in answers
                 if kind in ("predict", "token") and r.status_code == 200]
    labelled = sum(1 for _, kind, r in answers if kind == "feedback" and r.status_code == 200)
    assert len(set(predicted)) == len(predicted)
    with store.read() as conn:
        stored = conn.execute(select(func.count()).select_from(t.predictions).where(
            t.predictions.c.id.in_(predicted))).scalar()
        labels = conn.execute(select(func.count()).select_from(t.feedback)).scalar()
    assert stored == len(predicted)
    assert labels == labelled
    assert "Traceback" not in server_log, server_log[-3000:]
    store.close()


def test_the_probe_counts_a_failing_or_hanging_poll_and_not_a_bug():
    from types import SimpleNamespace

    from sqlalchemy.exc import OperationalError

    from prodml.serving.fleet import StoreProbe

    probe = StoreProbe(SimpleNamespace(display_url="sqlite:///p.db"), stale_after_s=0.2)
    probe.asking()
    assert probe.reachable  # a poll in flight, not late yet
    time.sleep(0.3)
    assert not probe.reachable  # it hangs
    probe.succeeded()
    assert probe.reachable
    probe.asking()
    probe.failed(OperationalError("SELECT", {}, Exception("connection refused")))
    assert not probe.reachable and probe.failure == "connection refused"
    probe.asking()
    probe.failed(ValueError("a bug, not the store"))
    assert not probe.reachable  # still the store's failure: a bug says nothing of it
    probe.succeeded()
    assert probe.reachable and probe.failure is None
