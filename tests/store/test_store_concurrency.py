"""Eight processes log into one store at the same time, and nothing is lost.

Each process starts ``RUNS`` runs in the same experiment and logs params and ``POINTS``
points of ``loss`` one ``log_metric`` call (one transaction) at a time; afterwards every
record is counted and every latest value checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import store_workers
from sqlalchemy import func, select

import prodml as pm
from prodml.store import open_store
from prodml.store import tables as t

WORKERS = store_workers.POOL_SIZE
RUNS = 5
POINTS = 200


def log_concurrently(url: str, tmp_path: Path, run_together) -> tuple[pm.Store, list]:
    artifacts = str(tmp_path / "artifacts")
    open_store(url, artifacts).close()  # migrated up front: this test is about logging
    code_dir = tmp_path / "not-a-repo"
    code_dir.mkdir()
    results = run_together(store_workers.log_runs_task,
                           [(url, artifacts, worker, RUNS, POINTS, str(code_dir))
                            for worker in range(WORKERS)])
    return open_store(url, artifacts), results


def count(store: pm.Store, table) -> int:  # type: ignore[no-untyped-def]
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def assert_nothing_lost(store: pm.Store, results: list) -> None:
    assert len({pid for pid, _ in results}) == WORKERS, "the workers did not run in parallel"
    run_ids = [run_id for _, ids in results for run_id in ids]
    assert len(set(run_ids)) == WORKERS * RUNS

    assert count(store, t.experiments) == 1
    assert count(store, t.runs) == WORKERS * RUNS
    assert count(store, t.params) == WORKERS * RUNS * 3
    assert count(store, t.tags) == WORKERS * RUNS
    assert count(store, t.metrics) == WORKERS * RUNS * (POINTS + 1)
    assert count(store, t.latest_metrics) == WORKERS * RUNS * 2

    with store.read() as conn:
        # Every step of every run, exactly once, with the value that was logged.
        per_run = dict(conn.execute(
            select(t.metrics.c.run_id, func.count(func.distinct(t.metrics.c.step)))
            .where(t.metrics.c.key == "loss").group_by(t.metrics.c.run_id)).all())
        assert per_run == {run_id: POINTS for run_id in run_ids}
        total = conn.execute(select(func.sum(t.metrics.c.value))
                             .where(t.metrics.c.key == "loss")).scalar_one()
    expected_total = sum(store_workers.metric_value(w, r, s) for w in range(WORKERS)
                         for r in range(RUNS) for s in range(POINTS))
    assert total == pytest.approx(expected_total, rel=1e-12)

    records = pm.runs.search(experiment="concurrency", max_results=1000, store=store)
    assert len(records) == WORKERS * RUNS
    for record in records:
        worker, run_index = int(record.params["worker"]), int(record.params["run"])
        assert record.name == f"w{worker}-r{run_index}"
        assert record.status == "FINISHED"
        assert record.params["points"] == str(POINTS)
        assert record.metrics == {
            "loss": store_workers.metric_value(worker, run_index, POINTS - 1), "done": 1.0}


@pytest.mark.slow
def test_eight_processes_log_into_one_sqlite_store(tmp_path: Path, run_together) -> None:
    store, results = log_concurrently(f"sqlite:///{tmp_path}/prodml.db", tmp_path, run_together)
    try:
        assert_nothing_lost(store, results)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_processes_log_into_one_postgres_store(pg_url: str, tmp_path: Path,
                                                     run_together) -> None:
    store, results = log_concurrently(pg_url, tmp_path, run_together)
    try:
        assert_nothing_lost(store, results)
    finally:
        store.close()
