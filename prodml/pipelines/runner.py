"""The driver: walks a traced graph, reuses what it can, runs the rest, records everything.

A step starts when every step it reads from is done. Before it runs, its cache key is looked
up: a succeeded execution with the same key whose output blobs still exist is reused
(status "cached"). A step that needs an approval stops there (status "waiting", the run
"waiting") while independent steps go on. A failed step fails the run: nothing new starts,
steps already running finish and are recorded, and every step not reached is "skipped".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prodml.pipelines import records
from prodml.pipelines.binding import Bound, OutputState, bind
from prodml.pipelines.code import code_digest, function_ref
from prodml.pipelines.context import StepContext, register_store
from prodml.pipelines.engines import Engine, open_engine
from prodml.pipelines.graph import Graph, Node
from prodml.pipelines.records import ExecutionSpec
from prodml.pipelines.results import PipelineRun, get_run
from prodml.pipelines.task import Produced, StepTask, Stored, TaskResult
from prodml.pipelines.values import is_json
from prodml.store import Store, get_store

if TYPE_CHECKING:
    from prodml.pipelines.pipeline import Pipeline


@dataclass
class Earlier:
    """What a resumed run already did, by step name."""

    executions: dict[str, Any] = field(default_factory=dict)  # step -> ExecutionInfo


def start_run(pipeline: Pipeline, params: Mapping[str, Any] | None, *, store: Store | None,
              engine: str, scheduler: Any, cache: bool, triggered_by: str,
              max_workers: int | None) -> PipelineRun:
    """Trace, open a run context and drive it (see :meth:`Pipeline.run`)."""
    store = store or get_store()
    resolved = pipeline.resolve_params(params)
    graph = pipeline.trace(resolved)  # a pipeline that cannot be traced records nothing
    runner = open_engine(engine, scheduler, max_workers)
    spec = {"target": pipeline.target, "params": {k: v if is_json(v) else repr(v)
                                                  for k, v in resolved.items()},
            "engine": engine, "cache": cache}
    if isinstance(scheduler, str):
        spec["scheduler"] = scheduler
    try:
        run_id = records.open_run(store, pipeline.name, spec, triggered_by)
        return Driver(store, graph, run_id, runner, cache).drive()
    finally:
        runner.close()


def resume_run(pipeline: Pipeline, run: PipelineRun, *, store: Store, engine: str | None,
               scheduler: Any, max_workers: int | None) -> PipelineRun:
    """Drive a waiting run again: done steps are kept, approved steps run, the rest follow."""
    graph = pipeline.trace(run.params)
    if engine is None:  # as it started: same engine, same scheduler address if it had one
        engine, scheduler = run.spec.get("engine", "local"), scheduler or run.spec.get(
            "scheduler")
    runner = open_engine(engine, scheduler, max_workers)
    earlier = Earlier({e.step: e for e in run.executions})
    try:
        records.reopen_run(store, run.id)
        return Driver(store, graph, run.id, runner, run.spec.get("cache", True), earlier).drive()
    finally:
        runner.close()


class Driver:
    """One pass over a graph for one run context."""

    def __init__(self, store: Store, graph: Graph, run_id: str, engine: Engine, cache: bool,
                 earlier: Earlier | None = None) -> None:
        self.store, self.graph, self.run_id = store, graph, run_id
        self.engine, self.cache = engine, cache
        self.earlier = earlier or Earlier()
        self.outputs: dict[tuple[str, str], OutputState] = {}
        self.state: dict[str, str] = {name: "pending" for name in graph.nodes}
        self.in_flight: dict[Any, tuple[Node, int]] = {}
        self.values: dict[tuple[str, str], Any] = {}
        # who reads each step's outputs: once all of them have finished, the values are let go
        self.readers = {name: [n.name for n in graph.nodes.values() if name in n.upstream]
                        for name in graph.nodes}
        self.failure: tuple[str, str, BaseException | None] | None = None
        register_store(store)

    def drive(self) -> PipelineRun:
        try:
            while True:
                ready = self._ready() if self.failure is None else []
                while ready:  # cached steps finish at once and may make others ready
                    for node in ready:
                        self._start(node)
                    ready = self._ready() if self.failure is None else []
                if not self.in_flight:
                    break
                for handle, result in self.engine.wait(list(self.in_flight)):
                    self._finish(handle, result)
        except BaseException as error:  # the driver itself broke (store down, Ctrl-C)
            self.failure = self.failure or ("pipeline", f"{type(error).__name__}: {error}",
                                            error)
            self._close()
            raise
        return self._close()

    def _ready(self) -> list[Node]:
        return [node for node in self.graph.nodes.values() if self.state[node.name] == "pending"
                and all(self.state[up] == "done" for up in node.upstream)]

    def _start(self, node: Node) -> None:
        self.state[node.name] = "starting"
        try:
            bound = bind(node, self.outputs, self.store)
        except Exception as error:  # noqa: BLE001 - e.g. a Source that is not there
            self._fail_unbound(node, error)
            return
        spec = ExecutionSpec(self.run_id, node.name, function_ref(node.step.function),
                             bound.code_digest, bound.params, bound.cache_key)
        earlier = self.earlier.executions.get(node.name)
        if earlier is not None and earlier.status in ("succeeded", "cached"):
            self._done(node, [records.CachedOutput(o.name, o.id, o.digest, o.blob_sha256 or "",
                                                   o.properties.get("format", "pickle"))
                              for o in earlier.outputs])
            return
        approved_id = None
        if node.step.approval:
            decision = (earlier.approval or {}).get("decision") if earlier else None
            if decision == "rejected":
                message = f"step {node.name} was rejected by {earlier.approval.get('by')}"
                records.finish_execution(self.store, earlier.id, TaskResult(error=message))
                self.state[node.name] = "failed"
                self.failure = self.failure or (node.name, message, None)
                return
            if decision == "approved":
                approved_id = earlier.id
        if self.cache and node.step.cache and (earlier is None or earlier.status != "waiting"):
            hit = records.find_cached(self.store, bound.cache_key)
            if hit is not None:
                records.record_cached(self.store, spec, bound.bindings, hit[0], hit[1])
                self._done(node, hit[1])
                return
        if node.step.approval and approved_id is None:
            if earlier is None:
                records.record_waiting(self.store, spec)
            self.state[node.name] = "waiting"
            return
        self._submit(node, spec, bound, approved_id)

    def _submit(self, node: Node, spec: ExecutionSpec, bound: Bound,
                execution_id: int | None) -> None:
        execution_id, _ = records.start_execution(self.store, spec, bound.bindings,
                                                  execution_id=execution_id)
        context = StepContext(execution_id, self.run_id, node.name, self.store.database_url,
                              self.store.artifacts.location, node.step.output_names,
                              dict(bound.params))
        task = StepTask(node.step, node.signature, bound.arguments, context)
        handle = self.engine.submit(node.name, task, bound.inputs)
        self.in_flight[handle] = (node, execution_id)
        self.state[node.name] = "running"

    def _finish(self, handle: Any, result: TaskResult) -> None:
        node, execution_id = self.in_flight.pop(handle)
        ids = records.finish_execution(self.store, execution_id, result)
        self._release_spent(node)
        if result.error is not None:
            self.state[node.name] = "failed"
            if self.failure is None:
                self.failure = (node.name, result.error, result.exception)
            return
        for output in result.outputs:
            self.outputs[(node.name, output.name)] = OutputState(
                ids[output.name], output.sha256, Produced(node.name, output.name))
        self.values.update({(node.name, k): v for k, v in result.values.items()})
        self.state[node.name] = "done"

    def _release_spent(self, finished: Node) -> None:
        """Let go of the in-memory values no step still needs, so a long pipeline holds the
        frames of its frontier, not of every step; ``run.output`` reads any of them back
        from the blob store. The final steps' values stay for the caller."""
        for name in finished.upstream:
            readers = self.readers[name]
            if all(r == finished.name or self.state[r] in ("done", "failed") for r in readers):
                self.engine.release(name)
                for key in [k for k in self.values if k[0] == name]:
                    del self.values[key]

    def _done(self, node: Node, outputs: list[records.CachedOutput]) -> None:
        for output in outputs:
            self.outputs[(node.name, output.name)] = OutputState(
                output.artifact_id, output.digest, Stored(output.sha256, output.format))
        self.state[node.name] = "done"
        self._release_spent(node)  # a cached reader may be the last one too

    def _fail_unbound(self, node: Node, error: BaseException) -> None:
        from prodml.pipelines.task import _describe

        spec = ExecutionSpec(self.run_id, node.name, function_ref(node.step.function),
                             code_digest(node.step.function), {}, "")
        execution_id, _ = records.start_execution(self.store, spec, [])
        message = _describe(error)
        records.finish_execution(self.store, execution_id,
                                 TaskResult(error=message, exception=error))
        self.state[node.name] = "failed"
        if self.failure is None:
            self.failure = (node.name, message, error)

    def _close(self) -> PipelineRun:
        if self.failure is not None:
            step, message, _ = self.failure
            skipped = [ExecutionSpec(self.run_id, n.name, function_ref(n.step.function),
                                     code_digest(n.step.function), {}, "")
                       for n in self.graph.nodes.values()
                       if self.state[n.name] in ("pending", "starting")
                       and n.name not in self.earlier.executions]
            status = "failed"
            error = message if step == "pipeline" else f"step {step} failed: {message}"
        else:
            skipped, error = [], None
            status = "waiting" if "waiting" in self.state.values() else "succeeded"
        records.close_run(self.store, self.run_id, status, error, skipped)
        run = get_run(self.run_id, store=self.store)
        run._values.update(self.values)
        run.exception = self.failure[2] if self.failure else None
        return run
