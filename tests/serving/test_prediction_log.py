"""The prediction log on real SQLite files and a real PostgreSQL server.

Durability is checked from outside: through a separate connection, in the raw bytes of the
SQLite file, and across a ``kill -9`` of a process that logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from prodml.errors import InvalidInputError, NotFoundError, StoreUnavailableError
from prodml.serving.feedback import record_feedback
from prodml.serving.prediction_log import (PredictionLog, PredictionRecord, get_prediction,
                                           hash_pii, new_prediction_id, read_predictions)
from prodml.store import open_store
from prodml.store import tables as t


def record(endpoint: str = "loans", *, inputs: dict | None = None, prediction="approve",
           probabilities: dict | None = None, status: str = "ok", route: str = "primary",
           time_ms: int | None = None, **extra) -> PredictionRecord:
    pid = new_prediction_id()
    return PredictionRecord(
        id=pid, time=time_ms if time_ms is not None else int(time.time() * 1000),
        endpoint=endpoint, model_name="loan", model_version=1, route=route, revision=3,
        routing_key=None, inputs={"age": 41, "salary": 52000.0} if inputs is None else inputs,
        prediction=prediction, probabilities=probabilities, confidence=0.8, latency_ms=2.5,
        status=status, **extra)


class Outside:
    """A connection of our own to the store's database: what another process would see."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)

    def count(self, ids: list[str] | None = None) -> int:
        query = select(func.count()).select_from(t.predictions)
        if ids is not None:
            query = query.where(t.predictions.c.id.in_(ids))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def has(self, pid: str) -> bool:
        return self.count([pid]) == 1


@pytest.fixture
def outside(store):
    seen = Outside(store.database_url)
    yield seen
    seen.engine.dispose()


def test_ids_sort_by_time_and_are_unique():
    ids = [new_prediction_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert all(int(a[:12], 16) <= int(b[:12], 16) for a, b in zip(ids, ids[1:]))
    assert abs(int(ids[-1][:12], 16) - time.time() * 1000) < 5_000


def test_concurrent_writes_share_commits(store, outside):
    log = PredictionLog(store)
    records = [record() for _ in range(300)]

    async def main():
        await asyncio.gather(*(log.write([r]) for r in records))

    asyncio.run(main())
    stats = log.stats
    log.close()
    assert outside.count() == 300
    assert stats.rows == 300 and stats.failed_commits == 0 and stats.queue_depth == 0
    assert stats.commits < 150, stats  # grouped: far fewer commits than records
    assert stats.max_commit_rows > 1 and stats.mean_commit_ms > 0
    with store.read() as conn:  # one payload per endpoint per commit
        assert conn.execute(select(func.count()).select_from(t.prediction_batches)
                            ).scalar_one() == stats.commits


def test_durable_write_returns_only_once_another_connection_sees_it(store, outside):
    log = PredictionLog(store)
    missing = []

    async def client(k: int) -> None:
        for _ in range(10):
            r = record(inputs={"client": k})
            await log.write([r])
            if not outside.has(r.id):
                missing.append(r.id)

    async def main():
        await asyncio.gather(*(client(k) for k in range(8)))

    asyncio.run(main())
    log.close()
    assert missing == []
    assert outside.count() == 80


def test_fast_mode_commits_within_the_flush_interval(store, outside):
    log = PredictionLog(store, mode="fast", flush_interval=0.1)
    r = record()

    async def main():
        started = time.perf_counter()
        await log.write([r])
        returned = time.perf_counter() - started
        while not outside.has(r.id):
            await asyncio.sleep(0.005)
            assert time.perf_counter() - started < 2.0, "not committed within 2 s"
        return returned, time.perf_counter() - started

    returned, visible = asyncio.run(main())
    log.close()
    assert returned < 0.05  # fast mode does not wait for the commit
    assert 0.09 <= visible < 1.0  # gathered for ~100 ms, then one commit


def test_fast_mode_close_commits_what_is_buffered(store, outside):
    log = PredictionLog(store, mode="fast", flush_interval=60)
    records = [record() for _ in range(50)]

    async def main():
        for r in records:
            await log.write([r])
        await asyncio.sleep(0.2)

    asyncio.run(main())
    assert outside.count() == 0  # still buffered: the writer waits for up to 60 s
    started = time.perf_counter()
    log.close()
    assert time.perf_counter() - started < 5
    assert outside.count() == 50
    log.close()  # idempotent
    with pytest.raises(StoreUnavailableError, match="prediction log is closed"):
        asyncio.run(log.write([record()]))


def test_write_nowait_and_flush_in_both_modes(store, outside):
    for mode in ("durable", "fast"):
        log = PredictionLog(store, mode=mode, flush_interval=30)
        shadows = [record(route="shadow", parent_id=new_prediction_id()) for _ in range(20)]
        for r in shadows:
            log.write_nowait(r)
        log.flush(timeout=10)
        assert outside.count([r.id for r in shadows]) == 20
        log.close()
    frame = read_predictions(routes="shadow", store=store)
    assert frame.height == 40 and frame["parent_id"].null_count() == 0


def test_write_sync_for_code_without_an_event_loop(store, outside):
    log = PredictionLog(store, mode="fast")
    r = record()
    log.write_sync([r])  # blocks until committed, even in fast mode
    assert outside.has(r.id)
    log.close()


def test_a_bad_record_is_logged_with_its_error_and_the_others_commit(store):
    log = PredictionLog(store)
    good = [record() for _ in range(3)]
    bad = record(inputs={"age": object(), "note": "kept"}, prediction=object())

    async def main():
        await asyncio.gather(*(log.write([r]) for r in [*good, bad]))

    asyncio.run(main())
    log.close()
    frame = read_predictions(store=store)
    assert frame.height == 4 and frame.filter(pl.col("error").is_null()).height == 3
    logged = get_prediction(bad.id)
    assert logged["prediction"] is None and logged["inputs"]["note"] == "kept"
    assert logged["inputs"]["age"] is None
    assert "input 'age' not logged" in logged["error"]
    assert "prediction not logged" in logged["error"]


def test_one_callers_duplicate_id_fails_only_that_caller(store):
    log = PredictionLog(store)
    first = record()
    log.write_sync(first)
    twin = record()
    twin.id = first.id
    others = [record() for _ in range(10)]

    async def main():
        return await asyncio.gather(*(log.write([r]) for r in [*others, twin]),
                                    return_exceptions=True)

    outcomes = asyncio.run(main())
    log.close()
    assert outcomes[:10] == [None] * 10
    assert isinstance(outcomes[10], InvalidInputError)
    assert read_predictions(store=store).height == 11


def test_a_failed_commit_raises_store_unavailable_and_the_writer_survives(store, outside):
    log = PredictionLog(store)
    log.write_sync(record())
    with outside.engine.begin() as conn:
        conn.execute(text("ALTER TABLE predictions RENAME TO predictions_away"))
    try:
        with pytest.raises(StoreUnavailableError):
            asyncio.run(log.write([record()]))
        log.write_nowait(record())  # nobody waits: counted as dropped
        log.flush()
    finally:
        with outside.engine.begin() as conn:
            conn.execute(text("ALTER TABLE predictions_away RENAME TO predictions"))
    r = record()
    asyncio.run(log.write([r]))
    stats = log.stats
    log.close()
    assert outside.has(r.id) and outside.count() == 2
    assert stats.failed_commits == 2 and stats.dropped == 1


def test_read_predictions_round_trip(store):
    log = PredictionLog(store)
    base = 1_700_000_000_000
    early = record(time_ms=base, inputs={"age": 30, "city": "Oslo", "status": "gold"},
                   probabilities={"approve": 0.9, "reject": 0.1}, prediction="approve")
    later = record(time_ms=base + 1000, inputs={"age": 52.5, "income": 70000},
                   probabilities={"approve": 0.3, "reject": 0.7}, prediction="reject")
    other = record("search", time_ms=base + 2000, inputs={"query": "red shoes"},
                   prediction=["a", "b"], route="canary")
    log.write_sync([early])
    log.write_sync([later, other])
    log.close()
    record_feedback([{"prediction_id": early.id, "label": "reject"},
                     {"prediction_id": early.id, "label": "approve"},  # the latest wins
                     {"prediction_id": later.id, "event": "clicked"},
                     {"prediction_id": later.id, "event": "clicked"},
                     {"prediction_id": later.id, "event": "dwell_s", "value": 2.5}])

    frame = read_predictions("loans")
    assert frame["id"].to_list() == [early.id, later.id]
    assert frame["age"].to_list() == [30.0, 52.5]  # int in one commit, float in the other
    assert frame["city"].to_list() == ["Oslo", None]
    assert frame["income"].to_list() == [None, 70000]
    assert frame["input_status"].to_list() == ["gold", None]  # "status" is the log's
    assert frame["status"].to_list() == ["ok", "ok"]
    assert frame["proba_approve"].to_list() == [0.9, 0.3]
    assert frame["prediction"].to_list() == ["approve", "reject"]
    assert frame["label"].to_list() == ["approve", None]
    assert frame["label_time"][0] is not None and frame["label_time"][1] is None
    assert frame["clicked"].to_list() == [0, 2] and frame["dwell_s"].to_list() == [0, 2.5]
    assert frame.select("time", "model_version", "revision", "confidence").row(0) == (
        base, 1, 3, 0.8)

    assert read_predictions("loans", since=base + 500)["id"].to_list() == [later.id]
    assert read_predictions(until=base + 500)["id"].to_list() == [early.id]
    assert read_predictions(after_id=early.id, limit=1)["id"].to_list() == [later.id]
    assert read_predictions(routes=["canary"])["prediction"].to_list() == [["a", "b"]]
    bare = read_predictions("loans", with_inputs=False, with_feedback=False)
    assert "age" not in bare.columns and "label" not in bare.columns
    assert bare.height == 2
    empty = read_predictions("nobody")
    assert empty.height == 0 and {"id", "time", "prediction", "label"} <= set(empty.columns)

    one = get_prediction(later.id)
    assert one["inputs"] == {"age": 52.5, "income": 70000}
    assert one["probabilities"] == {"approve": 0.3, "reject": 0.7}
    assert one["events"] == {"clicked": 2, "dwell_s": 2.5} and one["label"] is None
    assert [f["source"] for f in one["feedback"]] == ["api"] * 3
    with pytest.raises(NotFoundError, match="prediction 'nope' not found"):
        get_prediction("nope")


def test_review_status_opens_a_review_item_in_the_same_commit(store):
    log = PredictionLog(store)
    asked = record(status="review", route="human", prediction="reject")
    log.write_sync([record(), asked])
    log.close()
    with store.read() as conn:
        rows = conn.execute(select(t.review_items)).mappings().all()
    assert [(r["prediction_id"], r["status"], r["suggestion"]) for r in rows] == [
        (asked.id, "open", '"reject"')]


def test_pii_inputs_never_reach_the_sqlite_file_in_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("PRODML_PII_KEY", raising=False)
    store = open_store(f"sqlite:///{tmp_path}/pii/prodml.db", str(tmp_path / "artifacts"))
    log = PredictionLog(store)
    log.set_pii("loans", ["email", "phone"])
    secret, phone = "alice.secret@example.com", 4791234567
    records = [record(inputs={"email": secret, "phone": phone, "city": "Trondheimsfjord"})
               for _ in range(5)]
    records.append(record("other", inputs={"email": "bob.visible@example.com"}))
    log.write_sync(records)
    log.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "pii").glob("prodml.db*"))
    assert b"Trondheimsfjord" in raw  # the check can see clear text where there is some
    assert b"bob.visible@example.com" in raw  # PII is per endpoint
    assert secret.encode() not in raw and b"alice.secret" not in raw
    assert str(phone).encode() not in raw

    key_file = Path(os.environ["PRODML_HOME"]) / "pii.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    frame = read_predictions("loans", store=store)
    expected = hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
    assert frame["email"].to_list() == [expected] * 5 == [hash_pii(secret)] * 5
    assert frame["phone"].to_list() == [hash_pii(phone)] * 5
    assert frame["city"].to_list() == ["Trondheimsfjord"] * 5
    store.close()


def test_pii_key_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("PRODML_PII_KEY", "a key the operator keeps")
    log = PredictionLog(store)
    log.set_pii("loans", ["email"])
    log.write_sync(record(inputs={"email": "x@example.com"}))
    log.close()
    expected = hmac.new(b"a key the operator keeps", b"x@example.com", hashlib.sha256)
    assert read_predictions(store=store)["email"].to_list() == [expected.hexdigest()]
    assert not (Path(os.environ["PRODML_HOME"]) / "pii.key").exists()


def test_bad_settings_are_refused(store):
    with pytest.raises(InvalidInputError, match="mode='safe'"):
        PredictionLog(store, mode="safe")
    with pytest.raises(InvalidInputError, match="flush_interval"):
        PredictionLog(store, flush_interval=0)


def test_many_threads_writing_without_a_loop(store, outside):
    log = PredictionLog(store)
    ids: list[str] = []

    def worker() -> None:
        for _ in range(25):
            r = record()
            log.write_sync(r)
            ids.append(r.id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert outside.count(ids) == 200 and log.stats.commits < 200


CHILD = r"""
import asyncio, sys, time
from prodml.store import open_store
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id

store = open_store(sys.argv[1], sys.argv[2])
log = PredictionLog(store)
out = sys.stdout

async def client(k):
    n = 0
    while True:
        pid = new_prediction_id()
        n += 1
        await log.write([PredictionRecord(pid, int(time.time() * 1000), "loans", "loan", 1,
                                          "primary", 1, None, {"k": k, "n": n}, "approve",
                                          None, 0.9, 1.0, "ok")])
        out.write(pid + "\n")
        out.flush()

async def main():
    await asyncio.gather(*(client(k) for k in range(16)))

asyncio.run(main())
"""


@pytest.mark.slow
def test_every_acknowledged_write_survives_kill_9(store, tmp_path, outside):
    child = subprocess.Popen([sys.executable, "-c", CHILD, store.database_url,
                              str(tmp_path / "child-artifacts")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while len(acknowledged) < 500 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, errors
    acknowledged += [line for line in rest.split("\n") if len(line) == 32]
    assert len(acknowledged) >= 500, errors
    assert outside.count(acknowledged) == len(set(acknowledged))


def test_a_window_read_from_payloads_equals_the_row_by_row_read(store, monkeypatch):
    from polars.testing import assert_frame_equal

    from prodml.serving import log_payload

    log = PredictionLog(store)
    base = 1_700_000_000_000
    routes = ["primary", "canary", "shadow"]
    for k in range(6):
        log.write_sync([record("loans" if i % 3 else "search", time_ms=base + 100 * k + i,
                               route=routes[i % 3], prediction=i % 2,
                               inputs={"age": k * 10 + i, "city": f"c{i}"},
                               probabilities={"0": 0.25, "1": 0.75} if i % 2 else None)
                        for i in range(5)])
    real_encode = log_payload.encode

    def broken(rows, columns):
        raise RuntimeError("disk of arrows is full")

    monkeypatch.setattr(log_payload, "encode", broken)
    orphan = record(time_ms=base + 250, inputs={"age": 1})
    log.write_sync([orphan])
    monkeypatch.setattr(log_payload, "encode", real_encode)
    log.close()
    record_feedback([{"prediction_id": orphan.id, "label": 1}])

    assert get_prediction(orphan.id)["error"].endswith("RuntimeError: disk of arrows is full")
    for kwargs in ({}, {"endpoint": "loans"}, {"since": base + 150, "until": base + 420},
                   {"routes": ["canary", "shadow"], "endpoint": "loans"},
                   {"with_inputs": False}, {"with_feedback": False}):
        window = read_predictions(**kwargs)
        rows = read_predictions(**kwargs, limit=10**6)
        assert_frame_equal(window, rows)
    everything = read_predictions()
    assert everything.height == 31
    assert everything.filter(pl.col("id") == orphan.id)["label"].to_list() == [1]


EXITING = r"""
import asyncio, sys, time
from prodml.store import open_store
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id

log = PredictionLog(open_store(sys.argv[1], sys.argv[2]), mode="fast", flush_interval=60)
pid = new_prediction_id()
asyncio.run(log.write([PredictionRecord(pid, int(time.time() * 1000), "loans", "loan", 1,
                                        "primary", 1, None, {"k": 1}, "approve", None, 0.9,
                                        1.0, "ok")]))
print(pid, flush=True)
# no close(): the interpreter's exit must flush the buffer
"""


def test_fast_mode_flushes_at_interpreter_exit(tmp_path):
    url = f"sqlite:///{tmp_path}/exit.db"
    done = subprocess.run([sys.executable, "-c", EXITING, url, str(tmp_path / "artifacts")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = Outside(url)
    assert seen.has(done.stdout.strip())
    seen.engine.dispose()
