"""What the endpoints a downstream walk reached answered: predictions per (endpoint, version).

One node per endpoint and version with how many predictions it answered, from when to
when, by route (never a node per prediction). The counts are exact and cost little on a
large log in the common case: an endpoint that only ever served one version directly
(every spec in its history a plain ``direct`` node of that version, no fallback rule, no
automation with people in it) answered with that version every request it logged, so its
count and time range come from the ``(endpoint, time)`` index alone, without reading a row.
An endpoint that served several versions (canaries, shadows, replacements) is grouped by
version and route over its rows: one query per hop, a scan of that endpoint's log.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, tuple_

from prodml.pipelines.lineage_graph import LineageGraph, LineageNode
from prodml.pipelines.lineage_records import models_in, split_ref
from prodml.store import tables as t


def answered(conn: Connection, graph: LineageGraph, hops: dict[str, int],
             depth: int | None) -> None:
    """Add the predictions nodes of the endpoints in ``graph`` within ``depth`` hops; a
    version's predictions count only on endpoints the walk reached it by (every version
    when the walk started at the endpoint)."""
    endpoints = [n.id for n in graph.nodes_of("endpoint")
                 if depth is None or hops.get(n.key, 0) < depth]
    if not endpoints:
        return
    wanted: dict[str, set[str] | None] = {
        name: None if f"endpoint:{name}" in graph.roots else set() for name in endpoints}
    for edge in graph.edges:
        name = edge.target.partition(":")[2]
        if edge.relation == "deployed" and wanted.get(name) is not None:
            wanted[name].add(edge.source.partition(":")[2])  # type: ignore[union-attr]
    only = _single_version(conn, endpoints)
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    scan: dict[str, set[str] | None] = {}
    for name, versions in wanted.items():
        if name in only and (versions is None or only[name] in versions):
            totals.update(_from_index(conn, name, only[name]))
        elif versions is None or versions:
            scan[name] = versions
    totals.update(_from_rows(conn, scan))
    for (endpoint, ref), entry in sorted(totals.items()):
        node = LineageNode("predictions", f"{ref}@{endpoint}", f"{ref} on {endpoint}",
                           {"endpoint": endpoint, "model": ref, **entry})
        graph.add(node)
        graph.link(f"endpoint:{endpoint}", node.key, "answered", {"model": ref})
        if f"model_version:{ref}" not in graph:
            graph.add(LineageNode("model_version", ref, ref, {}))
            graph.link(f"model_version:{ref}", f"endpoint:{endpoint}", "deployed", {})


def _single_version(conn: Connection, endpoints: list[str]) -> dict[str, str]:
    """The endpoints whose whole history is one version served directly: name → ref."""
    de, ep = t.deployment_events, t.endpoints
    specs: dict[str, list[Any]] = {}
    spoiled: set[str] = set()
    for name, spec, fallback in conn.execute(select(ep.c.name, ep.c.spec, ep.c.fallback)
                                             .where(ep.c.name.in_(endpoints))):
        specs.setdefault(name, []).append(spec)
        if fallback:
            spoiled.add(name)
    for name, spec, action in conn.execute(select(de.c.endpoint, de.c.to_spec, de.c.action)
                                           .where(de.c.endpoint.in_(endpoints))):
        specs.setdefault(name, []).append(spec)
        if action == "fallback":
            spoiled.add(name)
    single = {}
    for name, history in specs.items():
        refs = set().union(*(models_in(s) for s in history if s))
        direct = all(isinstance(s, dict) and s.get("kind") == "direct" for s in history if s)
        if len(refs) == 1 and direct and name not in spoiled:
            single[name] = next(iter(refs))
    return single


def _from_index(conn: Connection, endpoint: str, ref: str
                ) -> dict[tuple[str, str], dict[str, Any]]:
    p = t.predictions
    count, first, last = conn.execute(select(func.count(), func.min(p.c.time),
                                             func.max(p.c.time))
                                      .where(p.c.endpoint == endpoint)).one()
    if not count:
        return {}
    return {(endpoint, ref): {"count": count, "first": first, "last": last,
                              "routes": {"primary": count}}}


def _from_rows(conn: Connection, scan: dict[str, set[str] | None]
               ) -> dict[tuple[str, str], dict[str, Any]]:
    if not scan:
        return {}
    p = t.predictions
    every = [name for name, versions in scan.items() if versions is None]
    pairs = [(name, *split_ref(ref)) for name, versions in scan.items() if versions
             for ref in sorted(versions)]
    filters = []
    if pairs:
        filters.append(and_(p.c.endpoint.in_({name for name, *_ in pairs}),
                            tuple_(p.c.endpoint, p.c.model_name, p.c.model_version).in_(pairs)))
    if every:
        filters.append(p.c.endpoint.in_(every))
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for endpoint, name, version, route, n, first, last in conn.execute(
            select(p.c.endpoint, p.c.model_name, p.c.model_version, p.c.route, func.count(),
                   func.min(p.c.time), func.max(p.c.time))
            .where(or_(*filters), p.c.model_name.is_not(None), p.c.model_version.is_not(None))
            .group_by(p.c.endpoint, p.c.model_name, p.c.model_version, p.c.route)):
        entry = totals.setdefault((endpoint, f"{name}/{version}"),
                                  {"count": 0, "first": first, "last": last, "routes": {}})
        entry["count"] += n
        entry["routes"][route] = n
        entry["first"], entry["last"] = min(entry["first"], first), max(entry["last"], last)
    return totals
