"""The result of a lineage query: typed nodes and edges, as data, text and JSON.

Edges always point the way data flowed (a source into the step that read it, a dataset
into the run that trained on it, a model version into the endpoint that served it), whatever
the direction of the walk; the walk's direction only says which way it followed them.
``same`` edges join two records of one thing (a pipeline's Dataset artifact and the dataset
version it recorded, a step's execution and the tracked run it opened).

>>> graph = LineageGraph("loan/1", "up", None, ("model_version:loan/1",))
>>> graph.add(LineageNode("model_version", "loan/1", "loan/1"))
True
>>> graph.add(LineageNode("run", "5f2a", "train-5f2a", {"status": "FINISHED"}))
True
>>> graph.link("run:5f2a", "model_version:loan/1", "registered")
>>> graph.models(), [n.id for n in graph.nodes_of("run")]
(['loan/1'], ['5f2a'])
>>> print(graph.to_text())
model version loan/1
└── registered from: run train-5f2a
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KINDS = ("prediction", "predictions", "endpoint", "model_version", "run", "dataset",
         "labeler", "source", "artifact", "execution", "pipeline_run")
UNDIRECTED = ("same", "ran")  # one thing's two records; a pipeline run and its steps
# How an edge reads from its target back to its source (the upward tree).
_BACK = {"read": "read", "wrote": "written by", "input": "trained on", "registered":
         "registered from", "deployed": "deployed from", "answered": "answered by",
         "labeled": "labeled by", "loaded": "loaded from", "same": "same as",
         "routed": "routed by"}


@dataclass(frozen=True)
class LineageNode:
    """One record lineage reached: ``kind`` names its table, ``id`` its key there."""

    kind: str
    id: str
    label: str
    properties: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "id": self.id, "label": self.label,
                "properties": self.properties}


@dataclass(frozen=True)
class LineageEdge:
    """Data flowed from ``source`` to ``target`` (node keys) by ``relation``."""

    source: str
    target: str
    relation: str
    properties: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "relation": self.relation,
                "properties": self.properties}


@dataclass
class LineageGraph:
    """Everything upstream (``direction="up"``) or downstream of ``ref``, within ``depth``."""

    ref: str
    direction: str
    depth: int | None
    roots: tuple[str, ...]
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[LineageEdge] = field(default_factory=list)
    _edge_keys: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    # -- building ------------------------------------------------------------------------------
    def add(self, node: LineageNode) -> bool:
        """Add ``node``; False when a node with its key is already there."""
        if node.key in self.nodes:
            return False
        self.nodes[node.key] = node
        return True

    def link(self, source: str, target: str, relation: str,
             properties: dict[str, Any] | None = None) -> None:
        if (source, target, relation) in self._edge_keys or source == target:
            return
        self._edge_keys.add((source, target, relation))
        self.edges.append(LineageEdge(source, target, relation, properties or {}))

    # -- reading -------------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, key: str) -> LineageNode:
        return self.nodes[key]

    def nodes_of(self, kind: str) -> list[LineageNode]:
        """The nodes of one kind (``"dataset"``, ``"model_version"``...), in a stable order."""
        return sorted((n for n in self.nodes.values() if n.kind == kind), key=lambda n: n.id)

    def models(self) -> list[str]:
        """The model versions reached, as ``name/version`` references."""
        return sorted((n.id for n in self.nodes.values() if n.kind == "model_version"),
                      key=_ref_order)

    def artifacts(self, type: str | None = None) -> list[LineageNode]:
        """Pipeline artifacts reached, optionally of one type (``"Source"``, ``"Dataset"``)."""
        return [n for n in self.nodes_of("artifact")
                if type is None or n.properties.get("type") == type]

    def pipeline_runs(self) -> list[str]:
        """Ids of the pipeline runs whose executions the walk reached."""
        return sorted({n.properties["pipeline_run"] for n in self.nodes_of("execution")
                       if n.properties.get("pipeline_run")})

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "direction": self.direction, "depth": self.depth,
                "roots": list(self.roots),
                "nodes": [n.to_dict() for n in sorted(self.nodes.values(),
                                                      key=lambda n: (KINDS.index(n.kind)
                                                                     if n.kind in KINDS else 99,
                                                                     n.id))],
                "edges": [e.to_dict() for e in self.edges]}

    def to_text(self) -> str:
        """A tree from the roots, following edges the way the walk went (``same`` and
        ``ran`` edges either way); a node met again is named with ``(see above)``."""
        forward: dict[str, list[tuple[str, LineageEdge]]] = {}
        for edge in self.edges:
            ahead = (edge.source, edge.target) if self.direction == "down" else (edge.target,
                                                                                 edge.source)
            forward.setdefault(ahead[0], []).append((ahead[1], edge))
            if edge.relation in UNDIRECTED:
                forward.setdefault(ahead[1], []).append((ahead[0], edge))
        lines: list[str] = []
        seen: set[str] = set()
        for root in self.roots:
            if root in self.nodes and root not in seen:
                lines.extend(self._tree(root, forward, seen))
        return "\n".join(lines)

    def _tree(self, root: str, forward: dict[str, list[tuple[str, LineageEdge]]],
              seen: set[str]) -> Iterator[str]:
        seen.add(root)
        yield describe(self.nodes[root])
        stack = [("", self._ordered(forward.get(root, []), seen), 0)]
        while stack:
            prefix, children, index = stack.pop()
            if index >= len(children):
                continue
            stack.append((prefix, children, index + 1))
            other, edge = children[index]
            last = index == len(children) - 1
            verb = edge.relation if self.direction == "down" or edge.relation in UNDIRECTED \
                else _BACK.get(edge.relation, edge.relation)
            repeated = other in seen
            if repeated and edge.relation in UNDIRECTED:
                continue  # the other record of the same thing, already shown
            note = edge_note(edge)
            yield (f"{prefix}{'└── ' if last else '├── '}{verb}"
                   + (f" [{note}]" if note else "") + f": {describe(self.nodes[other])}"
                   + (" (see above)" if repeated else ""))
            if not repeated:
                seen.add(other)
                stack.append((prefix + ("    " if last else "│   "),
                              self._ordered(forward.get(other, []), seen), 0))

    def _ordered(self, children: list[tuple[str, LineageEdge]], seen: set[str]
                 ) -> list[tuple[str, LineageEdge]]:
        def order(child: tuple[str, LineageEdge]) -> tuple[int, str]:
            kind = self.nodes[child[0]].kind
            return (KINDS.index(kind) if kind in KINDS else 99, child[0])
        return sorted((c for c in children if c[1].relation not in UNDIRECTED
                       or c[0] not in seen), key=order)


def _ref_order(ref: str) -> tuple[str, int]:
    name, _, version = ref.rpartition("/")
    return name, int(version) if version.isdigit() else 0


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def edge_note(edge: LineageEdge) -> str:
    """The facts an edge carries, shortly: a dataset's role, labels given, a revision."""
    p = edge.properties
    if edge.relation == "input":
        return str(p.get("context") or "")
    if edge.relation == "labeled":
        if p.get("from") == "provenance":
            return f"{p.get('rows', 0):,} rows, provenance"
        return f"{p.get('annotations', 0):,} labels on {p.get('rows', 0):,} rows"
    if edge.relation == "routed":
        who = f", {p['action']} by {p['actor']}" if p.get("actor") else ""
        return f"revision {p.get('revision')}{who}"
    if edge.relation == "deployed" and "revisions" in p:
        revisions = ", ".join(str(r) for r in p["revisions"][:5]) + (
            ", ..." if len(p["revisions"]) > 5 else "")
        now = "serving now" if p.get("serving_now") else "no longer serving"
        return f"revisions {revisions}; {now}" if revisions else now
    if edge.relation in ("read", "wrote"):
        return str(p.get("name") or "")
    if edge.relation == "answered" and p.get("route"):
        return str(p["route"])
    return ""


def describe(node: LineageNode) -> str:
    """One line for a person: the kind, the label and the few facts that identify it."""
    p = node.properties
    kind = node.kind.replace("_", " ")
    extra: list[str] = []
    if node.kind == "predictions":
        extra.append(f"{p.get('count', 0):,} predictions {when(p.get('first'))} .. "
                     f"{when(p.get('last'))}")
    elif node.kind == "dataset":
        extra.append(f"{node.id[:12]}, {p.get('num_rows', '?'):,} rows"
                     if isinstance(p.get("num_rows"), int) else node.id[:12])
    elif node.kind == "execution":
        extra.append(str(p.get("status", "")))
    elif node.kind == "artifact":
        kind = str(p.get("type", "artifact"))
        extra.append(f"#{node.id}, {str(p.get('digest', ''))[:12]}")
    elif node.kind == "model_version" and p.get("aliases"):
        extra.append(" ".join(f"@{a}" for a in p["aliases"]))
    elif node.kind == "endpoint" and p.get("deployment"):
        extra.append(f"now: {p['deployment']}")
    elif node.kind == "prediction":
        extra.append(f"{p.get('endpoint')}, {when(p.get('time'))}")
    return f"{kind} {node.label}" + (f" ({'; '.join(e for e in extra if e)})"
                                     if any(extra) else "")
