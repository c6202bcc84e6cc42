"""Caching: what a second run re-runs, on SQLite and PostgreSQL, with a counter per step."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from sqlalchemy import func, select

import prodml as pm
from prodml.store import tables as t


def diamond(calls: Counter):
    """load -> scale -> total, and load -> count beside scale."""

    @pm.step
    def load(n: int) -> pd.DataFrame:
        calls["load"] += 1
        return pd.DataFrame({"x": range(n)})

    @pm.step
    def scale(frame: pd.DataFrame, factor: float = 1.0) -> pd.DataFrame:
        calls["scale"] += 1
        return frame.assign(x=frame.x * float(factor))

    @pm.step
    def count(frame: pd.DataFrame) -> int:
        calls["count"] += 1
        return len(frame)

    @pm.step
    def total(frame: pd.DataFrame, offset: int = 0) -> float:
        calls["total"] += 1
        return float(frame.x.sum()) + offset

    @pm.pipeline
    def numbers(n: int = 5, factor: float = 1.0, offset: int = 0):
        frame = load(n)
        count(frame)
        return total(scale(frame, factor=factor), offset=offset)

    return numbers


def statuses(run) -> dict[str, str]:
    return {e.step: e.status for e in run.executions}


def test_second_run_reuses_everything(store):
    calls: Counter = Counter()
    numbers = diamond(calls)
    first = numbers.run(store=store)
    assert first.status == "succeeded"
    assert statuses(first) == dict.fromkeys(["load", "count", "scale", "total"], "succeeded")
    assert first.output("total") == 10.0
    second = numbers.run(store=store)
    assert statuses(second) == dict.fromkeys(["load", "count", "scale", "total"], "cached")
    assert calls == Counter(load=1, count=1, scale=1, total=1)
    # each cached execution points at the one that made its outputs, and shares its artifacts
    made = {e.step: e for e in first.executions}
    for execution in second.executions:
        assert execution.cached_from == made[execution.step].id
        assert [o.id for o in execution.outputs] == [o.id for o in made[execution.step].outputs]
    assert second.output("total") == 10.0  # loaded back from the blob store
    assert isinstance(second.output("scale"), pd.DataFrame)


def test_changed_param_reruns_that_step_and_downstream_only(store):
    calls: Counter = Counter()
    numbers = diamond(calls)
    numbers.run(store=store)
    run = numbers.run(params={"offset": 5}, store=store)
    assert statuses(run) == {"load": "cached", "count": "cached", "scale": "cached",
                             "total": "succeeded"}
    assert run.output("total") == 15.0
    run = numbers.run(params={"factor": 2.0}, store=store)
    assert statuses(run) == {"load": "cached", "count": "cached", "scale": "succeeded",
                             "total": "succeeded"}
    assert run.output("total") == 20.0
    assert calls == Counter(load=1, count=1, scale=2, total=3)
    assert run.step("scale").params == {"frame": {"$input": "frame"}, "factor": 2.0}


def test_same_output_downstream_stays_cached(store):
    # scale by 1.0 and by 1 give equal frames: the content digest is the same, so total is
    # not re-run even though its upstream ran again
    calls: Counter = Counter()
    numbers = diamond(calls)
    numbers.run(params={"factor": 1.0}, store=store)
    run = numbers.run(params={"factor": 1}, store=store)
    assert statuses(run)["scale"] == "succeeded"
    assert statuses(run)["total"] == "cached"


def test_changed_code_reruns_the_step(store):
    calls: Counter = Counter()

    @pm.step
    def base() -> int:
        calls["base"] += 1
        return 1

    def make(offset_body: bool):
        if offset_body:
            @pm.step(name="bump")
            def bump(x: int) -> int:
                calls["bump"] += 1
                return x + 100
        else:
            @pm.step(name="bump")
            def bump(x: int) -> int:
                calls["bump"] += 1
                return x + 1

        @pm.pipeline(name="code-change")
        def flow():
            return bump(base())

        return flow

    assert make(False).run(store=store).output("bump") == 2
    run = make(True).run(store=store)
    assert statuses(run) == {"base": "cached", "bump": "succeeded"}
    assert run.output("bump") == 101
    assert calls == Counter(base=1, bump=2)
    assert run.step("bump").code_digest != run.step("base").code_digest


def test_deleted_output_blob_forces_a_rerun(store):
    calls: Counter = Counter()
    numbers = diamond(calls)
    first = numbers.run(store=store)
    sha = first.step("scale").output().blob_sha256
    store.artifacts.fs.rm(store.artifacts._path(sha))
    run = numbers.run(store=store)
    assert statuses(run) == {"load": "cached", "count": "cached", "scale": "succeeded",
                             "total": "cached"}
    assert calls["scale"] == 2
    assert store.artifacts.get_bytes(sha)  # written again, same bytes


def test_cache_off_per_run_and_per_step(store):
    calls: Counter = Counter()

    @pm.step
    def a() -> int:
        calls["a"] += 1
        return 1

    @pm.step(cache=False)
    def b(x: int) -> int:
        calls["b"] += 1
        return x + 1

    @pm.pipeline
    def flow():
        return b(a())

    flow.run(store=store)
    assert statuses(flow.run(store=store)) == {"a": "cached", "b": "succeeded"}
    assert statuses(flow.run(store=store, cache=False)) == {"a": "succeeded",
                                                            "b": "succeeded"}
    assert calls == Counter(a=2, b=3)


def test_records_follow_mlmd(store):
    numbers = diamond(Counter())
    run = numbers.run(params={"n": 3}, store=store)
    with store.read() as conn:
        contexts = conn.execute(select(t.pipeline_contexts.c.type, t.pipeline_contexts.c.status,
                                       t.pipeline_contexts.c.parent_id)).all()
        events = conn.execute(select(func.count()).select_from(t.events)).scalar()
    kinds = sorted(c.type for c in contexts)
    assert kinds == ["pipeline", "pipeline_run"]
    assert run.spec["params"] == {"n": 3, "factor": 1.0, "offset": 0}
    assert run.triggered_by == "python"
    # inputs: scale, count, total read one frame each; outputs: one per step
    assert events == 3 + 4
    scale = run.step("scale")
    assert scale.inputs[0].id == run.step("load").outputs[0].id
    assert scale.outputs[0].type == "Dataset"
    assert scale.outputs[0].properties["rows"] == 3
    assert scale.outputs[0].properties["format"] == "pandas-parquet"
    assert run.step("count").outputs[0].type == "Value"
    assert scale.resources["wall_s"] >= 0 and scale.duration_s is not None
    assert pm.pipelines.get_run(run.id[:8], store=store).id == run.id
    assert [r.id for r in pm.pipelines.runs("numbers", store=store)] == [run.id]


def test_unknown_param_is_refused_before_anything_is_recorded(store):
    numbers = diamond(Counter())
    with pytest.raises(pm.InvalidInputError, match="params.nn"):
        numbers.run(params={"nn": 1}, store=store)
    assert pm.pipelines.runs(store=store) == []


HELPERS = '''
import numpy as np


def scale(x):
    return x * {factor}


class Offset:
    amount = {amount}
'''

FLOW_WITH_HELPERS = '''
import prodml as pm
import helpers
from helpers import Offset


def double_then(x):
    return helpers.scale(x) + 0


@pm.step
def compute(n: int) -> int:
    return double_then(n) + Offset.amount


@pm.step
def untouched(n: int) -> int:
    return n


@pm.pipeline
def flow(n: int = 5):
    return compute(n), untouched(n)
'''


def test_editing_a_helper_of_the_project_reruns_the_step(tmp_path):
    """Helpers reached by name (a function of the file, a module's function, an imported
    class) enter the code digest; installed packages (NumPy here) do not."""
    from tests.pipelines.test_pipeline_cli import prodml

    (tmp_path / "flow.py").write_text(FLOW_WITH_HELPERS)

    def run_with(factor: int, amount: int) -> dict:
        (tmp_path / "helpers.py").write_text(HELPERS.format(factor=factor, amount=amount))
        done = prodml(["run", "flow.py", "--json"], tmp_path)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def statuses_of(run: dict) -> dict:
        return {e["step"]: e["status"] for e in run["executions"]}

    first = run_with(2, 0)
    assert statuses_of(first) == {"compute": "succeeded", "untouched": "succeeded"}
    assert statuses_of(run_with(2, 0)) == {"compute": "cached", "untouched": "cached"}
    scaled = run_with(3, 0)  # helpers.scale changed: compute runs, untouched stays cached
    assert statuses_of(scaled) == {"compute": "succeeded", "untouched": "cached"}
    assert scaled["executions"][0]["outputs"][0]["properties"]["python_type"] == "builtins.int"
    shifted = run_with(3, 7)  # the imported class changed
    assert statuses_of(shifted) == {"compute": "succeeded", "untouched": "cached"}
    digests = {r["executions"][0]["code_digest"] for r in (first, scaled, shifted)}
    assert len(digests) == 3


def test_installed_packages_are_not_followed():
    import numpy as np

    from prodml.pipelines.code import _helpers

    def uses_numpy(x):
        return np.mean(x) + pd.Series(x).sum()

    assert _helpers(uses_numpy) == []
