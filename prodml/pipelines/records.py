"""Writing a pipeline run into the store, one transaction per state change.

A run context is opened (running), each execution is written when it starts (with its input
artifacts and events), when it ends (outputs, events, status, logs, resources together), or
at once when it is cached, waiting or skipped; the run is closed with its status. A failure
in the middle of any of these leaves nothing of it behind. SQL is plain SQLAlchemy Core, so
SQLite and PostgreSQL run the same statements; each statement is built once and executed with
parameters, so SQLAlchemy compiles it once per process (the bookkeeping stays at a few
milliseconds a step).
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from prodml.errors import InvalidInputError
from prodml.pipelines.task import OutputMeta, TaskResult
from prodml.store import Store, now_ms
from prodml.store import tables as t


@dataclass(frozen=True)
class ArtifactSpec:
    """An artifact to find or create by (type, digest)."""

    type: str
    digest: str
    uri: str | None = None
    name: str | None = None
    blob_sha256: str | None = None
    properties: dict[str, Any] | None = None


@dataclass(frozen=True)
class InputBinding:
    """One input of an execution: an artifact already recorded, or one to record."""

    name: str
    artifact_id: int | None = None
    artifact: ArtifactSpec | None = None


@dataclass(frozen=True)
class ExecutionSpec:
    """The parts of an execution row known before it runs."""

    context_id: str
    step: str
    function: str
    code_digest: str
    params: dict[str, Any]
    cache_key: str


@dataclass(frozen=True)
class CachedOutput:
    """An output of an earlier execution a cache hit reuses."""

    name: str
    artifact_id: int
    digest: str
    sha256: str
    format: str


def pipeline_context_id(name: str) -> str:
    """The pipeline's context id: the same for every run of the same name (no race)."""
    return hashlib.sha256(f"pipeline:{name}".encode()).hexdigest()[:32]


def open_run(store: Store, pipeline: str, spec: dict[str, Any], triggered_by: str) -> str:
    """Create the pipeline's context if new and a running run context under it."""
    parent = pipeline_context_id(pipeline)
    run_id = uuid.uuid4().hex
    now = now_ms()
    with store.write() as conn:
        conn.execute(store.insert(t.pipeline_contexts).values(
            id=parent, type="pipeline", name=pipeline, spec={"target": spec.get("target")},
            created_at=now).on_conflict_do_nothing(index_elements=["id"]))
        conn.execute(t.pipeline_contexts.insert().values(
            id=run_id, type="pipeline_run", name=pipeline, parent_id=parent, spec=spec,
            status="running", triggered_by=triggered_by, properties={}, created_at=now))
    return run_id


def reopen_run(store: Store, run_id: str) -> None:
    """A waiting run runs again (resume).

    The claim is one conditional UPDATE, so of two resumes racing (two people pressing
    Resume, a CLI and the dashboard) exactly one drives the run; the other is refused
    before it runs an approved step a second time.
    """
    table = t.pipeline_contexts
    with store.write() as conn:
        claimed = conn.execute(update(table).where(table.c.id == run_id,
                                                   table.c.status == "waiting")
                               .values(status="running", ended_at=None, error=None)).rowcount
    if claimed != 1:
        raise InvalidInputError("run", run_id, "is no longer waiting: another resume has "
                                "already taken it")


def note_resume_failure(store: Store, run_id: str, message: str) -> bool:
    """A resume that failed before it took the run (it stays waiting): say why on the run,
    where the dashboard shows it; True when written. A run that did start records its own
    outcome instead."""
    table = t.pipeline_contexts
    with store.write() as conn:
        return conn.execute(update(table).where(table.c.id == run_id,
                                                table.c.status == "waiting")
                            .values(error=f"resume failed: {message}"[:2000])).rowcount == 1


def close_run(store: Store, run_id: str, status: str, error: str | None,
              skipped: list[ExecutionSpec]) -> None:
    """End the run with its status, recording the steps it never reached as skipped."""
    now = now_ms()
    with store.write() as conn:
        for spec in skipped:
            _insert_execution(conn, spec, status="skipped", started_at=now, ended_at=now)
        if status == "failed":  # steps left waiting for approval will never run now
            ex = t.executions
            conn.execute(update(ex).where(ex.c.context_id == run_id, ex.c.status == "waiting")
                         .values(status="skipped", ended_at=now))
        conn.execute(update(t.pipeline_contexts).where(t.pipeline_contexts.c.id == run_id)
                     .values(status=status, error=error,
                             ended_at=None if status == "waiting" else now))


def start_execution(store: Store, spec: ExecutionSpec, inputs: list[InputBinding],
                    approval: dict[str, Any] | None = None,
                    execution_id: int | None = None) -> tuple[int, dict[str, int]]:
    """A running execution with its input events; returns its id and the input artifact ids.

    ``execution_id`` restarts a waiting execution (after approval) instead of adding one.
    """
    now = now_ms()
    with store.write() as conn:
        if execution_id is None:
            execution_id = _insert_execution(conn, spec, status="running", started_at=now,
                                             approval=approval)
        else:
            conn.execute(_UPDATE_EXECUTION, {"eid": execution_id, "status": "running",
                                             "started_at": now})
        ids = _record_inputs(conn, store, execution_id, inputs, now)
    return execution_id, ids


def finish_execution(store: Store, execution_id: int, result: TaskResult
                     ) -> dict[str, int]:
    """The outcome of a run execution; returns the output artifact ids by output name."""
    now = now_ms()
    ids: dict[str, int] = {}
    with store.write() as conn:
        for position, output in enumerate(result.outputs):
            ids[output.name] = artifact_id(conn, store, _output_spec(output))
            _event(conn, store, execution_id, "output", output.name, ids[output.name],
                   position, now)
        conn.execute(_UPDATE_EXECUTION, {
            "eid": execution_id, "status": "failed" if result.error else "succeeded",
            "ended_at": result.ended_at or now, "logs": result.logs or None,
            "resources": result.resources, "error": result.error, "run_id": result.run_id})
    return ids


def record_cached(store: Store, spec: ExecutionSpec, inputs: list[InputBinding],
                  origin: int, outputs: list[CachedOutput]) -> int:
    """An execution that reused ``origin``'s outputs instead of running."""
    now = now_ms()
    with store.write() as conn:
        execution_id = _insert_execution(conn, spec, status="cached", cached_from=origin,
                                         started_at=now, ended_at=now)
        _record_inputs(conn, store, execution_id, inputs, now)
        for position, output in enumerate(outputs):
            _event(conn, store, execution_id, "output", output.name, output.artifact_id,
                   position, now)
    return execution_id


def record_waiting(store: Store, spec: ExecutionSpec) -> int:
    """An execution that waits for someone's approval before it runs."""
    now = now_ms()
    with store.write() as conn:
        return _insert_execution(conn, spec, status="waiting", started_at=now,
                                 approval={"required": True, "decision": None})


def find_cached(store: Store, cache_key: str) -> tuple[int, list[CachedOutput]] | None:
    """The newest succeeded execution with this key whose output blobs all still exist."""
    e, ev, a = t.executions, t.events, t.lineage_artifacts
    with store.read() as conn:
        candidates = conn.execute(
            select(e.c.id).where(e.c.cache_key == cache_key, e.c.status == "succeeded")
            .order_by(e.c.id.desc()).limit(5)).scalars().all()
        for candidate in candidates:
            rows = conn.execute(
                select(ev.c.name, a.c.id, a.c.digest, a.c.blob_sha256, a.c.properties)
                .join(a, a.c.id == ev.c.artifact_id)
                .where(ev.c.execution_id == candidate, ev.c.kind == "output")
                .order_by(ev.c.position)).all()
            if not rows or any(r.blob_sha256 is None for r in rows):
                continue
            if all(_blobs_exist(store, r.blob_sha256, (r.properties or {}).get("format"))
                   for r in rows):
                return candidate, [CachedOutput(r.name, r.id, r.digest, r.blob_sha256,
                                                (r.properties or {}).get("format", "pickle"))
                                   for r in rows]
    return None


def _blobs_exist(store: Store, sha256: str, fmt: str | None) -> bool:
    """The value's blob is there, and for a Dask frame every partition it names."""
    blobs = store.artifacts
    if not blobs.fs.exists(blobs._path(sha256)):
        return False
    if fmt != "dask-parquet":
        return True
    from prodml.pipelines.dask_frames import partition_blobs

    try:
        needed = partition_blobs(blobs.get_bytes(sha256))
    except Exception:  # noqa: BLE001 - a manifest that no longer reads is a miss
        return False
    return all(blobs.fs.exists(blobs._path(sha)) for sha in needed)


def artifact_id(conn: Connection, store: Store, spec: ArtifactSpec) -> int:
    """Find or create the artifact (type, digest); new properties are merged in."""
    key = {"type_": spec.type, "digest_": spec.digest}
    row = conn.execute(_FIND_ARTIFACT, key).first()
    if row is None:
        conn.execute(_insert_artifact(store.dialect), {
            "type": spec.type, "digest": spec.digest, "uri": spec.uri, "name": spec.name,
            "blob_sha256": spec.blob_sha256, "properties": spec.properties or {},
            "created_at": now_ms()})
        row = conn.execute(_FIND_ARTIFACT, key).one()  # ours, or a concurrent writer's
    merged = {**(row.properties or {}), **(spec.properties or {})}
    changes: dict[str, Any] = {}
    if merged != (row.properties or {}):
        changes["properties"] = merged
    if row.blob_sha256 is None and spec.blob_sha256 is not None:
        changes["blob_sha256"] = spec.blob_sha256
    if row.uri is None and spec.uri is not None:
        changes["uri"] = spec.uri
    if changes:
        a = t.lineage_artifacts
        conn.execute(update(a).where(a.c.id == row.id).values(**changes))
    return int(row.id)


def _record_inputs(conn: Connection, store: Store, execution_id: int,
                   inputs: list[InputBinding], now: int) -> dict[str, int]:
    ids: dict[str, int] = {}
    for position, binding in enumerate(inputs):
        found = binding.artifact_id
        if found is None:
            assert binding.artifact is not None
            found = artifact_id(conn, store, binding.artifact)
        ids[binding.name] = found
        _event(conn, store, execution_id, "input", binding.name, found, position, now)
    return ids


def _event(conn: Connection, store: Store, execution_id: int, kind: str, name: str,
           artifact: int, position: int, now: int) -> None:
    # (execution, kind, name) is new: an execution's events are written once, with it
    conn.execute(_INSERT_EVENT, {"execution_id": execution_id, "kind": kind, "name": name,
                                 "artifact_id": artifact, "position": position,
                                 "created_at": now})


def _output_spec(output: OutputMeta) -> ArtifactSpec:
    return ArtifactSpec(output.type, output.sha256, output.uri, output.display_name,
                        output.sha256, output.properties)


def _insert_execution(conn: Connection, spec: ExecutionSpec, **values: Any) -> int:
    row = {column: None for column in _EXECUTION_COLUMNS}
    row.update(context_id=spec.context_id, step=spec.step, function=spec.function,
               code_digest=spec.code_digest, params=spec.params, cache_key=spec.cache_key,
               **values)
    return int(conn.execute(_INSERT_EXECUTION, row).inserted_primary_key[0])


# Statements built once: executed with parameters, SQLAlchemy compiles each once.
_EXECUTION_COLUMNS = [c.name for c in t.executions.columns if c.name != "id"]
_INSERT_EXECUTION = t.executions.insert()
_UPDATE_EXECUTION = update(t.executions).where(t.executions.c.id == bindparam("eid"))
_INSERT_EVENT = t.events.insert()
_FIND_ARTIFACT = select(t.lineage_artifacts.c.id, t.lineage_artifacts.c.blob_sha256,
                        t.lineage_artifacts.c.properties, t.lineage_artifacts.c.uri).where(
    t.lineage_artifacts.c.type == bindparam("type_"),
    t.lineage_artifacts.c.digest == bindparam("digest_"))


@functools.lru_cache(maxsize=4)
def _insert_artifact(dialect: str) -> Any:
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(t.lineage_artifacts).on_conflict_do_nothing(
        index_elements=["type", "digest"])
