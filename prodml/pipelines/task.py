"""One step's work where it runs (a driver thread or a Dask worker): call, capture, store.

The driver hands over a :class:`StepTask` (the step, its arguments with input slots, where
the store is) and the inputs; :func:`execute` resolves the inputs, calls the function with
its prints and logs captured, writes each output's bytes to the blob store and returns a
:class:`TaskResult`. It never raises: a failure comes back as the result's error, so the
driver records it like any other outcome. Nothing here writes to the database.
"""

from __future__ import annotations

import inspect
import pickle
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

from prodml.errors import InvalidInputError, ProdmlError
from prodml.pipelines.capture import capture
from prodml.pipelines.context import StepContext, _enter
from prodml.pipelines.graph import substitute
from prodml.pipelines.meter import StepMeter
from prodml.pipelines.step import Step
from prodml.pipelines.values import default_type, deserialize, serialize, stored_facts


@dataclass(frozen=True)
class Slot:
    """Where an input goes in a step's arguments."""

    path: str


@dataclass(frozen=True)
class Produced:
    """An output of a step that ran in this run: found in the results handed to execute()."""

    node: str
    name: str


@dataclass(frozen=True)
class Stored:
    """An output kept in the blob store (from a cached execution)."""

    sha256: str
    format: str


@dataclass(frozen=True)
class Given:
    """A value passed straight into the pipeline (a Source, a constant object)."""

    value: Any


@dataclass(frozen=True)
class OutputMeta:
    """What the driver records about one output."""

    name: str
    sha256: str
    uri: str
    size: int
    format: str
    type: str
    display_name: str
    properties: dict[str, Any]


@dataclass
class StepTask:
    """Everything a worker needs to run one execution (picklable)."""

    step: Step[Any]
    signature: Any  # inspect.Signature
    arguments: dict[str, Any]  # with Slot markers where inputs go
    context: StepContext


@dataclass
class TaskResult:
    """How an execution went, with its output values while they are in memory."""

    outputs: list[OutputMeta] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    logs: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exception: BaseException | None = None
    run_id: str | None = None
    started_at: int = 0
    ended_at: int = 0

    def without_values(self) -> TaskResult:
        return replace(self, values={})


def execute(task: StepTask, inputs: dict[str, Any], results: dict[str, TaskResult]
            ) -> TaskResult:
    """Run one step (see the module docstring); never raises for the step's own errors.

    ``inputs`` maps each input slot to a Produced, Stored or Given reference; ``results``
    holds the results of the upstream steps that ran (Dask turns its futures into them).
    """
    context = task.context
    result = TaskResult(started_at=time.time_ns() // 1_000_000)
    meter = StepMeter()
    previous = _enter(context)
    try:
        with capture() as logs:
            try:
                resolved = {path: _resolve(ref, context, results)
                            for path, ref in inputs.items()}
                arguments = {k: substitute(v, lambda _p, leaf: resolved[leaf.path]
                                           if isinstance(leaf, Slot) else leaf)
                             for k, v in task.arguments.items()}
                bound = inspect.BoundArguments(task.signature, arguments)  # type: ignore[arg-type]
                value = task.step.function(*bound.args, **bound.kwargs)
                result.values = _split(task.step, value)
                result.outputs = [_store(name, item, context)
                                  for name, item in result.values.items()]
                _stored_frames(result, context)
            except Exception as error:  # noqa: BLE001 - a step's failure is its record
                result.values, result.outputs = {}, []
                result.exception = error
                result.error = _describe(error)
                print(traceback.format_exc(), end="")
        result.logs = logs.text()
    finally:
        _enter(previous)
        result.resources = meter.stop()
    result.ended_at = time.time_ns() // 1_000_000
    result.run_id = context.run_id
    return result


def meta_of(result: TaskResult) -> TaskResult:
    """The result without its values (what a Dask driver fetches).

    An exception that cannot be pickled stays behind; its text is in ``error`` already.
    """
    meta = result.without_values()
    if meta.exception is not None:
        try:
            pickle.dumps(meta.exception)
        except Exception:  # noqa: BLE001 - any reason it cannot travel
            meta.exception = None
    return meta


def _describe(error: BaseException) -> str:
    if isinstance(error, ProdmlError):  # its message already names field, value and rule
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _split(step: Step[Any], value: Any) -> dict[str, Any]:
    if step.outputs is None:
        return {"output": value}
    if not isinstance(value, (tuple, list)) or len(value) != len(step.outputs):
        raise InvalidInputError(f"step {step.name}", type(value).__name__,
                                f"must return a tuple of {len(step.outputs)} values "
                                f"({', '.join(step.outputs)})")
    return dict(zip(step.outputs, value))


def _resolve(ref: Any, context: StepContext, results: dict[str, TaskResult]) -> Any:
    if isinstance(ref, Produced):
        return results[ref.node].values[ref.name]
    if isinstance(ref, Stored):
        blobs = _blobs(context)
        return deserialize(blobs.get_bytes(ref.sha256), ref.format, blobs)
    if isinstance(ref, Given):
        return ref.value
    raise TypeError(f"unknown input reference {ref!r}")


def _store(name: str, value: Any, context: StepContext) -> OutputMeta:
    blobs = _blobs(context)
    data, fmt = serialize(value, blobs)
    blob = blobs.put_bytes(data)
    note = context.annotations.get(name, {})
    properties = {**stored_facts(value, data, fmt), **note.get("properties", {})}
    return OutputMeta(name, blob.sha256, blob.uri, blob.size, fmt,
                      note.get("type") or default_type(value),
                      note.get("name") or (context.step if name == "output"
                                           else f"{context.step}.{name}"), properties)


def _stored_frames(result: TaskResult, context: StepContext) -> None:
    """Steps downstream get a Dask output as stored (lazy over its partitions), so the graph
    that computed it is not computed again for each reader."""
    for meta in result.outputs:
        if meta.format == "dask-parquet":
            blobs = _blobs(context)
            result.values[meta.name] = deserialize(blobs.get_bytes(meta.sha256), meta.format,
                                                   blobs)


_artifact_stores: dict[str, Any] = {}


def _blobs(context: StepContext) -> Any:
    """The blob store: the registered store's when this process has it, else opened here."""
    from prodml.pipelines.context import _stores

    store = _stores.get((context.database_url, context.artifacts))
    return store.artifacts if store is not None else blob_store(context.artifacts)


def blob_store(location: str) -> Any:
    """The blob store at ``location``, opened once per process (workers open it by name)."""
    from prodml.store.artifacts import ArtifactStore

    blobs = _artifact_stores.get(location)
    if blobs is None:
        blobs = _artifact_stores[location] = ArtifactStore(location)
    return blobs
