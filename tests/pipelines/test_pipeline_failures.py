"""Failures, approvals and resume: what is recorded, and what is not."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

import prodml as pm
from prodml.store import tables as t


def counts(store) -> dict[str, int]:
    with store.read() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar()
                for table in (t.executions, t.events, t.lineage_artifacts)}


def test_failing_step_fails_the_run_and_skips_downstream(store):
    calls: Counter = Counter()

    @pm.step
    def start() -> int:
        return 1

    @pm.step
    def check(x: int, limit: int = 0) -> int:
        calls["check"] += 1
        if x > limit:
            raise pm.InvalidInputError("x", x, f"must be at most {limit}")
        return x

    @pm.step
    def after(x: int) -> int:
        calls["after"] += 1
        return x

    @pm.pipeline
    def guarded(limit: int = 0):
        return after(check(start(), limit=limit))

    run = guarded.run(store=store)
    assert run.status == "failed"
    assert run.error == "step check failed: x=1: must be at most 0"
    assert [(e.step, e.status) for e in run.executions] == [
        ("start", "succeeded"), ("check", "failed"), ("after", "skipped")]
    failed = run.step("check")
    assert failed.error == "x=1: must be at most 0"
    assert failed.outputs == [] and failed.ended_at is not None
    assert "InvalidInputError" in failed.logs  # the traceback is in the step's log
    assert calls == Counter(check=1)
    with pytest.raises(pm.InvalidInputError, match="must be at most 0"):
        run.raise_for_status()
    # the failed execution wrote no output artifact, no output event
    with store.read() as conn:
        outputs = conn.execute(select(func.count()).select_from(t.events).where(
            t.events.c.execution_id == failed.id, t.events.c.kind == "output")).scalar()
    assert outputs == 0
    # a failed execution is never a cache hit: the fixed run runs it again
    fixed = guarded.run(params={"limit": 5}, store=store)
    assert [e.status for e in fixed.executions] == ["cached", "succeeded", "succeeded"]


def test_missing_source_fails_its_step_with_one_line(store, tmp_path):
    @pm.step
    def read(source: pm.pipelines.Source) -> str:
        return open(source).read()

    @pm.pipeline
    def reader(path: str = "missing.csv"):
        return read(pm.pipelines.Source(path))

    run = reader.run(params={"path": str(tmp_path / "missing.csv")}, store=store)
    assert run.status == "failed"
    assert "no such file or folder" in run.error and "\n" not in run.error


def test_source_digest_enters_the_cache_key(store, tmp_path):
    calls: Counter = Counter()
    path = tmp_path / "rows.csv"
    path.write_text("a\n1\n")

    @pm.step
    def read(source: pm.pipelines.Source) -> str:
        calls["read"] += 1
        with open(source) as handle:
            return handle.read()

    @pm.pipeline
    def reader(path: str = ""):
        return read(pm.pipelines.Source(path))

    first = reader.run(params={"path": str(path)}, store=store)
    assert reader.run(params={"path": str(path)}, store=store).executions[0].status == "cached"
    path.write_text("a\n2\n")
    third = reader.run(params={"path": str(path)}, store=store)
    assert third.executions[0].status == "succeeded" and third.output("read") == "a\n2\n"
    assert calls["read"] == 2
    source = first.step("read").inputs[0]
    assert (source.type, source.uri, source.name) == ("Source", str(path.resolve()), "source")
    assert source.digest != third.step("read").inputs[0].digest


def test_approval_stops_and_resume_goes_on(store):
    calls: Counter = Counter()

    @pm.step
    def train() -> str:
        calls["train"] += 1
        return "model"

    @pm.step
    def report() -> str:
        calls["report"] += 1
        return "report"

    @pm.step(approval=True)
    def deploy(model: str) -> str:
        calls["deploy"] += 1
        return f"deployed {model}"

    @pm.step
    def announce(message: str) -> str:
        calls["announce"] += 1
        return message.upper()

    @pm.pipeline
    def release():
        report()
        return announce(deploy(train()))

    run = release.run(store=store)
    assert run.status == "waiting" and run.waiting_for == ["deploy"]
    assert {e.step: e.status for e in run.executions} == {
        "train": "succeeded", "report": "succeeded", "deploy": "waiting"}
    assert run.ended_at is None
    with pytest.raises(pm.InvalidInputError, match="still waits for approval"):
        pm.pipelines.resume(run.id, store=store)
    with pytest.raises(pm.InvalidInputError, match="not waiting"):
        pm.pipelines.approve(run.id, "train", store=store)
    before = counts(store)
    approval = pm.pipelines.approve(run.id[:8], "deploy", by="ana", reason="looks good",
                                    store=store)
    assert (approval["decision"], approval["by"], approval["reason"]) == (
        "approved", "ana", "looks good")
    assert counts(store) == before  # the decision is written on the waiting execution
    resumed = pm.pipelines.resume(run.id, store=store)
    assert resumed.id == run.id and resumed.status == "succeeded"
    assert resumed.output("announce") == "DEPLOYED MODEL"
    assert calls == Counter(train=1, report=1, deploy=1, announce=1)
    deploy_execution = resumed.step("deploy")
    assert deploy_execution.status == "succeeded"
    assert deploy_execution.approval["by"] == "ana"
    assert [e.step for e in resumed.executions].count("deploy") == 1
    with pytest.raises(pm.InvalidInputError, match="only a waiting run resumes"):
        pm.pipelines.resume(run.id, store=store)


def test_rejected_step_fails_the_run(store):
    @pm.step(approval=True)
    def ship() -> int:
        return 1

    @pm.step
    def after(x: int) -> int:
        return x

    @pm.pipeline
    def shipping():
        return after(ship())

    run = shipping.run(store=store)
    pm.pipelines.reject(run.id, "ship", by="bo", reason="not now", store=store)
    done = pm.pipelines.resume(run.id, store=store)
    assert done.status == "failed"
    assert done.error == "step ship failed: step ship was rejected by bo"
    assert {e.step: e.status for e in done.executions} == {"ship": "failed",
                                                         "after": "skipped"}
    assert done.step("ship").approval["reason"] == "not now"


def test_a_failed_resume_leaves_no_step_waiting(store):
    calls: Counter = Counter()

    @pm.step(approval=True)
    def first() -> int:
        return 1

    @pm.step(approval=True)
    def second() -> int:
        calls["second"] += 1
        return 2

    @pm.pipeline
    def two_gates():
        return first(), second()

    run = two_gates.run(store=store)
    assert sorted(run.waiting_for) == ["first", "second"]
    pm.pipelines.reject(run.id, "first", by="bo", reason="no", store=store)
    pm.pipelines.approve(run.id, "second", by="ana", store=store)
    done = pm.pipelines.resume(run.id, store=store)
    assert done.status == "failed"
    statuses = {e.step: e.status for e in done.executions}
    assert statuses["first"] == "failed" and "waiting" not in statuses.values()
    assert statuses["second"] == ("succeeded" if calls["second"] else "skipped")


def test_two_resumes_at_once_run_the_approved_step_once(store):
    import threading
    import time

    calls: Counter = Counter()

    @pm.step(approval=True)
    def ship() -> str:
        calls["ship"] += 1
        time.sleep(0.3)
        return "shipped"

    @pm.pipeline
    def shipping():
        return ship()

    run = shipping.run(store=store)
    pm.pipelines.approve(run.id, "ship", by="ana", store=store)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def resume() -> None:
        start.wait()
        try:
            outcomes.append(pm.pipelines.resume(run.id, store=store).status)
        except pm.InvalidInputError as error:
            outcomes.append(f"refused: {error}")

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(o.split(":")[0] for o in outcomes) == ["refused", "succeeded"], outcomes
    assert calls == Counter(ship=1)
    assert [e.status for e in pm.pipelines.get_run(run.id, store=store).executions] == [
        "succeeded"]


def test_tracing_errors_record_nothing(store):
    @pm.step
    def one(x: int) -> int:
        return x

    @pm.pipeline
    def wrong():
        return one(1, 2)

    @pm.pipeline
    def branching():
        if one(1):
            return
        return

    with pytest.raises(pm.InvalidInputError, match="does not match one"):
        wrong.run(store=store)
    with pytest.raises(pm.InvalidInputError, match="is a handle"):
        branching.run(store=store)
    assert counts(store)["executions"] == 0 and pm.pipelines.runs(store=store) == []
