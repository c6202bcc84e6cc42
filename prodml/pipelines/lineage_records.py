"""Loading the records lineage reached, a few set-based queries per kind.

Each loader takes every id of one kind the walk has just reached and turns them into
:class:`~prodml.pipelines.lineage_graph.LineageNode` objects with one query (two for model
versions, whose aliases live apart). A key with no record behind it (a version deleted since
a deployment named it) still becomes a node, marked ``{"missing": true}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, select, tuple_
from sqlalchemy.orm import aliased

from prodml.pipelines.lineage_graph import LineageNode
from prodml.serving.deployment import describe, parse_spec
from prodml.store import tables as t


def split_ref(ref: str) -> tuple[str, int]:
    name, _, version = ref.rpartition("/")
    return name, int(version)


def _model_versions(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    pairs = [split_ref(i) for i in ids]
    mv = t.model_versions
    rows = conn.execute(select(mv.c.model_name, mv.c.version, mv.c.run_id, mv.c.flavor,
                               mv.c.model_class, mv.c.created_at, mv.c.artifact_sha256)
                        .where(tuple_(mv.c.model_name, mv.c.version).in_(pairs))).all()
    aliases: dict[tuple[str, int], list[str]] = {}
    for name, alias, version in conn.execute(
            select(t.model_aliases.c.model_name, t.model_aliases.c.alias,
                   t.model_aliases.c.version)
            .where(t.model_aliases.c.model_name.in_({n for n, _ in pairs}))
            .order_by(t.model_aliases.c.alias)):
        aliases.setdefault((name, version), []).append(alias)
    return {f"{r.model_name}/{r.version}": LineageNode(
        "model_version", f"{r.model_name}/{r.version}", f"{r.model_name}/{r.version}",
        {"name": r.model_name, "version": r.version, "run_id": r.run_id, "flavor": r.flavor,
         "model_class": r.model_class, "created_at": r.created_at,
         "artifact_sha256": r.artifact_sha256,
         "aliases": aliases.get((r.model_name, r.version), [])}) for r in rows}


def _runs(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    rows = conn.execute(select(t.runs.c.id, t.runs.c.name, t.runs.c.status,
                               t.runs.c.start_time, t.runs.c.end_time,
                               t.experiments.c.name.label("experiment"))
                        .join(t.experiments, t.experiments.c.id == t.runs.c.experiment_id)
                        .where(t.runs.c.id.in_(ids))).all()
    return {r.id: LineageNode("run", r.id, f"{r.name} [{r.id[:8]}]",
                              {"name": r.name, "experiment": r.experiment, "status": r.status,
                               "start_time": r.start_time, "end_time": r.end_time})
            for r in rows}


def _datasets(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    d, p = t.datasets, t.dataset_provenance
    rows = conn.execute(select(d.c.digest, d.c.name, d.c.source, d.c.source_type, d.c.num_rows,
                               d.c.num_columns, d.c.created_at, p.c.columns.label("provenance"))
                        .outerjoin(p, p.c.dataset_digest == d.c.digest)
                        .where(d.c.digest.in_(ids))).all()
    return {r.digest: LineageNode("dataset", r.digest, r.name, {
        "digest": r.digest, "source": r.source, "source_type": r.source_type,
        "num_rows": r.num_rows, "num_columns": r.num_columns, "created_at": r.created_at,
        "provenance_columns": r.provenance}) for r in rows}


def _artifacts(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    a = t.lineage_artifacts
    rows = conn.execute(select(a).where(a.c.id.in_([int(i) for i in ids]))).all()
    return {str(r.id): LineageNode("artifact", str(r.id), r.name or r.uri or r.type, {
        "type": r.type, "digest": r.digest, "uri": r.uri, "name": r.name,
        "blob_sha256": r.blob_sha256, "properties": r.properties or {},
        "created_at": r.created_at}) for r in rows}


def _executions(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    e = t.executions
    run_ctx = aliased(t.pipeline_contexts)
    pipe_ctx = aliased(t.pipeline_contexts)
    rows = conn.execute(select(e.c.id, e.c.step, e.c.function, e.c.status, e.c.params,
                               e.c.context_id, e.c.cached_from, e.c.run_id, e.c.started_at,
                               e.c.ended_at, pipe_ctx.c.name.label("pipeline"))
                        .outerjoin(run_ctx, run_ctx.c.id == e.c.context_id)
                        .outerjoin(pipe_ctx, pipe_ctx.c.id == run_ctx.c.parent_id)
                        .where(e.c.id.in_([int(i) for i in ids]))).all()
    return {str(r.id): LineageNode("execution", str(r.id), f"{r.step} #{r.id}", {
        "step": r.step, "function": r.function, "status": r.status, "params": r.params,
        "pipeline_run": r.context_id, "pipeline": r.pipeline, "cached_from": r.cached_from,
        "run_id": r.run_id, "started_at": r.started_at, "ended_at": r.ended_at})
        for r in rows}


def _pipeline_runs(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    c = t.pipeline_contexts
    parent = aliased(t.pipeline_contexts)
    rows = conn.execute(select(c.c.id, c.c.status, c.c.spec, c.c.triggered_by, c.c.created_at,
                               c.c.ended_at, parent.c.name.label("pipeline"))
                        .outerjoin(parent, parent.c.id == c.c.parent_id)
                        .where(c.c.id.in_(ids), c.c.type == "pipeline_run")).all()
    return {r.id: LineageNode("pipeline_run", r.id, f"{r.pipeline or 'pipeline'} [{r.id[:8]}]", {
        "pipeline": r.pipeline, "status": r.status, "spec": r.spec,
        "triggered_by": r.triggered_by, "created_at": r.created_at, "ended_at": r.ended_at})
        for r in rows}


def _endpoints(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    rows = conn.execute(select(t.endpoints.c.name, t.endpoints.c.spec, t.endpoints.c.revision)
                        .where(t.endpoints.c.name.in_(ids))).all()
    nodes = {}
    for r in rows:
        try:
            summary = describe(parse_spec(r.spec))
        except Exception:  # noqa: BLE001 - an old spec still names its endpoint
            summary = None
        nodes[r.name] = LineageNode("endpoint", r.name, r.name, {
            "revision": r.revision, "deployment": summary, "spec": r.spec})
    return nodes


def _predictions(conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
    p = t.predictions
    rows = conn.execute(select(p.c.id, p.c.time, p.c.endpoint, p.c.model_name,
                               p.c.model_version, p.c.route, p.c.revision, p.c.status,
                               p.c.prediction, p.c.confidence)
                        .where(p.c.id.in_(ids))).all()
    return {r.id: LineageNode("prediction", r.id, r.id, {
        "time": r.time, "endpoint": r.endpoint, "model": f"{r.model_name}/{r.model_version}"
        if r.model_name else None, "route": r.route, "revision": r.revision,
        "status": r.status, "prediction": r.prediction, "confidence": r.confidence})
        for r in rows}


def _plain(kind: str) -> Callable[[Connection, list[str]], dict[str, LineageNode]]:
    def load(_conn: Connection, ids: list[str]) -> dict[str, LineageNode]:
        return {i: LineageNode(kind, i, i, {}) for i in ids}
    return load


LOADERS: dict[str, Callable[[Connection, list[str]], dict[str, LineageNode]]] = {
    "model_version": _model_versions, "run": _runs, "dataset": _datasets,
    "artifact": _artifacts, "execution": _executions, "pipeline_run": _pipeline_runs,
    "endpoint": _endpoints, "prediction": _predictions, "labeler": _plain("labeler"),
    "source": _plain("source")}
CHUNK = 500  # ids per IN list: well under every backend's bound-parameter limit


def load_nodes(conn: Connection, keys: Iterable[str]) -> list[LineageNode]:
    """The nodes behind ``keys`` (``kind:id``), one query per kind (per 500 ids)."""
    by_kind: dict[str, list[str]] = {}
    for key in keys:
        kind, _, ident = key.partition(":")
        by_kind.setdefault(kind, []).append(ident)
    nodes: list[LineageNode] = []
    for kind, ids in by_kind.items():
        found: dict[str, LineageNode] = {}
        for start in range(0, len(ids), CHUNK):
            found.update(LOADERS[kind](conn, ids[start:start + CHUNK]))
        nodes += [found.get(i) or LineageNode(kind, i, i, {"missing": True}) for i in ids]
    return nodes


def models_in(spec: Any) -> set[str]:
    """Every model reference a deployment spec names (its leaves, mirrors included)."""
    found: set[str] = set()
    stack = [spec]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("model"), str):
                found.add(item["model"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
