"""Which version answers a request, and which versions see it in the shadows.

Routing is a walk down the deployment tree. A canary splits traffic by a bucket in
[0, 10000): from the request's routing key when it has one (MurmurHash3 of
``endpoint:key``, as Unleash buckets a gradual rollout), so a caller stays on one side and
raising the weight keeps everyone who was already on the candidate; from a random number
otherwise. Shadow mirrors bucket the same way, so a fixed percentage of callers is mirrored.

>>> from prodml.serving.deployment import parse_spec
>>> tree = parse_spec({"kind": "canary", "primary": "m/1", "candidate": "m/2", "steps": [30, 100]})
>>> routes = [decide(tree, "loan", str(user)).route for user in range(1000)]
>>> round(routes.count("canary") / 1000, 1)
0.3
>>> sticky = [decide(tree, "loan", str(u)).route for u in range(1000)]
>>> sticky == routes
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import mmh3

from prodml.serving import deployment as d

BUCKETS = 10_000


def bucket(endpoint: str, key: str | None, salt: str = "") -> int:
    """A stable bucket in [0, BUCKETS) for a routing key; a random one without a key."""
    if key is None:
        return random.randrange(BUCKETS)
    return mmh3.hash(f"{endpoint}{salt}:{key}", signed=False) % BUCKETS


def takes(percent: float, point: int) -> bool:
    """Whether a bucket falls inside the first ``percent`` of the range.

    Monotone in ``percent``: raising it only adds buckets, never drops one.
    """
    return point < percent * (BUCKETS / 100)


@dataclass
class Decision:
    """The outcome of routing one request."""

    leaf: d.Direct  # the version that answers
    route: str = "primary"  # primary or canary
    canary: d.Canary | None = None  # the canary this request passed through
    compare: d.Direct | None = None  # the primary, asked off-path to measure disagreement
    mirrors: list[d.Mirror] = field(default_factory=list)
    automation: d.Automation | None = None


def decide(node: d.Node, endpoint: str, key: str | None = None) -> Decision:
    """Route one request through the tree."""
    if isinstance(node, d.Direct):
        return Decision(leaf=node)
    if isinstance(node, d.Automation):
        decision = decide(node.node, endpoint, key)
        decision.automation = decision.automation or node
        return decision
    if isinstance(node, d.Shadow):
        decision = decide(node.primary, endpoint, key)
        for i, mirror in enumerate(node.mirrors):
            if mirror.percent >= 100 or takes(mirror.percent, bucket(endpoint, key, f"#m{i}")):
                decision.mirrors.append(mirror)
        return decision
    if isinstance(node, d.Canary):
        if takes(node.weight, bucket(endpoint, key)):
            decision = decide(node.candidate, endpoint, key)
            decision.route = "canary"
            if node.mirror_primary:
                decision.compare = decide(node.primary, endpoint, key).leaf
        else:
            decision = decide(node.primary, endpoint, key)
        decision.canary = decision.canary or node
        return decision
    if isinstance(node, d.BlueGreen):
        return decide(node.live, endpoint, key)
    raise TypeError(f"unknown deployment node {node!r}")  # pragma: no cover
