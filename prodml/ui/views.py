"""Records as a person reads them: an endpoint's strategy and traffic split, its history.

Nothing is decided here: the split is read off the deployment tree as it stands (a
canary's weight, the active colour), and the rollback target is the one
:func:`prodml.serving.endpoints.rollback` restores (the tree before the last deploy,
promote or switch, with no canary in it).
"""

from __future__ import annotations

from typing import Any

from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.serving.endpoints import DeploymentEvent, Endpoint

STRATEGY_NAMES = {"direct": "direct", "shadow": "shadow", "canary": "canary",
                  "blue_green": "blue-green", "automation": "automation"}


def strategy(node: d.Node) -> str:
    """``canary``, ``shadow``, ``partial automation · canary``..."""
    if isinstance(node, d.Automation):
        return f"{node.mode} automation · {strategy(node.node)}"
    if isinstance(node, d.Shadow) and not isinstance(node.primary, d.Direct):
        return f"{strategy(node.primary)} + shadow"
    return STRATEGY_NAMES[node.kind]


def split(node: d.Node, share: float = 100.0, role: str = "serves") -> list[dict[str, Any]]:
    """Each version with the share of requests it answers (mirrors: the share mirrored)."""
    if isinstance(node, d.Direct):
        return [{"model": node.model, "percent": share, "role": role}]
    if isinstance(node, d.Canary):
        weight = node.weight
        return (split(node.primary, share * (100 - weight) / 100, "primary")
                + split(node.candidate, share * weight / 100, "canary"))
    if isinstance(node, d.BlueGreen):
        return (split(node.live, share, f"{node.active} (live)")
                + split(node.idle, 0.0, f"{'green' if node.active == 'blue' else 'blue'} "
                                        "(idle)"))
    if isinstance(node, d.Shadow):
        rows = split(node.primary, share, role)
        for mirror in node.mirrors:
            rows += [{**row, "role": "shadow (mirrored, not answered)",
                      "percent": mirror.percent}
                     for row in split(mirror.node, 100.0)]
        return rows
    return split(node.node, share, role)


def canary_state(node: d.Node) -> dict[str, Any] | None:
    canary = d.find(node, d.Canary)
    if canary is None:
        return None
    guards = {k: v for k, v in canary.guards.to_dict().items() if v is not None}
    return {"weight": canary.weight, "step": canary.step_index + 1,
            "steps": list(canary.steps), "every_requests": canary.step_every_requests,
            "every_seconds": canary.step_every_seconds, "guards": guards,
            "failed_checks": canary.failed_checks, "routing_key": canary.routing_key}


def automation(node: d.Node) -> dict[str, Any] | None:
    found = d.find(node, d.Automation)
    return None if found is None else {"mode": found.mode, "threshold": found.threshold}


def endpoint_row(endpoint: Endpoint) -> dict[str, Any]:
    return {"name": endpoint.name, "summary": endpoint.describe(),
            "strategy": strategy(endpoint.spec), "split": split(endpoint.spec),
            "canary": canary_state(endpoint.spec), "automation": automation(endpoint.spec),
            "paused": endpoint.paused, "fallback": endpoint.fallback,
            "revision": endpoint.revision, "updated_at": endpoint.updated_at,
            "models": [leaf.model for leaf in d.leaves(endpoint.spec)]}


def timeline(events: list[DeploymentEvent]) -> list[dict[str, Any]]:
    return [{"revision": e.revision, "time": e.time, "actor": e.actor, "action": e.action,
             "reason": e.reason, **{k: v for k, v in e.to_dict().items()
                                    if k in ("from_summary", "to_summary")}}
            for e in events]


def rollback_target(events: list[DeploymentEvent]) -> dict[str, Any] | None:
    """What a rollback restores now (see :func:`prodml.serving.endpoints.rollback_target`)."""
    found = eps.rollback_target(events)
    if found is None:
        return None
    event, spec = found
    return {"undoes": event.revision, "action": event.action, "restores": d.describe(spec)}
