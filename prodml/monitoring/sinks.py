"""Where an alert goes once stored: sinks that tell someone, actions that do something.

Sinks (a monitor's ``sinks:``) get both transitions, ``firing`` and ``resolved``:

- ``log``: one line on the ``prodml.monitoring`` logger (warning when firing, info when
  resolved; critical alerts at error level);
- ``webhook``: a JSON POST with a timeout, shaped as Slack's incoming webhooks expect
  (``text`` plus ``attachments``), with the whole alert under ``alert`` for other receivers.

Actions (a rule's ``actions:``) run once, when the alert fires:

- ``pause``: pause the endpoint, so its fallback rule answers;
- ``rollback``: roll the endpoint back to the deployment before the last one;
- ``callable:module:function``: call ``function(alert)``;
- ``pipeline:file.py:name`` or ``pipeline:module:name``: run that pipeline for the alert (see
  :mod:`prodml.pipelines.triggers`);
- a name registered with :func:`register_action` (the pipelines issue registers
  ``retrain`` this way): call it with the alert.

Nothing here raises into the runner: each sink and action reports ``{"sink"|"action", "ok",
"detail", "at"}`` and the runner stores the reports on the alert.

>>> register_action("note", lambda alert: f"noted {alert.rule}")
>>> registered_actions()
['note']
>>> unregister_action("note")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prodml.monitoring.spec import MonitorSpec, SinkSpec, resolve_callable
from prodml.monitoring.store import Alert
from prodml.store import Store, now_ms

log = logging.getLogger("prodml.monitoring")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
COLORS = {"firing": {"info": "#439fe0", "warning": "#f2c744", "critical": "#d00000"},
          "resolved": "#2eb886"}
ActionFn = Callable[[Alert], Any]
_ACTIONS: dict[str, ActionFn] = {}


def register_action(name: str, fn: ActionFn) -> None:
    """Make ``fn(alert)`` available to alert rules as ``actions: [name]``."""
    from prodml.monitoring.spec import ACTION_NAME

    if not ACTION_NAME.match(name) or name in ("pause", "rollback"):
        from prodml.errors import InvalidInputError
        raise InvalidInputError("action", name, "must be a plain name other than pause and "
                                "rollback (letters, digits, _ . -)")
    if not callable(fn):
        from prodml.errors import InvalidInputError
        raise InvalidInputError("action", name, "needs a callable taking the alert")
    _ACTIONS[name] = fn


def unregister_action(name: str) -> None:
    _ACTIONS.pop(name, None)


def registered_actions() -> list[str]:
    return sorted(_ACTIONS)


# -- delivering ------------------------------------------------------------------------------
def deliver(alert: Alert, status: str, spec: MonitorSpec, *, actions: list[str] = (),  # type: ignore[assignment]
            store: Store | None = None) -> list[dict[str, Any]]:
    """Send one transition of ``alert`` to the monitor's sinks; on ``firing``, run the rule's
    actions. Returns one report per sink and action; never raises."""
    reports = []
    for sink in spec.sinks:
        if status not in sink.on or SEVERITY_RANK[alert.severity] < SEVERITY_RANK[
                sink.min_severity]:
            continue
        reports.append(_guarded("sink", sink.type, lambda s=sink: _send(s, alert, status)))
    if status == "firing":
        for action in actions:
            reports.append(_guarded("action", action,
                                    lambda a=action: _act(a, alert, store)))
    return reports


def _guarded(kind: str, name: str, fn: Callable[[], str]) -> dict[str, Any]:
    try:
        detail, ok = fn(), True
    except Exception as exc:  # noqa: BLE001 - a sink's failure is reported, never raised
        detail, ok = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500], False
        log.warning("alert %s %s failed: %s", kind, name, detail)
    return {kind: name, "ok": ok, "detail": detail, "at": now_ms()}


def _send(sink: SinkSpec, alert: Alert, status: str) -> str:
    if sink.type == "log":
        level = (logging.ERROR if alert.severity == "critical" else logging.WARNING) \
            if status == "firing" else logging.INFO
        log.log(level, "%s", headline(alert, status))
        return "logged"
    assert sink.url is not None
    body = payload(alert, status)
    try:
        import httpx
    except ImportError:  # httpx is a development dependency: the standard library will do
        return _post_with_urllib(sink.url, body, sink.timeout_s)
    response = httpx.post(sink.url, json=body, timeout=sink.timeout_s)
    if response.status_code >= 400:
        raise RuntimeError(f"the webhook answered {response.status_code}: "
                           f"{response.text[:200]}")
    return f"posted ({response.status_code})"


def _post_with_urllib(url: str, body: dict[str, Any], timeout: float) -> str:
    import urllib.request

    import orjson

    request = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return f"posted ({response.status})"  # 4xx/5xx raise HTTPError


def headline(alert: Alert, status: str) -> str:
    word = "FIRING" if status == "firing" else "RESOLVED"
    return (f"[{word}] [{alert.severity}] monitor {alert.monitor} (endpoint {alert.endpoint}): "
            f"{alert.message}")


def payload(alert: Alert, status: str) -> dict[str, Any]:
    """The webhook's JSON: Slack-compatible ``text`` and ``attachments``, plus ``alert``."""
    fields = [("series", alert.series), ("value", _g(alert.value)),
              ("bounds", f"[{_g(alert.lower)}, {_g(alert.upper)}]"),
              ("window", f"#{alert.window_index}"), ("breaches", str(alert.breaches)),
              ("alert", f"#{alert.id}")]
    if alert.finding and alert.finding.get("kind") not in (None, "none"):
        fields.append(("change", str(alert.finding["kind"])))
    color = COLORS["resolved"] if status == "resolved" else COLORS["firing"][alert.severity]
    return {
        "text": headline(alert, status),
        "attachments": [{
            "color": color, "title": f"{alert.rule} ({alert.endpoint})",
            "text": alert.message,
            "fields": [{"title": k, "value": v, "short": True} for k, v in fields],
            "ts": (alert.resolved_at if status == "resolved" and alert.resolved_at
                   else alert.fired_at) // 1000}],
        "status": status,
        "alert": alert.to_dict(),
    }


def _act(action: str, alert: Alert, store: Store | None) -> str:
    from prodml.serving import endpoints as eps

    actor = f"monitor:{alert.monitor}"
    reason = f"alert #{alert.id}: {alert.message}"[:1000]
    if action == "pause":
        if eps.get_endpoint(alert.endpoint, store=store).paused:
            return "already paused"
        endpoint = eps.set_paused(alert.endpoint, True, reason=reason, actor=actor,
                                  store=store)
        return f"paused {endpoint.name} (revision {endpoint.revision})"
    if action == "rollback":
        endpoint = eps.rollback(alert.endpoint, reason=reason, actor=actor, store=store)
        return f"rolled back to {endpoint.describe()} (revision {endpoint.revision})"
    if action.startswith("pipeline:"):
        # Imported on use: pipelines sit beside monitoring, and only a rule naming one loads it.
        from prodml.pipelines.triggers import run_target
        return run_target(action, alert, store)
    if action.startswith("callable:"):
        fn = resolve_callable(action.removeprefix("callable:"), "actions")
    elif action in _ACTIONS:
        fn = _ACTIONS[action]
    else:
        raise LookupError(f"no action registered as {action!r} (register_action)")
    # an action that says so (a pipeline's) runs on the monitor's own store
    result = fn(alert, store=store) if getattr(fn, "takes_store", False) else fn(alert)
    return "done" if result is None else str(result)[:500]


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
