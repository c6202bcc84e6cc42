"""A person in the loop: approve (or reject) a waiting step, then resume the run.

``approve`` and ``reject`` write the decision (who, when, why) on the waiting execution in
one transaction; ``resume`` runs the waiting run's pipeline again in the same run context:
steps already done are kept, the approved step runs, and the steps after it follow.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from prodml.errors import InvalidInputError, NotFoundError
from prodml.pipelines.results import PipelineRun, get_run
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t


def approve(run_id: str, step: str, *, by: str | None = None, reason: str | None = None,
            store: Store | None = None) -> dict[str, Any]:
    """Approve ``step`` of waiting run ``run_id``; returns the recorded approval."""
    return _decide(run_id, step, "approved", by, reason, store)


def reject(run_id: str, step: str, *, by: str | None = None, reason: str | None = None,
           store: Store | None = None) -> dict[str, Any]:
    """Reject ``step``: the step fails when the run resumes, and the run with it."""
    return _decide(run_id, step, "rejected", by, reason, store)


def _decide(run_id: str, step: str, decision: str, by: str | None, reason: str | None,
            store: Store | None) -> dict[str, Any]:
    store = store or get_store()
    run = get_run(run_id, store=store)
    waiting = [e for e in run.executions if e.step == step and e.status == "waiting"]
    if not waiting:
        raise InvalidInputError(
            "step", step, f"is not waiting for approval in run {run.id[:8]} (waiting: "
                          f"{', '.join(run.waiting_for) or 'none'})")
    approval = {"required": True, "decision": decision, "by": by or _user(),
                "reason": reason, "at": now_ms()}
    e = t.executions
    with store.write() as conn:
        current = conn.execute(select(e.c.status).where(e.c.id == waiting[-1].id)).scalar()
        if current != "waiting":
            raise InvalidInputError("step", step, f"is {current}, no longer waiting")
        conn.execute(update(e).where(e.c.id == waiting[-1].id).values(approval=approval))
    return approval


def resume(run_id: str, *, store: Store | None = None, engine: str | None = None,
           scheduler: Any = None, max_workers: int | None = None) -> PipelineRun:
    """Run a waiting run on: its approved steps run, the steps after them follow."""
    from prodml.pipelines.loading import load_pipeline
    from prodml.pipelines.pipeline import defined
    from prodml.pipelines.runner import resume_run

    store = store or get_store()
    run = get_run(run_id, store=store)
    if run.status != "waiting":
        raise InvalidInputError("run", run.id, f"is {run.status}; only a waiting run resumes")
    undecided = [e.step for e in run.executions if e.status == "waiting"
                 and not (e.approval or {}).get("decision")]
    if undecided:
        raise InvalidInputError("run", run.id, f"step {undecided[0]} still waits for approval "
                                f"(prodml pipeline approve {run.id[:8]} {undecided[0]})")
    target = run.spec.get("target", "")
    pipeline = defined.get(run.pipeline)
    if pipeline is None or pipeline.target != target:
        try:
            pipeline = load_pipeline(target)
        except (InvalidInputError, NotFoundError):
            if pipeline is None:
                raise
    return resume_run(pipeline, run, store=store, engine=engine, scheduler=scheduler,
                      max_workers=max_workers)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"
