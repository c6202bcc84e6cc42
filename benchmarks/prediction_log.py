"""Benchmark: the prediction log (group commit, Arrow payloads) against a naive log that
commits one SQLAlchemy INSERT per request, on SQLite (WAL, synchronous=NORMAL) in one run.

Not a test. Each request logs one record of ``--features`` numeric and text features with
two class probabilities. ``--concurrency`` asyncio tasks play the server's in-flight
requests: each awaits ``log.write([record])`` before its next one, as a handler awaits the
log before answering.

- durable: ``PredictionLog(mode="durable")``: a write returns once its commit is done;
- fast: ``PredictionLog(mode="fast")``: buffered, flushed every 100 ms; the clock stops
  after ``close()`` has committed everything;
- naive (the peer): the usual code, one transaction per request, inputs and probabilities as
  JSON text columns, ``with engine.begin(): conn.execute(insert, row)``, one thread.

Then both logs are read back into one Polars frame with their inputs as columns
(``read_predictions`` vs SELECT + ``json.loads`` per row). Repeated ``--repeat`` times in
fresh files; medians. The last line is the ratio (prodml / naive records per second).

    .venv/bin/python benchmarks/prediction_log.py --records 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from sqlalchemy import (BigInteger, Column, Float, Integer, MetaData, String, Table, Text,
                        create_engine, event, select)

from prodml.serving.prediction_log import (PredictionLog, PredictionRecord, new_prediction_id,
                                           read_predictions)
from prodml.store import open_store

NAIVE = MetaData()
naive_log = Table(
    "naive_log", NAIVE,
    Column("id", String(32), primary_key=True), Column("time", BigInteger, nullable=False),
    Column("endpoint", String(255), nullable=False), Column("model_name", String(255)),
    Column("model_version", Integer), Column("route", String(16), nullable=False),
    Column("prediction", Text), Column("confidence", Float), Column("latency_ms", Float),
    Column("status", String(16), nullable=False), Column("inputs", Text),
    Column("probabilities", Text))


def make_records(n: int, features: int, seed: int) -> list[PredictionRecord]:
    rng = random.Random(seed)
    cities = ["Oslo", "Bergen", "Trondheim", "Tromsø", "Stavanger"]
    out = []
    for _ in range(n):
        inputs: dict[str, object] = {f"x{j}": rng.random() * 100 for j in range(features - 2)}
        inputs["city"] = rng.choice(cities)
        inputs["age"] = rng.randint(18, 90)
        p = rng.random()
        out.append(PredictionRecord(
            id=new_prediction_id(), time=int(time.time() * 1000), endpoint="loans",
            model_name="loan", model_version=2, route="primary", revision=1, routing_key=None,
            inputs=inputs, prediction="approve" if p > 0.5 else "reject",
            probabilities={"approve": p, "reject": 1 - p}, confidence=max(p, 1 - p),
            latency_ms=rng.random() * 5, status="ok"))
    return out


async def _drive(log: PredictionLog, records: list[PredictionRecord], concurrency: int) -> None:
    pending = iter(records)

    async def client() -> None:
        for record in pending:
            await log.write([record])

    await asyncio.gather(*(client() for _ in range(concurrency)))


def run_prodml(folder: Path, records: list[PredictionRecord], mode: str, concurrency: int
               ) -> tuple[float, float, dict]:
    store = open_store(f"sqlite:///{folder}/prodml.db", str(folder / "artifacts"))
    log = PredictionLog(store, mode=mode)
    log.start()
    log.flush()  # the writer has warmed up (PyArrow's first conversion imports pandas)
    started = time.perf_counter()
    asyncio.run(_drive(log, records, concurrency))
    log.close()
    elapsed = time.perf_counter() - started
    stats = log.stats.to_dict()
    started = time.perf_counter()
    frame = read_predictions("loans", store=store)
    read_s = time.perf_counter() - started
    assert frame.height == len(records) and "x0" in frame.columns, frame.shape
    store.close()
    return elapsed, read_s, stats


def run_naive(folder: Path, records: list[PredictionRecord]) -> tuple[float, float]:
    engine = create_engine(f"sqlite:///{folder}/naive.db")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    NAIVE.create_all(engine)
    started = time.perf_counter()
    for r in records:
        with engine.begin() as conn:
            conn.execute(naive_log.insert(), {
                "id": r.id, "time": r.time, "endpoint": r.endpoint, "model_name": r.model_name,
                "model_version": r.model_version, "route": r.route,
                "prediction": json.dumps(r.prediction), "confidence": r.confidence,
                "latency_ms": r.latency_ms, "status": r.status,
                "inputs": json.dumps(r.inputs), "probabilities": json.dumps(r.probabilities)})
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(select(naive_log).where(naive_log.c.endpoint == "loans")
                            .order_by(naive_log.c.id)).mappings().all()
    frame = pl.DataFrame([{**{k: v for k, v in row.items()
                              if k not in ("inputs", "probabilities", "prediction")},
                           "prediction": json.loads(row["prediction"]),
                           **json.loads(row["inputs"]),
                           **{f"proba_{c}": p
                              for c, p in json.loads(row["probabilities"]).items()}}
                          for row in rows])
    read_s = time.perf_counter() - started
    assert frame.height == len(records)
    engine.dispose()
    return elapsed, read_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {args.records} records "
          f"of {args.features} features, {args.concurrency} concurrent writers, SQLite WAL")
    results: dict[str, list[float]] = {k: [] for k in ("durable", "fast", "naive",
                                                      "read_prodml", "read_naive")}
    for rep in range(args.repeat):
        records = make_records(args.records, args.features, seed=rep)
        with tempfile.TemporaryDirectory(prefix="prodml-bench-log-") as tmp:
            folder = Path(tmp)
            order = ["durable", "fast", "naive"] if rep % 2 == 0 else ["naive", "fast",
                                                                       "durable"]
            for kind in order:
                sub = folder / kind
                sub.mkdir()
                if kind == "naive":
                    elapsed, read_s = run_naive(sub, records)
                    results["read_naive"].append(read_s)
                    detail = ""
                else:
                    fresh = [PredictionRecord(**{**_fields(r), "id": new_prediction_id()})
                             for r in records]
                    elapsed, read_s, stats = run_prodml(sub, fresh, kind, args.concurrency)
                    if kind == "durable":
                        results["read_prodml"].append(read_s)
                    detail = (f"  ({stats['commits']} commits, "
                              f"{stats['rows'] / max(stats['commits'], 1):.0f} rows/commit, "
                              f"mean commit {stats['mean_commit_ms']:.2f} ms)")
                results[kind].append(args.records / elapsed)
                print(f"rep {rep + 1} {kind:8} {args.records / elapsed:10,.0f} records/s"
                      f"{detail}")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"median   durable {med['durable']:,.0f}/s  fast {med['fast']:,.0f}/s  "
          f"naive {med['naive']:,.0f}/s")
    print(f"read back {args.records} rows into Polars: prodml {med['read_prodml'] * 1000:.0f} "
          f"ms, naive JSON {med['read_naive'] * 1000:.0f} ms "
          f"({med['read_naive'] / med['read_prodml']:.1f}x)")
    print(f"ratio durable/naive: {med['durable'] / med['naive']:.1f}x  "
          f"fast/naive: {med['fast'] / med['naive']:.1f}x")


def _fields(record: PredictionRecord) -> dict:
    return {name: getattr(record, name) for name in PredictionRecord.__dataclass_fields__}


if __name__ == "__main__":
    main()
