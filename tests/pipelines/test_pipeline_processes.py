"""The ``processes`` engine: steps in spawned worker processes, reading upstream values from
the blob store; same records and cache as the thread engine; a pipeline file by path."""

from __future__ import annotations

import json
import os
import threading

import pytest

import prodml as pm
from tests.pipelines.test_pipeline_cli import FLOW, prodml


@pm.step
def burn(seed: int, rounds: int = 200_000) -> dict:
    """CPU-bound pure Python (holds the GIL): the case threads cannot run in parallel."""
    value = seed
    for _ in range(rounds):
        value = (value * 1103515245 + 12345) % 2_147_483_648
    return {"pid": os.getpid(), "value": value}


@pm.step
def combine(a: dict, b: dict) -> dict:
    return {"pids": sorted({a["pid"], b["pid"]}), "sum": a["value"] + b["value"],
            "here": os.getpid(),
            "database": pm.pipelines.current().store.database_url.rsplit("/", 1)[-1]}


@pm.pipeline(name="burners")
def burners(rounds: int = 200_000):
    return combine(burn(1, rounds), burn(2, rounds))


def expected(seed: int, rounds: int) -> int:
    value = seed
    for _ in range(rounds):
        value = (value * 1103515245 + 12345) % 2_147_483_648
    return value


def test_steps_run_in_worker_processes_and_share_the_cache(store):
    run = burners.run(params={"rounds": 50_000}, store=store, engine="processes",
                      max_workers=2)
    assert run.status == "succeeded", run.error
    assert run.spec["engine"] == "processes"
    out = run.output("combine")
    assert out["sum"] == expected(1, 50_000) + expected(2, 50_000)
    assert os.getpid() not in out["pids"] and out["here"] != os.getpid()
    # the step in the worker opened the run's own store from its URL
    assert out["database"] == store.database_url.rsplit("/", 1)[-1]
    resources = run.step("burn").resources
    assert resources["cpu_s"] > 0 and resources["wall_s"] > 0
    # the thread engine finds the same keys: all cached
    again = burners.run(params={"rounds": 50_000}, store=store)
    assert [e.status for e in again.executions] == ["cached"] * 3


def test_a_failure_in_a_worker_is_recorded_and_skips_downstream(store):
    @pm.step
    def explode(x: int) -> int:
        raise pm.InvalidInputError("x", x, "must not be sent")

    @pm.step
    def after(x: int) -> int:
        return x

    @pm.pipeline(name="exploding-processes")
    def exploding():
        return after(explode(3))

    run = exploding.run(store=store, engine="processes", max_workers=1)
    assert run.status == "failed"
    assert run.error == "step explode failed: x=3: must not be sent"
    assert [(e.step, e.status) for e in run.executions] == [("explode", "failed"),
                                                            ("after", "skipped")]
    assert "InvalidInputError" in run.step("explode").logs


def test_a_step_that_cannot_travel_fails_with_the_reason(store):
    lock = threading.Lock()

    @pm.step
    def locked() -> int:
        with lock:
            return 1

    @pm.pipeline(name="unpicklable")
    def unpicklable():
        return locked()

    run = unpicklable.run(store=store, engine="processes", max_workers=1)
    assert run.status == "failed"
    assert "cannot be sent to a worker process" in run.error and "lock" in run.error


def test_a_pipeline_file_runs_on_processes_from_the_cli(tmp_path):
    (tmp_path / "flow.py").write_text(FLOW)
    done = prodml(["run", "flow.py:numbers", "--param", "n=5", "--engine", "processes",
                   "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded" and run["spec"]["engine"] == "processes"
    assert run["executions"][0]["logs"] == "loading 5\n"
    bad = prodml(["run", "flow.py:numbers", "--engine", "threads"], tmp_path)
    assert bad.returncode == 2 and "must be local, processes or dask" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("engine", ["local", "processes"])
def test_a_scheduler_needs_the_dask_engine(store, engine):
    with pytest.raises(pm.InvalidInputError, match="only the dask engine takes one"):
        burners.run(store=store, engine=engine, scheduler="tcp://127.0.0.1:1")
