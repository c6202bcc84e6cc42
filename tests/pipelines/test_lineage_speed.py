"""Lineage over a log of 1,000,000 predictions (SQLite and PostgreSQL), timed.

Endpoint ``big`` served loan/1 then canaried loan/2 (900,000 rows, 20% canary); endpoint
``solo`` only ever served loan/1 directly (100,000 rows). Up from one prediction is a lookup
by id; down from loan/1's training data counts what both endpoints answered with it: from
the ``(endpoint, time)`` index alone for ``solo``, by a scan of ``big``'s rows for the split.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

import prodml as pm
from prodml.store import now_ms

ROWS = 1_000_000
COLUMNS = ("id", "time", "endpoint", "model_name", "model_version", "route", "revision",
           "prediction", "confidence", "latency_ms", "status")


def _bulk_log(store, now: int) -> None:
    """The rows straight into the table, after the deployments: COPY on PostgreSQL, the
    driver's executemany on SQLite."""
    rng = np.random.default_rng(0)
    times = np.sort(now + rng.integers(1, 23 * 3_600_000, ROWS))
    solo = rng.random(ROWS) < 0.1
    canary = ~solo & (rng.random(ROWS) < 0.2)
    frame = pd.DataFrame({
        "id": [f"{t:012x}{i:020x}" for i, t in enumerate(times.tolist())], "time": times,
        "endpoint": np.where(solo, "solo", "big"), "model_name": "loan",
        "model_version": np.where(canary, 2, 1), "route": np.where(canary, "canary", "primary"),
        "revision": np.where(solo, 1, 2), "prediction": "1", "confidence": 0.9,
        "latency_ms": 1.0, "status": "ok"})
    if store.dialect == "postgresql":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False)
        with store.engine.raw_connection() as raw:
            with raw.cursor() as cursor, cursor.copy(
                    f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
            ) as copy:
                copy.write(buffer.getvalue())
            raw.commit()
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE predictions")
            conn.commit()
    else:
        with store.write() as conn:
            conn.exec_driver_sql(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "
                                 f"({', '.join('?' * len(COLUMNS))})",
                                 list(frame.itertuples(index=False, name=None)))


def _timed(ref: str, direction: str) -> tuple[float, pm.LineageGraph]:
    best, graph = float("inf"), None
    for _ in range(3):
        started = time.perf_counter()
        graph = pm.lineage(ref, direction)
        best = min(best, time.perf_counter() - started)
    return best, graph


@pytest.mark.slow
def test_lineage_over_a_million_predictions(store):
    X = pd.DataFrame({"x": [0.0, 1.0]})
    digests = []
    for i in range(2):
        with pm.start_run(experiment="speed") as run:
            digests.append(run.log_dataset(pd.DataFrame({"x": [float(i)] * 10})).digest)
        pm.models.register("loan", DummyClassifier().fit(X, [0, 1]), run=run.id,
                           input_example=X)
    pm.endpoints.deploy("solo", "loan/1")
    pm.endpoints.deploy("big", "loan/1")
    pm.endpoints.deploy("big", "loan/2", strategy="canary", steps=[20, 100])
    _bulk_log(store, now_ms())
    with store.read() as conn:
        some = conn.exec_driver_sql("SELECT id FROM predictions WHERE endpoint = 'big' "
                                    "AND model_version = 2 LIMIT 1").scalar()
    up_s, up = _timed(some, "up")
    assert up.models() == ["loan/2"] and [n.id for n in up.nodes_of("dataset")] == [digests[1]]
    down_s, down = _timed(digests[0], "down")
    counts = {n.id: n.properties["count"] for n in down.nodes_of("predictions")}
    assert set(counts) == {"loan/1@big", "loan/1@solo"} and sum(counts.values()) > 0.7 * ROWS
    solo_s, solo = _timed("endpoint:solo", "down")
    assert solo.nodes_of("predictions")[0].properties["count"] == counts["loan/1@solo"]
    print(f"\nlineage over {ROWS:,} predictions on {store.dialect}: up from a prediction "
          f"{up_s * 1000:.0f} ms; down from a dataset (two endpoints, one a canary) "
          f"{down_s * 1000:.0f} ms; down from a one-version endpoint {solo_s * 1000:.0f} ms")
    assert up_s < 0.5 and solo_s < 1.0 and down_s < 10.0
