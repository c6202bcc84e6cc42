"""Engines (threads and Dask), per-step logs, the step context and output values."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import numpy as np
import pandas as pd
import polars as pl
import pytest

import prodml as pm
from prodml.pipelines.capture import capture


def test_independent_steps_run_at_the_same_time_with_their_own_logs(store):
    both_started = threading.Barrier(2, timeout=10)

    @pm.step
    def left() -> str:
        both_started.wait()  # only returns when the other step is running too
        for i in range(50):
            print(f"left {i}")
            logging.getLogger("left").warning("left warning %d", i)
        return "L"

    @pm.step
    def right() -> str:
        both_started.wait()
        for i in range(50):
            print(f"right {i}")
        return "R"

    @pm.step
    def join(a: str, b: str) -> str:
        return a + b

    @pm.pipeline
    def fork():
        return join(left(), right())

    run = fork.run(store=store)
    assert run.status == "succeeded", run.error
    assert run.output("join") == "LR"
    left_logs, right_logs = run.step("left").logs, run.step("right").logs
    assert left_logs.count("left ") == 50 + 50 and "right" not in left_logs
    assert "WARNING left: left warning 49" in left_logs
    assert right_logs.splitlines() == [f"right {i}" for i in range(50)]
    workers = {run.step("left").resources["worker"], run.step("right").resources["worker"]}
    assert len(workers) == 2


def test_values_no_step_still_needs_are_let_go_during_the_run(store):
    import gc
    import weakref

    made: dict[str, weakref.ref] = {}
    alive_in_last: list[bool] = []

    @pm.step
    def first() -> np.ndarray:
        value = np.arange(1_000_000, dtype=np.float64)
        made["first"] = weakref.ref(value)
        return value

    @pm.step
    def second(x: np.ndarray) -> np.ndarray:
        return x * 2

    @pm.step
    def last(x: np.ndarray) -> float:
        gc.collect()
        alive_in_last.append(made["first"]() is not None)
        return float(x.sum())

    @pm.pipeline
    def chain():
        return last(second(first()))

    run = chain.run(store=store)
    assert run.status == "succeeded", run.error
    # by the time `last` ran, nothing held first's 8 MB array any more
    assert alive_in_last == [False]
    assert set(run._values) == {("last", "output")}
    # ...and the run still gives it back, from the blob store
    np.testing.assert_array_equal(run.output("first"), np.arange(1_000_000, dtype=np.float64))
    assert run.output("last") == float(np.arange(1_000_000).sum() * 2)


def test_a_chatty_step_keeps_only_the_end_of_its_output():
    from prodml.pipelines import capture as capturing

    logs = capturing.Logs()
    line = "x" * 999 + "\n"
    for _ in range(5 * capturing.MAX_CHARS // len(line)):
        logs.write(line)
        assert logs.size <= 2 * capturing.MAX_CHARS + len(line)  # bounded while it runs
    logs.write("the error\n")
    text = logs.text()
    assert text.startswith("[... earlier output cut ...]\n")
    assert text.endswith("the error\n") and len(text) <= capturing.MAX_CHARS + 40


def test_capture_leaves_other_threads_alone(capsys):
    seen = []

    def other() -> None:
        print("from another thread")

    with capture() as logs:
        print("captured")
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        seen.append(logs.text())
    assert seen == ["captured\n"]
    assert "from another thread" in capsys.readouterr().out


def test_step_context_annotates_outputs_and_run_id(store):
    @pm.step(outputs=("train", "test"))
    def split(n: int) -> tuple:
        context = pm.pipelines.current()
        assert context is not None and context.step == "split"
        assert context.store.database_url == store.database_url
        context.annotate_output(type="Dataset", properties={"dataset_digest": "abc"},
                                output="train")
        with pytest.raises(pm.InvalidInputError, match="has outputs"):
            context.annotate_output(type="Dataset", output="nope")
        return np.arange(n), pl.DataFrame({"y": list(range(n))})

    @pm.step
    def register(train: np.ndarray, test: pl.DataFrame) -> dict:
        context = pm.pipelines.current()
        context.set_run_id("ab" * 16)
        context.annotate_output(type="ModelVersion", properties={"model": "loan", "version": 3})
        return {"rows": int(train.shape[0]) + test.height}

    @pm.pipeline
    def annotated(n: int = 4):
        train, test = split(n)
        return register(train, test)

    assert pm.pipelines.current() is None
    run = annotated.run(store=store)
    assert run.status == "succeeded", run.error
    outputs = {o.name: o for o in run.step("split").outputs}
    assert outputs["train"].type == "Dataset"
    assert outputs["train"].properties["dataset_digest"] == "abc"
    assert outputs["train"].properties["format"] == "npy"
    assert outputs["test"].properties["format"] == "polars-parquet"
    registered = run.step("register")
    assert registered.run_id == "ab" * 16
    assert registered.outputs[0].type == "ModelVersion"
    assert registered.outputs[0].properties["version"] == 3
    assert [i.name for i in registered.inputs] == ["train", "test"]
    assert run.output("register") == {"rows": 8}
    again = annotated.run(store=store)  # cached outputs come back from the blob store
    assert [e.status for e in again.executions] == ["cached", "cached"]
    assert again.output("split", "train").tolist() == [0, 1, 2, 3]
    assert isinstance(again.output("split", "test"), pl.DataFrame)


def test_objects_and_functions_as_arguments(store):
    calls: Counter = Counter()

    def weight(x: float) -> float:
        return 2 * x

    @pm.step
    def apply(frame: pd.DataFrame, fn, scale: np.float64) -> float:
        calls["apply"] += 1
        return float(fn(frame.a.sum()) * scale)

    @pm.pipeline
    def constants(scale: float = 1.0):
        return apply(pd.DataFrame({"a": [1, 2]}), fn=weight, scale=np.float64(scale))

    run = constants.run(store=store)
    assert run.output("apply") == 6.0
    execution = run.step("apply")
    assert execution.params["fn"]["callable"].endswith("weight")
    assert execution.params["scale"] == 1.0
    assert execution.inputs[0].type == "Dataset"  # the constant frame is an input artifact
    assert constants.run(store=store).executions[0].status == "cached"
    assert calls["apply"] == 1


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_dask_engine_matches_local_and_shares_the_cache(store, dask_client):
    calls: Counter = Counter()

    @pm.step
    def load(n: int) -> pd.DataFrame:
        calls["load"] += 1
        return pd.DataFrame({"x": range(n)})

    @pm.step
    def square(frame: pd.DataFrame) -> pd.DataFrame:
        calls["square"] += 1
        print("squaring", len(frame))
        return frame.assign(x=frame.x ** 2)

    @pm.step
    def total(frame: pd.DataFrame, other: pd.DataFrame) -> int:
        calls["total"] += 1
        return int(frame.x.sum() + other.x.sum())

    @pm.pipeline
    def squares(n: int = 4):
        frame = load(n)
        return total(square(frame), frame)

    on_dask = squares.run(store=store, engine="dask", scheduler=dask_client)
    assert on_dask.status == "succeeded", on_dask.error
    assert on_dask.spec["engine"] == "dask"
    assert on_dask.output("total") == 14 + 6
    assert on_dask.step("square").logs == "squaring 4\n"
    again = squares.run(store=store, engine="dask", scheduler=dask_client)
    assert [e.status for e in again.executions] == ["cached"] * 3
    local = squares.run(params={"n": 5}, store=store)
    on_dask_5 = squares.run(params={"n": 5}, store=store, engine="dask", scheduler=dask_client)
    assert [e.status for e in on_dask_5.executions] == ["cached"] * 3
    assert on_dask_5.output("total") == local.output("total") == 30 + 10
    # only the local run counted here: Dask ran deserialized copies of the functions
    assert calls == Counter(load=1, square=1, total=1)
    assert on_dask.step("square").resources["worker"] != local.step("square").resources["worker"]


def test_dask_engine_failure_skips_downstream(store, dask_client):
    @pm.step
    def boom() -> int:
        raise RuntimeError("worker says no")

    @pm.step
    def after(x: int) -> int:
        return x

    @pm.pipeline
    def exploding():
        return after(boom())

    # by address this time: the engine opens (and closes) its own client
    run = exploding.run(store=store, engine="dask", scheduler=dask_client.scheduler.address)
    assert run.spec["scheduler"] == dask_client.scheduler.address
    assert run.status == "failed"
    assert run.error == "step boom failed: RuntimeError: worker says no"
    assert [e.status for e in run.executions] == ["failed", "skipped"]


def test_bad_engine_and_scheduler(store):
    @pm.step
    def one() -> int:
        return 1

    @pm.pipeline
    def single():
        return one()

    with pytest.raises(pm.InvalidInputError, match="engine='spark'"):
        single.run(store=store, engine="spark")
    with pytest.raises(pm.InvalidInputError, match="only the dask engine"):
        single.run(store=store, scheduler="tcp://127.0.0.1:1")


def test_handles_inside_lists_and_dicts(store):
    @pm.step
    def part(i: int) -> list:
        return [i] * i

    @pm.step
    def combine(parts: list, weights: dict) -> int:
        return sum(len(p) * weights["each"] for p in parts) + len(weights["extra"][0])

    @pm.pipeline
    def fan_in(k: int = 3):
        parts = [part(i) for i in range(1, k + 1)]
        return combine(parts, weights={"each": 10, "extra": [part(4)]})

    run = fan_in.run(store=store)
    assert run.status == "succeeded", run.error
    assert run.output("combine") == 60 + 4
    combined = run.step("combine")
    assert [i.name for i in combined.inputs] == ["parts[0]", "parts[1]", "parts[2]",
                                                 "weights.extra[0]"]
    assert combined.params == {"parts": [{"$input": "parts[0]"}, {"$input": "parts[1]"},
                                         {"$input": "parts[2]"}],
                               "weights": {"each": 10, "extra": [{"$input": "weights.extra[0]"}]}}
    assert [e.step for e in run.executions][:4] == ["part", "part_2", "part_3", "part_4"]
