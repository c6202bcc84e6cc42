"""The lineage walk: breadth first over the one store, a few set-based queries per hop.

Each hop takes every node the previous hop reached, grouped by kind, and asks each table for
all their neighbours at once (``IN`` lists), so a walk costs queries per hop and kind, never
per record. Before each hop, nodes that are records of the same thing are joined (``same``
edges, free of depth): a pipeline's Dataset artifact and the dataset version it names, a
step's execution and the tracked run it opened, a ModelVersion artifact and the registry's
version.

Two records are broader than what reached them and are expanded only when the walk starts
there: an endpoint (going up it would bring every version ever deployed, not the one that
answered) and a source URI (it stands for every version of the file, not the one read).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from prodml.pipelines.lineage_answers import answered
from prodml.pipelines.lineage_graph import LineageGraph
from prodml.pipelines.lineage_records import CHUNK, load_nodes, models_in, split_ref
from prodml.pipelines.lineage_refs import canonical_source, source_forms
from prodml.store import Store
from prodml.store import tables as t

Edge = tuple[str, str, str, dict[str, Any]]  # source key, target key, relation, properties
A, E, EV = t.lineage_artifacts, t.executions, t.events
# Rows of a file the store keeps only as "<module>.<Type> in memory" have no source to show.
IN_MEMORY = " in memory"


def walk(conn: Connection, store: Store, graph: LineageGraph, depth: int | None) -> None:
    """Fill ``graph`` from its roots, ``depth`` hops at most (``None``: to the end)."""
    hops: dict[str, int] = {}
    frontier = _add(conn, graph, graph.roots)
    hops.update(dict.fromkeys(frontier, 0))
    frontier = _close(conn, graph, frontier, hops, 0)
    hop = 0
    while frontier and (depth is None or hop < depth):
        hop += 1
        edges = _hop(conn, store, graph, frontier)
        reached = _add(conn, graph, [key for s, d, *_ in edges for key in (s, d)])
        for source, target, relation, props in edges:
            graph.link(source, target, relation, props)
        frontier = [k for k in reached if k not in hops]
        hops.update(dict.fromkeys(frontier, hop))
        frontier = _close(conn, graph, frontier, hops, hop)
    if graph.direction == "down":
        answered(conn, graph, hops, depth)


def _add(conn: Connection, graph: LineageGraph, keys: Iterable[str]) -> list[str]:
    """Load the nodes behind keys the graph lacks; every key, old or new, in order."""
    keys = list(dict.fromkeys(keys))
    for node in load_nodes(conn, [k for k in keys if k not in graph]):
        graph.add(node)
    return keys


def _close(conn: Connection, graph: LineageGraph, frontier: list[str], hops: dict[str, int],
           hop: int) -> list[str]:
    """``frontier`` and every record of the same things, joined by ``same`` edges."""
    out, new = list(frontier), list(frontier)
    while new:
        edges = _same(conn, graph, new, set(graph.roots))
        _add(conn, graph, [key for s, d, *_ in edges for key in (s, d)])
        new = []
        for source, target, relation, props in edges:
            graph.link(source, target, relation, props)
            for key in (source, target):
                if key not in hops:
                    hops[key] = hop
                    new.append(key)
        out += new
    return out


def _grouped(keys: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key in keys:
        kind, _, ident = key.partition(":")
        groups.setdefault(kind, []).append(ident)
    return groups


def _chunks(ids: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


# -- records of the same thing ------------------------------------------------------------------
def _same(conn: Connection, graph: LineageGraph, keys: list[str], roots: set[str]
          ) -> list[Edge]:
    edges: list[Edge] = []
    groups = _grouped(keys)
    artifacts = [graph.node(f"artifact:{i}") for i in groups.get("artifact", [])]
    for node in artifacts:
        props = node.properties.get("properties") or {}
        if props.get("dataset_digest"):
            edges.append((node.key, f"dataset:{props['dataset_digest']}", "same", {}))
        ref = _model_ref(props)
        if ref:
            edges.append((node.key, f"model_version:{ref}", "same", {}))
        if node.properties.get("type") == "Deployment" and props.get("endpoint"):
            # one way only: an endpoint's other deployments are not this one's records
            edges.append((node.key, f"endpoint:{props['endpoint']}", "same", {}))
    for chunk in _chunks(groups.get("dataset", [])):
        edges += [(f"artifact:{i}", f"dataset:{d}", "same", {}) for i, d in conn.execute(
            select(A.c.id, A.c.properties["dataset_digest"].as_string())
            .where(A.c.properties["dataset_digest"].as_string().in_(chunk)))]
    versions = groups.get("model_version", [])
    if versions:
        wanted = set(versions)
        for i, props in conn.execute(select(A.c.id, A.c.properties).where(
                A.c.type.in_(("ModelVersion", "Model")),
                A.c.properties["model"].as_string().in_({split_ref(v)[0] for v in versions}))):
            ref = _model_ref(props or {})
            if ref in wanted:
                edges.append((f"artifact:{i}", f"model_version:{ref}", "same", {}))
    for chunk in _chunks([int(i) for i in groups.get("execution", [])]):
        edges += [(f"execution:{i}", f"run:{r}", "same", {}) for i, r in conn.execute(
            select(E.c.id, E.c.run_id).where(E.c.id.in_(chunk), E.c.run_id.is_not(None)))]
    for chunk in _chunks(groups.get("run", [])):
        edges += [(f"execution:{i}", f"run:{r}", "same", {}) for i, r in conn.execute(
            select(E.c.id, E.c.run_id).where(E.c.run_id.in_(chunk)))]
    for uri in groups.get("source", []):
        if f"source:{uri}" in roots:  # a URI is every version of the file: only as a start
            edges += [(f"source:{uri}", f"artifact:{i}", "same", {}) for i in conn.execute(
                select(A.c.id).where(A.c.uri.in_(source_forms(uri)))).scalars()]
    return _known_datasets(conn, graph, edges)


def _model_ref(props: dict[str, Any]) -> str | None:
    if isinstance(props.get("model_ref"), str) and "/" in props["model_ref"]:
        return props["model_ref"].removeprefix("models:/")
    if props.get("model") is not None and str(props.get("version", "")).isdigit():
        return f"{props['model']}/{int(props['version'])}"
    return None


def _known_datasets(conn: Connection, graph: LineageGraph, edges: list[Edge]) -> list[Edge]:
    """Drop links to digests an artifact names but the datasets table never recorded."""
    wanted = {e[1].partition(":")[2] for e in edges
              if e[1].startswith("dataset:") and e[1] not in graph}
    known: set[str] = set()
    for chunk in _chunks(sorted(wanted)):
        known.update(conn.execute(select(t.datasets.c.digest)
                                  .where(t.datasets.c.digest.in_(chunk))).scalars())
    return [e for e in edges if not e[1].startswith("dataset:") or e[1] in graph
            or e[1].partition(":")[2] in known]


# -- one hop ------------------------------------------------------------------------------------
def _hop(conn: Connection, store: Store, graph: LineageGraph, frontier: list[str]
         ) -> list[Edge]:
    groups = _grouped(frontier)
    roots = set(graph.roots)
    edges: list[Edge] = []
    down = graph.direction == "down"
    for kind, ids in groups.items():
        for chunk in _chunks(ids):
            if kind == "pipeline_run":
                edges += _pipeline_run(conn, chunk)
            elif down:
                edges += DOWN.get(kind, _nothing)(conn, chunk)
            elif kind == "dataset":
                edges += _dataset_up(conn, store, chunk)
            elif kind != "endpoint" or any(f"endpoint:{i}" in roots for i in chunk):
                edges += UP.get(kind, _nothing)(conn, chunk)
    return edges


def _nothing(_conn: Connection, _ids: list[str]) -> list[Edge]:
    return []


def _pipeline_run(conn: Connection, ids: list[str]) -> list[Edge]:
    return [(f"pipeline_run:{c}", f"execution:{i}", "ran", {}) for i, c in conn.execute(
        select(E.c.id, E.c.context_id).where(E.c.context_id.in_(ids)))]


def _events(conn: Connection, kind: str, by: str, ids: list[str]) -> list[Edge]:
    column = EV.c.artifact_id if by == "artifact" else EV.c.execution_id
    rows = conn.execute(select(EV.c.execution_id, EV.c.artifact_id, EV.c.name)
                        .where(column.in_([int(i) for i in ids]), EV.c.kind == kind)).all()
    if kind == "input":
        return [(f"artifact:{a}", f"execution:{e}", "read", {"name": n}) for e, a, n in rows]
    return [(f"execution:{e}", f"artifact:{a}", "wrote", {"name": n}) for e, a, n in rows]


def _dataset_runs(conn: Connection, digests: list[str]) -> list[Edge]:
    return [(f"dataset:{d}", f"run:{r}", "input", {"context": c}) for d, r, c in conn.execute(
        select(t.datasets.c.digest, t.run_inputs.c.run_id, t.run_inputs.c.context)
        .join(t.run_inputs, t.run_inputs.c.dataset_id == t.datasets.c.id)
        .where(t.datasets.c.digest.in_(digests)))]


def _run_versions(conn: Connection, runs: list[str]) -> list[Edge]:
    mv = t.model_versions
    return [(f"run:{r}", f"model_version:{n}/{v}", "registered", {}) for r, n, v in
            conn.execute(select(mv.c.run_id, mv.c.model_name, mv.c.version)
                         .where(mv.c.run_id.in_(runs)))]


def _version_run(conn: Connection, refs: list[str]) -> list[Edge]:
    mv = t.model_versions
    return [(f"run:{r}", f"model_version:{n}/{v}", "registered", {}) for r, n, v in
            conn.execute(select(mv.c.run_id, mv.c.model_name, mv.c.version).where(
                tuple_(mv.c.model_name, mv.c.version).in_([split_ref(r) for r in refs]),
                mv.c.run_id.is_not(None)))]


def _deployments(conn: Connection, refs: set[str] | None, endpoints: list[str] | None
                 ) -> list[Edge]:
    """model version → endpoint, from the deployment history and the live spec: when it
    was first deployed there, in how many revisions, whether it serves now."""
    de = t.deployment_events
    query = select(de.c.endpoint, de.c.revision, de.c.time, de.c.to_spec).order_by(de.c.id)
    live = select(t.endpoints.c.name, t.endpoints.c.spec)
    if endpoints is not None:
        query = query.where(de.c.endpoint.in_(endpoints))
        live = live.where(t.endpoints.c.name.in_(endpoints))
    serving = {name: models_in(spec) for name, spec in conn.execute(live)}
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for endpoint, revision, time, spec in conn.execute(query):
        for ref in models_in(spec):
            if refs is not None and ref not in refs:
                continue
            entry = seen.setdefault((ref, endpoint), {"first_deployed": time, "revisions": []})
            entry["revisions"].append(revision)
    for endpoint, models in serving.items():
        for ref in models:
            if refs is None or ref in refs:
                seen.setdefault((ref, endpoint), {"first_deployed": None, "revisions": []})
    return [(f"model_version:{ref}", f"endpoint:{endpoint}", "deployed",
             {**entry, "serving_now": ref in serving.get(endpoint, set())})
            for (ref, endpoint), entry in seen.items() if _is_version(ref)]


def _is_version(ref: str) -> bool:
    name, _, version = ref.rpartition("/")
    return bool(name) and version.isdigit()


def _labeled(conn: Connection, digests: list[str] | None, labelers: list[str] | None
             ) -> list[Edge]:
    an = t.annotations
    query = (select(an.c.labeler, an.c.dataset_digest, func.count(),
                    func.count(an.c.row_id.distinct()), func.min(an.c.time), func.max(an.c.time))
             .group_by(an.c.labeler, an.c.dataset_digest))
    if digests is not None:
        query = query.where(an.c.dataset_digest.in_(digests))
    else:
        query = query.where(an.c.labeler.in_(labelers or []),
                            an.c.dataset_digest.in_(select(t.datasets.c.digest)))
    return [(f"labeler:{who}", f"dataset:{digest}", "labeled",
             {"annotations": n, "rows": rows, "first": first, "last": last, "from": "annotations"})
            for who, digest, n, rows, first, last in conn.execute(query)]


def _provenance_labelers(conn: Connection, store: Store, digests: list[str]) -> list[Edge]:
    """Labelers named in a dataset version's provenance columns (a ``labeler`` column):
    only that column of the stored Parquet is read."""
    import io

    import pyarrow.parquet as pq

    p = t.dataset_provenance
    edges: list[Edge] = []
    for digest, columns, sha in conn.execute(
            select(p.c.dataset_digest, p.c.columns, p.c.artifact_sha256)
            .where(p.c.dataset_digest.in_(digests))):
        column = next((c for c in columns or [] if c.lower() in LABELER_COLUMNS), None)
        if column is None or sha is None:
            continue
        table = pq.read_table(io.BytesIO(store.artifacts.get_bytes(sha)), columns=[column])
        edges += [(f"labeler:{c['values']}", f"dataset:{digest}", "labeled",
                   {"rows": c["counts"], "from": "provenance"})
                  for c in table.column(column).value_counts().to_pylist()
                  if c["values"] is not None]
    return edges


LABELER_COLUMNS = {"labeler", "labeller", "annotator", "inspector", "inspector_id",
                   "labeler_id", "annotator_id"}


def _dataset_up(conn: Connection, store: Store, digests: list[str]) -> list[Edge]:
    edges = _labeled(conn, digests, None) + _provenance_labelers(conn, store, digests)
    edges += [(f"source:{canonical_source(s)}", f"dataset:{d}", "loaded", {})
              for d, s in conn.execute(select(t.datasets.c.digest, t.datasets.c.source)
                                       .where(t.datasets.c.digest.in_(digests)))
              if s and not s.endswith(IN_MEMORY)]
    return edges


def _prediction_up(conn: Connection, ids: list[str]) -> list[Edge]:
    p, de = t.predictions, t.deployment_events
    rows = conn.execute(select(p.c.id, p.c.endpoint, p.c.model_name, p.c.model_version,
                               p.c.route, p.c.revision).where(p.c.id.in_(ids))).all()
    pairs = {(r.endpoint, r.revision) for r in rows if r.revision is not None}
    deployed = {(e, rev): {"revision": rev, "deployed_at": time, "actor": actor,
                           "action": action, "reason": reason}
                for e, rev, time, actor, action, reason in conn.execute(
                    select(de.c.endpoint, de.c.revision, de.c.time, de.c.actor, de.c.action,
                           de.c.reason).where(tuple_(de.c.endpoint, de.c.revision).in_(pairs)))
                } if pairs else {}
    edges: list[Edge] = []
    for r in rows:
        if r.model_name is not None and r.model_version is not None:
            edges.append((f"model_version:{r.model_name}/{r.model_version}",
                          f"prediction:{r.id}", "answered", {"route": r.route}))
        edges.append((f"endpoint:{r.endpoint}", f"prediction:{r.id}", "routed",
                      deployed.get((r.endpoint, r.revision), {"revision": r.revision})))
    # who labelled it: the identity recorded with each label (a token's name, the OS user of
    # an import); labels from before identities were recorded name their channel only
    f = t.feedback
    for pid, actor, source, time in conn.execute(
            select(f.c.prediction_id, f.c.actor, f.c.source, f.c.time)
            .where(f.c.prediction_id.in_(ids), f.c.kind == "label", f.c.actor.is_not(None))):
        edges.append((f"labeler:{actor}", f"prediction:{pid}", "labeled",
                      {"source": source, "time": time}))
    return edges


DOWN = {
    "artifact": lambda conn, ids: _events(conn, "input", "artifact", ids),
    "execution": lambda conn, ids: _events(conn, "output", "execution", ids),
    "dataset": _dataset_runs,
    "run": _run_versions,
    "model_version": lambda conn, refs: _deployments(conn, set(refs), None),
    "labeler": lambda conn, names: _labeled(conn, None, names),
    "source": lambda conn, uris: [
        (f"source:{canonical_source(u)}", f"dataset:{d}", "loaded", {})
        for d, u in conn.execute(select(t.datasets.c.digest, t.datasets.c.source).where(
            t.datasets.c.source.in_([f for u in uris for f in source_forms(u)])))],
}
UP = {
    "artifact": lambda conn, ids: _events(conn, "output", "artifact", ids),
    "execution": lambda conn, ids: _events(conn, "input", "execution", ids),
    "run": lambda conn, runs: [(f"dataset:{d}", f"run:{r}", "input", {"context": c})
                               for r, d, c in conn.execute(
                                   select(t.run_inputs.c.run_id, t.datasets.c.digest,
                                          t.run_inputs.c.context)
                                   .join(t.datasets, t.datasets.c.id == t.run_inputs.c.dataset_id)
                                   .where(t.run_inputs.c.run_id.in_(runs)))],
    "model_version": _version_run,
    "endpoint": lambda conn, names: _deployments(conn, None, names),
    "prediction": _prediction_up,
}
