"""The lineage graph on a model version's and a run's page: a Plotly figure and a table.

The record sits in the middle; what it came from (``pm.lineage(..., "up")``) is laid out in
columns to its left by hops, what it reached (``"down"``) to its right. Nodes are markers
coloured by kind, edges plain lines; the table under the figure lists the same records with
links to their pages.
"""

from __future__ import annotations

from typing import Any

from prodml.pipelines.lineage import lineage
from prodml.pipelines.lineage_graph import LineageGraph, LineageNode, describe
from prodml.store import Store
from prodml.ui.charts import COLORS, Figure, text

MAX_NODES = 300  # per side: a page stays light on a store with many pipeline runs
KIND_COLORS = {kind: COLORS[i % len(COLORS)] for i, kind in enumerate(
    ("model_version", "run", "dataset", "artifact", "execution", "source", "labeler",
     "endpoint", "predictions", "prediction", "pipeline_run"))}


def _distances(graph: LineageGraph) -> dict[str, int]:
    """Hops from the roots, following edges the way the walk went (``same`` edges both ways)."""
    forward: dict[str, list[str]] = {}
    for edge in graph.edges:
        a, b = (edge.source, edge.target) if graph.direction == "down" else (edge.target,
                                                                          edge.source)
        forward.setdefault(a, []).append(b)
        if edge.relation in ("same", "ran"):
            forward.setdefault(b, []).append(a)
    seen = {root: 0 for root in graph.roots if root in graph}
    queue = list(seen)
    while queue:
        key = queue.pop(0)
        for other in forward.get(key, []):
            if other not in seen:
                seen[other] = seen[key] + 1
                queue.append(other)
    return seen


def link(node: LineageNode, ui: str) -> str | None:
    """The dashboard page of a record, where it has one (a run's and a version's at their
    own lineage graph)."""
    from urllib.parse import quote

    if node.kind == "run":
        return f"{ui}/runs/{quote(node.id)}#lineage-section"
    if node.kind == "model_version":
        name, _, version = node.id.rpartition("/")
        return f"{ui}/models/{quote(name)}/{version}#lineage-section"
    if node.kind == "endpoint":
        return f"{ui}/endpoints/{quote(node.id)}"
    if node.kind == "pipeline_run":
        return f"{ui}/pipelines/{quote(node.id)}"
    if node.kind == "execution" and node.properties.get("pipeline_run"):
        return f"{ui}/pipelines/{quote(str(node.properties['pipeline_run']))}#step-{node.id}"
    if node.kind == "predictions":
        return f"{ui}/endpoints/{quote(str(node.properties.get('endpoint', '')))}"
    return None


def lineage_view(store: Store, ref: str, ui: str, depth: int | None = None
                 ) -> dict[str, Any]:
    """``{"figure": ..., "rows": [...], "counts": {...}}`` for the record ``ref`` names
    (``depth``: at most that many hops each way; None walks to the ends)."""
    up = lineage(ref, "up", depth, store=store)
    down = lineage(ref, "down", depth, store=store)
    place: dict[str, tuple[int, LineageNode]] = {}
    for graph, sign in ((up, -1), (down, 1)):
        distances = _distances(graph)
        for key, hops in sorted(distances.items(), key=lambda item: item[1])[:MAX_NODES]:
            if key not in place or hops == 0:
                place[key] = (sign * hops, graph.node(key))
    edges = {(e.source, e.target) for g in (up, down) for e in g.edges
             if e.source in place and e.target in place}
    columns: dict[int, list[str]] = {}
    for key, (x, _node) in sorted(place.items(), key=lambda item: (item[1][0], item[0])):
        columns.setdefault(x, []).append(key)
    xy: dict[str, tuple[int, float]] = {}
    for x, keys in columns.items():
        for i, key in enumerate(keys):
            xy[key] = (x, i - (len(keys) - 1) / 2)
    line_x: list[Any] = []
    line_y: list[Any] = []
    for source, target in sorted(edges):
        line_x += [xy[source][0], xy[target][0], None]
        line_y += [xy[source][1], xy[target][1], None]
    traces: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "lines", "x": line_x, "y": line_y, "hoverinfo": "skip",
        "line": {"color": "#afb8c1", "width": 1}, "showlegend": False, "name": "edges"}]
    by_kind: dict[str, list[str]] = {}
    for key, (_x, node) in place.items():
        by_kind.setdefault(node.kind, []).append(key)
    for kind, keys in sorted(by_kind.items()):
        nodes = [place[k][1] for k in keys]
        traces.append({
            "type": "scatter", "mode": "markers+text", "name": text(kind.replace("_", " ")),
            "x": [xy[k][0] for k in keys], "y": [xy[k][1] for k in keys],
            "text": [text(_short(n)) for n in nodes], "textposition": "top center",
            "hovertext": [text(describe(n)) for n in nodes], "hoverinfo": "text",
            "customdata": [n.key for n in nodes],
            "marker": {"size": 14 if kind == "model_version" else 11,
                       "color": KIND_COLORS.get(kind, "#57606a"),
                       "line": {"width": 1, "color": "#fff"}}})
    tallest = max((len(v) for v in columns.values()), default=1)
    spread = (tallest - 1) / 2
    height = max(260, 60 * tallest + 80)
    figure: Figure = {"data": traces, "layout": {
        "height": min(height, 900), "margin": {"l": 16, "r": 16, "t": 16, "b": 16},
        "xaxis": {"visible": False, "range": [min(columns) - 0.5, max(columns) + 0.5]},
        "yaxis": {"visible": False, "range": [-spread - 0.8, spread + 0.8]},
        "hovermode": "closest",
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "showlegend": True}}
    rows = [{"side": "upstream" if x < 0 else "downstream" if x > 0 else "this", "hops": abs(x),
             "kind": node.kind.replace("_", " "), "key": key, "text": describe(node),
             "href": link(node, ui)}
            for key, (x, node) in sorted(place.items(), key=lambda item: (item[1][0], item[0]))]
    counts: dict[str, int] = {}
    for _x, node in place.values():
        counts[node.kind] = counts.get(node.kind, 0) + 1
    return {"figure": figure, "rows": rows, "counts": counts}


def _short(node: LineageNode) -> str:
    if node.kind in ("dataset",):
        return f"{node.label} {node.id[:8]}"
    if node.kind == "predictions":
        return f"{node.properties.get('count', 0):,} predictions"
    if node.kind == "run":
        return node.id[:8]
    if node.kind == "source":
        return node.id.rsplit("/", 1)[-1][:40]
    return node.label[:40]
