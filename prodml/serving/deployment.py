"""Deployment strategies as a tree of routers: each node answers like a model.

A *deployment* is what stands behind an endpoint: a tree whose leaves are model versions and
whose inner nodes decide which leaf answers a request. Nodes compose the way Starlette's
middleware does, so a canary can wrap a blue-green pair and a shadow can sit beside either:

- ``direct``: one version takes all traffic;
- ``shadow``: a primary answers; mirrors get a percentage of the traffic off the critical
  path, their answers logged, never returned;
- ``canary``: a candidate takes ``weight`` percent (sticky by a routing key), ramped through
  ``steps`` and guarded at each step; a failed guard rolls back;
- ``blue_green``: two full versions, one active; switching is instant and reversible;
- ``automation``: the degree of automation around a model (shadow, assist, partial, full).

The tree holds its live state too (a canary's step, the active colour), so the whole
deployment is one JSON document in the store, versioned by the endpoint's revision.

>>> tree = parse_spec({"kind": "canary", "primary": "loan/1", "candidate": "loan/2",
...                    "steps": [5, 50, 100]})
>>> tree.weight, [leaf.model for leaf in leaves(tree)]
(5.0, ['loan/1', 'loan/2'])
>>> parse_spec({"kind": "shadow", "primary": "loan/1", "mirrors": [{"model": "loan/2"}]}
...            ).mirrors[0].percent
100.0
"""

from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, \
    model_validator

from prodml.errors import InvalidInputError

AUTOMATION_MODES = ("shadow", "assist", "partial", "full")


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Direct(_Node):
    """One model version answers every request."""

    kind: Literal["direct"] = "direct"
    model: str  # a resolved reference, "name/version"


class Mirror(_Node):
    node: "Node"
    percent: float = Field(100.0, gt=0, le=100)
    timeout_s: float = Field(5.0, gt=0)


class Shadow(_Node):
    """The primary answers; each mirror sees ``percent`` of requests, logged only."""

    kind: Literal["shadow"] = "shadow"
    primary: "Node"
    mirrors: tuple[Mirror, ...]


class Guards(_Node):
    """Checks at each canary step, on the candidate's traffic since the step began.

    A check with no value is off. ``min_requests`` candidate answers are needed before a
    step can pass; ``failures`` failed evaluations in a row roll the canary back (Flagger's
    ``threshold``).
    """

    max_error_rate: float | None = Field(0.01, ge=0, le=1)
    max_latency_p99_ms: float | None = Field(500.0, gt=0)
    max_disagreement: float | None = Field(None, ge=0, le=1)  # vs the primary's answer
    max_prediction_shift: float | None = Field(None, ge=0, le=1)  # distance of answer mix
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)  # when labels have arrived
    min_labels: int = Field(20, ge=1)  # labelled answers a side needs for the accuracy check
    min_requests: int = Field(20, ge=1)
    failures: int = Field(1, ge=1)


class Canary(_Node):
    """The candidate takes ``weight`` percent of traffic, ramped through ``steps``."""

    kind: Literal["canary"] = "canary"
    primary: "Node"
    candidate: "Node"
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    step_index: int = Field(0, ge=0)
    step_every_requests: int | None = Field(None, ge=1)  # candidate answers per step
    step_every_seconds: float | None = Field(None, gt=0)
    # When the current step began: stamped by the database's clock, and the endpoint
    # revision, in the write that starts the step (see :func:`stamp_steps`). The step's
    # answers are those logged under that revision or a later one.
    step_started_at: int | None = None  # ms since the epoch, the database's clock
    step_revision: int | None = None
    routing_key: str | None = None  # input field that keeps a caller on one side
    guards: Guards = Guards()
    failed_checks: int = Field(0, ge=0)
    mirror_primary: bool = True  # ask the primary too, to measure disagreement

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(steps):
            raise ValueError("steps must be rising percentages in (0, 100]")
        return steps

    @model_validator(mode="after")
    def _step_in_range(self) -> "Canary":
        if self.step_index >= len(self.steps):
            raise ValueError(f"step_index {self.step_index} is past the last step")
        return self

    @property
    def weight(self) -> float:
        return self.steps[self.step_index]


class BlueGreen(_Node):
    """Two full versions; ``active`` takes all traffic, the other stays loaded."""

    kind: Literal["blue_green"] = "blue_green"
    blue: "Node"
    green: "Node"
    active: Literal["blue", "green"] = "blue"
    smoke: tuple[dict[str, Any], ...] = ()  # records the idle side must answer before a switch

    @property
    def live(self) -> "Node":
        return self.blue if self.active == "blue" else self.green

    @property
    def idle(self) -> "Node":
        return self.green if self.active == "blue" else self.blue


class Automation(_Node):
    """How much the model decides: ``shadow`` (a person decides, the model only logs),
    ``assist`` (the answer is a suggestion), ``partial`` (answers under ``threshold``
    confidence go to a person), ``full``."""

    kind: Literal["automation"] = "automation"
    node: "Node"
    mode: Literal["shadow", "assist", "partial", "full"] = "full"
    threshold: float = Field(0.8, ge=0, le=1)


Node = Annotated[Union[Direct, Shadow, Canary, BlueGreen, Automation],
                 Field(discriminator="kind")]
for _cls in (Mirror, Shadow, Canary, BlueGreen, Automation):
    _cls.model_rebuild()


class _Tree(BaseModel):
    node: Node


def parse_spec(value: Any) -> Node:
    """A deployment tree from its dict form; a bare string is a direct deployment.

    Leaves may be written as strings (``"loan/2"``) anywhere a node is expected.
    """
    try:
        return _Tree(node=_expand(value, "spec")).node
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:] if p not in _KINDS) or "spec"
        raise InvalidInputError(f"deployment.{where}", first.get("input"),
                                first["msg"]) from None


_KINDS = {"direct", "shadow", "canary", "blue_green", "automation"}
_CHILDREN = {"primary", "candidate", "blue", "green", "node"}


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, _Node):
        return value.to_dict()
    if isinstance(value, str):
        return {"kind": "direct", "model": value}
    if not isinstance(value, dict):
        raise InvalidInputError(f"deployment.{where}", value,
                                "must be a model reference or a {'kind': ...} mapping")
    out = dict(value)
    for key in _CHILDREN & out.keys():
        out[key] = _expand(out[key], f"{where}.{key}")
    if "mirrors" in out and isinstance(out["mirrors"], list):
        out["mirrors"] = [_mirror(m, f"{where}.mirrors[{i}]")
                          for i, m in enumerate(out["mirrors"])]
    return out


def _mirror(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return {"node": _expand(value, where)}
    if isinstance(value, dict):
        out = dict(value)
        if "model" in out and "node" not in out:
            out["node"] = out.pop("model")
        if "node" in out:
            out["node"] = _expand(out["node"], where + ".node")
        return out
    return value


def leaves(node: Node) -> Iterator[Direct]:
    """Every model version in the tree, mirrors included, in a stable order."""
    if isinstance(node, Direct):
        yield node
    elif isinstance(node, Shadow):
        yield from leaves(node.primary)
        for mirror in node.mirrors:
            yield from leaves(mirror.node)
    elif isinstance(node, Canary):
        yield from leaves(node.primary)
        yield from leaves(node.candidate)
    elif isinstance(node, BlueGreen):
        yield from leaves(node.blue)
        yield from leaves(node.green)
    elif isinstance(node, Automation):
        yield from leaves(node.node)


def find(node: Node, kind: type) -> Any:
    """The first node of ``kind`` in the tree (depth first), or None."""
    if isinstance(node, kind):
        return node
    for child in _children(node):
        found = find(child, kind)
        if found is not None:
            return found
    return None


def replace(node: Node, old: Any, new: Any) -> Node:
    """The tree with the node ``old`` (by identity) swapped for ``new``."""
    if node is old:
        return new
    updates: dict[str, Any] = {}
    for name in ("primary", "candidate", "blue", "green", "node"):
        child = getattr(node, name, None)
        if child is not None:
            swapped = replace(child, old, new)
            if swapped is not child:
                updates[name] = swapped
    if isinstance(node, Shadow):
        mirrors = tuple(m.model_copy(update={"node": replace(m.node, old, new)})
                        for m in node.mirrors)
        if any(a.node is not b.node for a, b in zip(mirrors, node.mirrors)):
            updates["mirrors"] = mirrors
    return node.model_copy(update=updates) if updates else node


def transform(node: Node, fn: Any) -> Node:
    """The tree with ``fn`` applied to every node, children first (mirrors included)."""
    updates: dict[str, Any] = {}
    for name in ("primary", "candidate", "blue", "green", "node"):
        child = getattr(node, name, None)
        if child is not None:
            mapped = transform(child, fn)
            if mapped is not child:
                updates[name] = mapped
    if isinstance(node, Shadow):
        mirrors = tuple(m.model_copy(update={"node": transform(m.node, fn)})
                        for m in node.mirrors)
        if any(a.node is not b.node for a, b in zip(mirrors, node.mirrors)):
            updates["mirrors"] = mirrors
    return fn(node.model_copy(update=updates) if updates else node)


def nodes(node: Node) -> Iterator[Node]:
    """Every node of the tree, depth first (mirrors included)."""
    yield node
    for child in _children(node):
        yield from nodes(child)


def without_canaries(node: Node) -> Node:
    """The tree with every canary replaced by its primary: what a rollback restores.

    >>> describe(without_canaries(parse_spec({"kind": "shadow", "mirrors": ["m/3"],
    ...     "primary": {"kind": "canary", "primary": "m/1", "candidate": "m/2"}})))
    'm/1 (shadow: m/3 100%)'
    """
    return transform(node, lambda n: n.primary if isinstance(n, Canary) else n)


_CLOCK = ("step_started_at", "step_revision", "failed_checks")


def _step_key(canary: Canary) -> str:
    """A canary at its step, whatever its clock: equal keys are the same step running."""
    import json

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _CLOCK}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return json.dumps(strip(canary.to_dict()), sort_keys=True)


def stamp_steps(before: Node | None, after: Node, now: int, revision: int) -> Node:
    """``after`` (about to be written as ``revision`` at ``now``, the database's clock) with
    the clock of every canary in it set, however deep.

    A canary already running in ``before`` at the same step, with the same settings, keeps
    its clock (a pause, a policy change, a failed check, the same spec applied again); any
    other canary (new, deployed again with other settings, or moved to its next step) starts
    its step now, at ``revision``. A stamp written in the spec itself is never used.

    >>> c = parse_spec({"kind": "canary", "primary": "m/1", "candidate": "m/2"})
    >>> first = stamp_steps(None, c, now=1000, revision=3)
    >>> first.step_started_at, first.step_revision
    (1000, 3)
    >>> stamp_steps(first, c, now=2000, revision=4) == first
    True
    >>> stamp_steps(first, c.model_copy(update={"step_index": 1}), 2000, 4).step_revision
    4
    """
    running: dict[str, Canary] = {}
    for node in nodes(before) if before is not None else ():
        if isinstance(node, Canary) and node.step_started_at is not None:
            running.setdefault(_step_key(node), node)

    def stamp(node: Node) -> Node:
        if not isinstance(node, Canary):
            return node
        prior = running.get(_step_key(node))
        clock = (prior.step_started_at, prior.step_revision) if prior is not None \
            else (now, revision)
        if (node.step_started_at, node.step_revision) == clock:
            return node
        return node.model_copy(update={"step_started_at": clock[0],
                                       "step_revision": clock[1]})
    return transform(after, stamp)


def _children(node: Node) -> list[Node]:
    if isinstance(node, Shadow):
        return [node.primary, *(m.node for m in node.mirrors)]
    if isinstance(node, Canary):
        return [node.primary, node.candidate]
    if isinstance(node, BlueGreen):
        return [node.blue, node.green]
    if isinstance(node, Automation):
        return [node.node]
    return []


def describe(node: Node) -> str:
    """One line a person reads: ``canary loan/1 -> loan/2 at 25% (step 2/4)``."""
    if isinstance(node, Direct):
        return node.model
    if isinstance(node, Shadow):
        mirrors = ", ".join(f"{describe(m.node)} {m.percent:g}%" for m in node.mirrors)
        return f"{describe(node.primary)} (shadow: {mirrors})"
    if isinstance(node, Canary):
        return (f"canary {describe(node.primary)} -> {describe(node.candidate)} at "
                f"{node.weight:g}% (step {node.step_index + 1}/{len(node.steps)})")
    if isinstance(node, BlueGreen):
        return f"blue-green {node.active} live: {describe(node.live)} (idle {describe(node.idle)})"
    return f"{node.mode} automation of {describe(node.node)}" + (
        f" (threshold {node.threshold:g})" if node.mode == "partial" else "")
