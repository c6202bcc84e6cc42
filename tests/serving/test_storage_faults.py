"""Storage faults are loud: a real ``prodml serve`` whose store runs out of room.

The child server gets ``RLIMIT_FSIZE`` (SIGXFSZ ignored, so writes past the limit fail with
EFBIG instead of killing it) on a real SQLite store: its WAL soon cannot grow, and every
commit fails as on a full disk. No answered prediction may be missing from the log; the rest
are 503 with ``Retry-After`` on every protocol; readiness is false while commits fail and true
again once one succeeds (after the limit is lifted from outside with ``prlimit``).
"""

from __future__ import annotations

import re
import resource
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from sqlalchemy import select

from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.serving.conftest import FEATURES, build_store, free_port, start_server, stop_server

pytestmark = pytest.mark.slow


def limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


def metric(text: str, name: str, endpoint: str) -> float:
    found = re.search(rf'^{name}{{endpoint="{endpoint}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("full")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store)
    with sqlite3.connect(home / "prodml.db") as conn:  # the WAL starts empty
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return home, store, data


def test_a_full_disk_loses_no_answered_prediction_and_says_503(home):
    home, store, data = home
    records = data[FEATURES].to_dict(orient="records")
    database = home / "prodml.db"
    # Room for a few hundred predictions in the WAL, then every commit fails.
    limit = database.stat().st_size + 1536 * 1024
    port = free_port()
    process, _ = start_server(home, port, preexec_fn=limit_file_size(limit))
    url = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    refused: list[httpx.Response] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            i = worker
            while not stop.is_set():
                r = client.post("/endpoints/loan/predict", json=records[i % len(records)])
                with lock:
                    if r.status_code == 200:
                        answered.append(r.json()["prediction_id"])
                    else:
                        refused.append(r)
                i += 8

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 90
        while len(refused) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=30) as client:
            # While commits fail: not ready on every readiness route, and every protocol
            # answers 503 + Retry-After with a JSON body naming the cause.
            assert client.get("/v2/health/ready").status_code == 503
            assert client.get("/health").status_code == 503
            assert client.get("/ping").status_code == 503
            assert client.get("/v2/models/loan/ready").status_code == 503
            assert client.get("/v2/health/live").status_code == 200
            types = {i["name"]: i["datatype"]
                     for i in client.get("/v2/models/loan").json()["inputs"]}
            oip = client.post("/v2/models/loan/infer", json={"inputs": [
                {"name": name, "shape": [1], "datatype": types[name],
                 "data": [records[0][name]]} for name in FEATURES]})
            mlflow = client.post("/invocations", json={"dataframe_records": records[:1]})
            for r in (oip, mlflow):
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "5"
                assert "cannot write to store" in r.text
            scraped = client.get("/metrics").text
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(answered) >= 50 and len(refused) >= 200, (len(answered), len(refused))
        for r in refused:
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "5"
            body = r.json()
            assert body["error"] == "StoreWriteError" and body["field"] == "store"
            assert re.search(r"disk I/O error|disk is full", body["message"]), body
        assert metric(scraped, "prodml_log_commit_failures_total", "loan") >= 1
        assert metric(scraped, "prodml_log_dropped_total", "loan") == 0  # durable: none
        assert "prodml_log_healthy 0.0" in scraped

        # Room again: the writer's probe commits, readiness comes back without traffic.
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 15
            while client.get("/v2/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "still not ready with room on the disk"
                time.sleep(0.2)
            assert client.get("/health").status_code == 200
            r = client.post("/endpoints/loan/predict", json=records[0])
            assert r.status_code == 200, r.text
            answered.append(r.json()["prediction_id"])
            assert "prodml_log_healthy 1.0" in client.get("/metrics").text
    finally:
        stop.set()
        stop_server(process)
    with store.read() as conn:
        found = {row.id for row in conn.execute(select(t.predictions.c.id).where(
            t.predictions.c.id.in_(answered)))}
    assert set(answered) <= found, f"{len(set(answered) - found)} answered but not logged"
    server_log = (home / f"server-{port}.log").read_text()
    assert "prediction log: cannot commit to" in server_log
    assert "succeed again" in server_log


FAST_CHILD = r"""
import asyncio, json, sys, time
from prodml.errors import StoreWriteError
from prodml.store import open_store
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id

log = PredictionLog(open_store(sys.argv[1], sys.argv[2]), mode="fast", flush_interval=0.05,
                    max_queue=int(sys.argv[3]))
refused = 0

async def client(k):
    global refused
    n = 0
    while refused < 200:
        pid = new_prediction_id()
        n += 1
        try:
            await log.write([PredictionRecord(pid, int(time.time() * 1000), "loans", "loan", 1,
                                              "primary", 1, None, {"k": k, "n": n}, "approve",
                                              None, 0.9, 1.0, "ok")])
        except StoreWriteError:
            refused += 1
            continue
        print(pid, flush=True)
        await asyncio.sleep(0)  # as a server's request does (socket I/O)

async def main():
    await asyncio.gather(*(client(k) for k in range(16)))

asyncio.run(main())
log.close()
print("STATS", json.dumps(log.stats.to_dict()), flush=True)
"""


def test_fast_mode_on_a_full_disk_loses_a_bounded_counted_number(tmp_path):
    """Fast mode answers before the commit, so a failing store can lose what was queued:
    at most ``max_queue`` records (plus one loop iteration's writes), every one counted; after
    the first failed commit, writes wait for their commit and fail loudly instead."""
    import subprocess
    import sys

    from prodml.store import open_store

    url, artifacts, max_queue = f"sqlite:///{tmp_path}/p.db", str(tmp_path / "a"), 300
    store = open_store(url, artifacts)
    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    limit = (tmp_path / "p.db").stat().st_size + 512 * 1024
    child = subprocess.run([sys.executable, "-c", FAST_CHILD, url, artifacts, str(max_queue)],
                           capture_output=True, text=True, timeout=120,
                           preexec_fn=limit_file_size(limit))
    assert child.returncode == 0, child.stderr[-3000:]
    lines = child.stdout.split("\n")
    stats = next(__import__("json").loads(line[6:]) for line in lines
                 if line.startswith("STATS "))
    acknowledged = [line for line in lines if len(line) == 32]
    with store.read() as conn:
        stored = {row.id for row in conn.execute(select(t.predictions.c.id))}
    missing = set(acknowledged) - stored
    assert len(acknowledged) > 500 and len(stored) > 0
    assert stats["failed_commits"] >= 1 and stats["failing"]
    assert len(missing) == stats["dropped"] == stats["dropped_by_endpoint"].get("loans", 0)
    assert len(missing) <= max_queue + 16, (len(missing), stats)
    assert "cannot commit to" in child.stderr  # the warning
