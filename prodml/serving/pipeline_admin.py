"""Admin routes for pipeline approvals: approve or reject a waiting step, resume the run.

- ``POST /admin/pipelines/{run_id}/steps/{step}/approve`` and ``.../reject`` record the
  decision (who: the caller's token name; why: ``{"reason": ...}``) as
  ``prodml pipeline approve`` does, and answer with the steps still undecided;
- ``POST /admin/pipelines/{run_id}/resume`` checks the run can resume (it waits, and every
  waiting step has a decision), then runs it on in a background thread and answers ``202``
  at once: a whole pipeline never holds the request. The run's record shows its progress.

The routes need a ``deployer``, as the deployment admin routes do (the request gate
checks). The pipelines package is imported when a route is called: the serving layer does
not need it otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from prodml.errors import InvalidInputError, ProdmlError
from prodml.serving import openapi as api
from prodml.store import Store

log = logging.getLogger("prodml.serving")


class ResumeInProgressError(ProdmlError):
    """The run is already being resumed by this server."""

    http_status = 409


def include_pipeline_admin(app: FastAPI, *, store: Store, admin: Callable[..., str],
                           read_reason: Callable[[Request], Any],
                           respond: Callable[..., Response]) -> None:
    """Add the pipeline admin routes to ``app`` (``admin``: the token check giving the
    actor; ``read_reason``: the body's ``reason``; ``respond``: a JSON response)."""
    resuming: set[str] = set()
    lock = threading.Lock()

    def decide(run_id: str, step: str, decision: str, by: str, reason: str | None
               ) -> dict[str, Any]:
        from prodml.pipelines import approvals, get_run

        record = getattr(approvals, decision)(run_id, step, by=by, reason=reason, store=store)
        run = get_run(run_id, store=store)
        undecided = [e.step for e in run.executions if e.status == "waiting"
                     and not (e.approval or {}).get("decision")]
        return {"run_id": run.id, "step": step, "approval": record, "undecided": undecided}

    for decision in ("approve", "reject"):
        def route(decision: str = decision) -> Any:
            async def handler(run_id: str, step: str, request: Request,
                              actor: str = Depends(admin)) -> Response:
                reason = await read_reason(request)
                return respond(await asyncio.to_thread(decide, run_id, step, decision, actor,
                                                       reason))
            handler.__name__ = f"{decision}_pipeline_step"
            handler.__doc__ = (f"{decision.capitalize()} a step waiting for approval (admin); "
                               "then resume the run.")
            return handler
        app.post(f"/admin/pipelines/{{run_id}}/steps/{{step}}/{decision}", tags=["admin"],
                 openapi_extra=_REASON_BODY,
                 responses=api.answers(api.StepDecision, 404, changes=True))(route())

    def start_resume(run_id: str) -> dict[str, Any]:
        from prodml.pipelines import get_run, load_pipeline
        from prodml.pipelines.pipeline import defined

        run = get_run(run_id, store=store)
        if run.status != "waiting":
            raise InvalidInputError("run_id", run.id,
                                    f"is {run.status}; only a waiting run resumes")
        undecided = [e.step for e in run.executions if e.status == "waiting"
                     and not (e.approval or {}).get("decision")]
        if undecided:
            raise InvalidInputError("run_id", run.id, f"step {undecided[0]} still waits for "
                                    "approval: approve or reject it first")
        pipeline = defined.get(run.pipeline)
        if pipeline is None or pipeline.target != run.spec.get("target"):
            load_pipeline(run.spec.get("target", ""))  # a bad target: refused now, not later
        with lock:
            if run.id in resuming:
                raise ResumeInProgressError(f"run {run.id[:8]} is already resuming",
                                            field="run_id", value=run.id,
                                            rule="resume a run once at a time")
            resuming.add(run.id)
        threading.Thread(target=_resume, args=(run.id,), name=f"resume-{run.id[:8]}",
                         daemon=True).start()
        return {"run_id": run.id, "pipeline": run.pipeline, "status": "resuming"}

    def _resume(run_id: str) -> None:
        from prodml.pipelines import resume

        try:
            done = resume(run_id, store=store)
            log.info("pipeline run %s resumed: %s", run_id, done.status)
        except Exception as error:  # a background thread: record it, do not raise
            log.exception("resuming pipeline run %s failed", run_id)
            from prodml.pipelines.records import note_resume_failure
            from prodml.pipelines.task import _describe

            try:  # on the run itself, so the person who pressed Resume sees why
                note_resume_failure(store, run_id, _describe(error))
            except Exception:  # the store itself is down: the log has it
                log.exception("recording the failed resume of %s failed", run_id)
        finally:
            with lock:
                resuming.discard(run_id)

    @app.post("/admin/pipelines/{run_id}/resume", tags=["admin"], status_code=202,
              responses=api.answers(api.ResumeStarted, 404, 409, changes=True, status=202))
    async def resume_pipeline_run(run_id: str, actor: str = Depends(admin)) -> Response:
        """Run a waiting pipeline run on, in the background (admin); answers 202 at once."""
        return respond(await asyncio.to_thread(start_resume, run_id), 202)


_REASON_BODY = {"requestBody": {"required": False, "content": {"application/json": {
    "schema": {"type": "object", "properties": {"reason": {"type": "string"}}}}}}}
