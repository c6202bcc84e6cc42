"""Pipeline runs read back from the store: ``pm.pipelines.runs()`` and ``get_run()``.

A :class:`PipelineRun` holds its executions in the order they were recorded, each with its
input and output artifacts; ``run.output(step)`` loads a step's output from the blob store
(checked against its SHA-256) unless the run still holds the value in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from prodml.errors import InvalidInputError, NotFoundError, ProdmlError
from prodml.store import Store, get_store
from prodml.store import tables as t


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact as one execution saw it (``name``: the argument or output name)."""

    name: str
    id: int
    type: str
    digest: str
    uri: str | None
    blob_sha256: str | None
    properties: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExecutionInfo:
    """One step of one run."""

    id: int
    step: str
    function: str
    status: str
    code_digest: str
    cache_key: str
    params: dict[str, Any]
    cached_from: int | None
    run_id: str | None
    started_at: int
    ended_at: int | None
    error: str | None
    logs: str | None
    resources: dict[str, Any] | None
    approval: dict[str, Any] | None
    inputs: list[ArtifactInfo] = field(default_factory=list)
    outputs: list[ArtifactInfo] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at) / 1000

    def output(self, name: str | None = None) -> ArtifactInfo:
        for artifact in self.outputs:
            if name is None or artifact.name == name:
                return artifact
        raise NotFoundError("output", f"{self.step}.{name or 'output'}",
                            f"outputs: {[a.name for a in self.outputs]}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


@dataclass
class PipelineRun:
    """A run of a pipeline and its executions."""

    id: str
    pipeline: str
    status: str
    params: dict[str, Any]
    spec: dict[str, Any]
    triggered_by: str | None
    created_at: int
    ended_at: int | None
    error: str | None
    executions: list[ExecutionInfo] = field(default_factory=list)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    _values: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False,
                                                compare=False)
    _store: Store | None = field(default=None, repr=False, compare=False)

    def step(self, name: str) -> ExecutionInfo:
        """The execution of step ``name`` (the last one when it was retried)."""
        found = [e for e in self.executions if e.step == name]
        if not found:
            raise NotFoundError("step", name, f"run {self.id[:8]} has steps "
                                f"{sorted({e.step for e in self.executions})}")
        return found[-1]

    @property
    def waiting_for(self) -> list[str]:
        """Steps waiting for an approval."""
        return [e.step for e in self.executions if e.status == "waiting"]

    def output(self, step: str, name: str | None = None) -> Any:
        """The value step ``step`` returned (``name``: which output of a multi-output step)."""
        artifact = self.step(step).output(name)
        key = (step, artifact.name)
        if key not in self._values:
            if artifact.blob_sha256 is None:
                raise NotFoundError("output", f"{step}.{artifact.name}", "its value was not kept")
            from prodml.pipelines.values import deserialize

            store = self._store or get_store()
            self._values[key] = deserialize(store.artifacts.get_bytes(artifact.blob_sha256),
                                            artifact.properties.get("format", "pickle"),
                                            store.artifacts)
        return self._values[key]

    def raise_for_status(self) -> PipelineRun:
        """Raise the failing step's error (its own exception when it ran in this process)."""
        if self.status == "failed":
            if self.exception is not None:
                raise self.exception
            raise ProdmlError(self.error or f"pipeline run {self.id} failed")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pipeline": self.pipeline, "status": self.status,
                "params": self.params, "spec": self.spec, "triggered_by": self.triggered_by,
                "created_at": self.created_at, "ended_at": self.ended_at, "error": self.error,
                "waiting_for": self.waiting_for,
                "executions": [e.to_dict() for e in self.executions]}


def get_run(run_id: str, *, store: Store | None = None) -> PipelineRun:
    """The run with this id (or unique id prefix of at least 4 characters).

    >>> get_run("nope")
    Traceback (most recent call last):
    ...
    prodml.errors.InvalidInputError: run_id='nope': must be a run id (32 hex characters) or a prefix of at least 4
    """
    store = store or get_store()
    c = t.pipeline_contexts
    if not isinstance(run_id, str) or len(run_id) < 4 or not _hex(run_id):
        raise InvalidInputError("run_id", run_id,
                                "must be a run id (32 hex characters) or a prefix of at least 4")
    with store.read() as conn:
        query = select(c).where(c.c.type == "pipeline_run")
        query = query.where(c.c.id == run_id) if len(run_id) == 32 else \
            query.where(c.c.id.like(f"{run_id.lower()}%")).limit(2)
        rows = conn.execute(query).all()
        if not rows:
            raise NotFoundError("pipeline run", run_id)
        if len(rows) > 1:
            raise InvalidInputError("run_id", run_id, "matches more than one run; give more "
                                    "characters")
        return _load(conn, rows, store)[0]


def runs(pipeline: str | None = None, *, status: str | None = None, limit: int = 50,
         store: Store | None = None) -> list[PipelineRun]:
    """Runs, newest first (of one pipeline, or with one status).

    >>> runs(pipeline="no-such-pipeline")
    []
    """
    store = store or get_store()
    c = t.pipeline_contexts
    query = select(c).where(c.c.type == "pipeline_run")
    if pipeline is not None:
        query = query.where(c.c.name == pipeline)
    if status is not None:
        query = query.where(c.c.status == status)
    with store.read() as conn:
        rows = conn.execute(query.order_by(c.c.created_at.desc(), c.c.id).limit(limit)).all()
        return _load(conn, rows, store)


def _hex(text: str) -> bool:
    return all(ch in "0123456789abcdefABCDEF" for ch in text)


def _load(conn: Any, rows: list[Any], store: Store) -> list[PipelineRun]:
    e, ev, a = t.executions, t.events, t.lineage_artifacts
    ids = [r.id for r in rows]
    executions: dict[str, list[Any]] = {i: [] for i in ids}
    execution_rows = conn.execute(select(e).where(e.c.context_id.in_(ids))
                                  .order_by(e.c.id)).all() if ids else []
    artifacts: dict[tuple[int, str], list[ArtifactInfo]] = {}
    if execution_rows:
        for r in conn.execute(
                select(ev.c.execution_id, ev.c.kind, ev.c.name, a.c.id, a.c.type, a.c.digest,
                       a.c.uri, a.c.blob_sha256, a.c.properties)
                .join(a, a.c.id == ev.c.artifact_id)
                .where(ev.c.execution_id.in_([x.id for x in execution_rows]))
                .order_by(ev.c.execution_id, ev.c.kind, ev.c.position)):
            artifacts.setdefault((r.execution_id, r.kind), []).append(ArtifactInfo(
                r.name, r.id, r.type, r.digest, r.uri, r.blob_sha256, r.properties or {}))
    for x in execution_rows:
        executions[x.context_id].append(ExecutionInfo(
            x.id, x.step, x.function, x.status, x.code_digest, x.cache_key, x.params or {},
            x.cached_from, x.run_id, x.started_at, x.ended_at, x.error, x.logs, x.resources,
            x.approval, artifacts.get((x.id, "input"), []), artifacts.get((x.id, "output"), [])))
    return [PipelineRun(r.id, r.name, r.status, (r.spec or {}).get("params", {}), r.spec or {},
                        r.triggered_by, r.created_at, r.ended_at, r.error, executions[r.id],
                        _store=store) for r in rows]
