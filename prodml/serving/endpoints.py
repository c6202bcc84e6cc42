"""Endpoints and their deployments in the store, with the full history of every change.

Every change is a compare-and-set on the endpoint's revision plus one ``deployment_events``
row (who, when, why, from, to) in the same transaction, so concurrent writers (several
server workers running canary checks, a person running ``prodml rollback``) never lose an
update, and any state can be restored from the history. On PostgreSQL the same transaction
announces the new revision (``NOTIFY``, see :mod:`prodml.serving.changes`): every writer of
the row calls :func:`~prodml.serving.changes.announce` next to its history row.

>>> from sklearn.dummy import DummyClassifier
>>> import prodml as pm, pandas as pd
>>> X = pd.DataFrame({"x": [0.0, 1.0]})
>>> _ = pm.models.register("ep", DummyClassifier().fit(X, [0, 1]), input_example=X)
>>> _ = pm.models.register("ep", DummyClassifier().fit(X, [0, 1]), input_example=X)
>>> deploy("ep", "ep/1").describe()
'ep/1'
>>> deploy("ep", "ep/2", strategy="canary", steps=[10, 100]).describe()
'canary ep/1 -> ep/2 at 10% (step 1/2)'
>>> rollback("ep", reason="drill").describe()
'ep/1'
>>> [e.action for e in history("ep")]
['rollback', 'deploy', 'deploy']
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select, update

from prodml.errors import InvalidInputError, NotFoundError, ProdmlError
from prodml.serving import deployment as d
from prodml.serving.changes import announce
from prodml.store import Store, db_now_ms, get_store, now_ms
from prodml.store import tables as t
from prodml.store.leases import replica_id

STRATEGIES = ("direct", "shadow", "canary", "blue-green")


class ConcurrentChangeError(ProdmlError):
    """Someone else changed the endpoint between our read and our write."""

    http_status = 409

    def __init__(self, endpoint: str, revision: int) -> None:
        super().__init__(f"endpoint {endpoint!r} changed since revision {revision}; retry",
                         field="revision", value=revision, rule="must be the current revision")


@dataclass(frozen=True)
class Endpoint:
    name: str
    spec: d.Node
    revision: int
    paused: bool
    fallback: str | None
    created_at: int
    updated_at: int
    # What the endpoint demands of whatever it serves (``endpoints.policy``): see
    # :func:`merge_policy`. Keys: require_blessing, pii, and the log's retention keys.
    policy: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return d.describe(self.spec) + (" [paused]" if self.paused else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec.to_dict(), "revision": self.revision,
                "paused": self.paused, "fallback": self.fallback, "policy": self.policy,
                "summary": self.describe(), "models": [leaf.model for leaf in
                                                       d.leaves(self.spec)],
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True)
class DeploymentEvent:
    id: int
    endpoint: str
    revision: int
    time: int
    actor: str
    action: str
    reason: str | None
    from_spec: dict[str, Any] | None
    to_spec: dict[str, Any] | None
    replica: str | None = None  # the process that made it, host:pid (None: before 0009)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "revision": self.revision,
                "time": self.time, "actor": self.actor, "replica": self.replica,
                "action": self.action, "reason": self.reason, "from": self.from_spec,
                "to": self.to_spec,
                "from_summary": _summary(self.from_spec), "to_summary": _summary(self.to_spec)}


def _summary(spec: dict[str, Any] | None) -> str | None:
    return d.describe(d.parse_spec(spec)) if spec else None


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def _row_to_endpoint(row: Any) -> Endpoint:
    return Endpoint(row.name, d.parse_spec(row.spec), row.revision, bool(row.paused),
                    row.fallback, row.created_at, row.updated_at, dict(row.policy or {}))


def get_endpoint(name: str, *, store: Store | None = None) -> Endpoint:
    store = store or get_store()
    with store.read() as conn:
        row = conn.execute(select(t.endpoints).where(t.endpoints.c.name == name)).first()
    if row is None:
        raise NotFoundError("endpoint", name, "deploy a model to it first (prodml deploy)")
    return _row_to_endpoint(row)


def list_endpoints(*, store: Store | None = None) -> list[Endpoint]:
    store = store or get_store()
    with store.read() as conn:
        rows = conn.execute(select(t.endpoints).order_by(t.endpoints.c.name)).all()
    return [_row_to_endpoint(r) for r in rows]


def revisions(*, store: Store | None = None) -> dict[str, int]:
    """Each endpoint's revision: the one cheap read a worker polls to notice changes."""
    store = store or get_store()
    with store.read() as conn:
        return dict(conn.execute(select(t.endpoints.c.name, t.endpoints.c.revision)).all())


def history(name: str, *, limit: int = 100, store: Store | None = None
            ) -> list[DeploymentEvent]:
    """The endpoint's changes, newest first."""
    store = store or get_store()
    with store.read() as conn:
        rows = conn.execute(select(t.deployment_events)
                            .where(t.deployment_events.c.endpoint == name)
                            .order_by(t.deployment_events.c.id.desc()).limit(limit)).all()
    if not rows:
        get_endpoint(name, store=store)  # raises NotFoundError for an unknown endpoint
    return [DeploymentEvent(r.id, r.endpoint, r.revision, r.time, r.actor, r.action, r.reason,
                            r.from_spec, r.to_spec, r.replica) for r in rows]


def change(name: str, transform: Callable[[Endpoint], tuple[d.Node, bool, str, str | None]],
           *, actor: str | None = None, expected_revision: int | None = None,
           policy: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
           store: Store | None = None) -> Endpoint:
    """Apply ``transform(endpoint) -> (spec, paused, action, reason)`` as one recorded change.

    ``policy`` holds policy keys to change with it (merged, see :func:`merge_policy`), or
    a function of the current policy giving them (run against the policy it replaces).
    With ``expected_revision`` the change applies only if nobody changed the endpoint since
    (else :class:`ConcurrentChangeError`); without it, it retries on a race. Every canary
    step the change starts is stamped in the same transaction, by the database's clock
    (:func:`~prodml.serving.deployment.stamp_steps`).
    """
    store = store or get_store()
    for _ in range(20):
        current = get_endpoint(name, store=store)
        if expected_revision is not None and current.revision != expected_revision:
            raise ConcurrentChangeError(name, expected_revision)
        spec, paused, action, reason = transform(current)
        merged = merge_policy(current.policy,
                              policy(current.policy) if callable(policy) else policy)
        now = now_ms()
        with store.write() as conn:
            spec = d.stamp_steps(current.spec, spec, db_now_ms(conn), current.revision + 1)
            done = conn.execute(update(t.endpoints)
                                .where(t.endpoints.c.name == name,
                                       t.endpoints.c.revision == current.revision)
                                .values(spec=spec.to_dict(), paused=paused,
                                        policy=merged or None,
                                        revision=current.revision + 1, updated_at=now))
            if done.rowcount == 1:
                conn.execute(t.deployment_events.insert().values(
                    endpoint=name, revision=current.revision + 1, time=now,
                    actor=actor or default_actor(), action=action, reason=reason,
                    from_spec=current.spec.to_dict(), to_spec=spec.to_dict(),
                    replica=replica_id()))
                announce(conn, name, current.revision + 1)
                return Endpoint(name, spec, current.revision + 1, paused, current.fallback,
                                current.created_at, now, merged)
        if expected_revision is not None:
            raise ConcurrentChangeError(name, expected_revision)
    raise ConcurrentChangeError(name, current.revision)


# -- the endpoint's policy ------------------------------------------------------------------
# ``endpoints.policy`` is one JSON object that several concerns share (require_blessing and
# pii here; retention, archive and keep_labelled for the prediction log): every writer
# merges its own keys into what is there, and never drops a key it does not own.

def merge_policy(current: Mapping[str, Any] | None, updates: Mapping[str, Any] | None
                 ) -> dict[str, Any]:
    """``current`` with ``updates`` applied: a key given ``None`` is removed, others set.

    >>> merge_policy({"retention": "90d", "pii": ["email"]},
    ...              {"pii": ["email", "phone"], "archive": None})
    {'retention': '90d', 'pii': ['email', 'phone']}
    """
    merged = dict(current or {})
    for key, value in (updates or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def update_policy(name: str, updates: Mapping[str, Any], *, reason: str | None = None,
                  actor: str | None = None, override_reason: str | None = None,
                  allow_override: bool = True, store: Store | None = None) -> Endpoint:
    """Change policy keys of an endpoint (``None`` removes a key) as a recorded change.

    Lowering ``require_blessing`` where the endpoint requires it is an override: it needs
    ``override_reason`` (and ``allow_override``, which the HTTP layer sets from the
    caller's role), and the reason is kept in the history.
    """
    store = store or get_store()

    def apply(ep: Endpoint) -> tuple[d.Node, bool, str, str | None]:
        note = _policy_override(name, ep.policy, updates, override_reason, allow_override)
        return ep.spec, ep.paused, "policy", _with_note(reason, note)
    return change(name, apply, actor=actor, policy=_checked_policy(updates), store=store)


def marked_pii(schema: Any) -> frozenset[str]:
    """The columns a data schema marks as personal data."""
    if schema is None:
        return frozenset()
    return frozenset(n for n, rules in schema.columns.items() if rules.pii)


def policy_pii(policy: Mapping[str, Any] | None) -> frozenset[str]:
    """The columns an operator marked as personal data on the endpoint itself."""
    return frozenset((policy or {}).get("pii") or ())


def pii_columns(endpoint: Endpoint | str, *, store: Store | None = None) -> frozenset[str]:
    """The endpoint's PII set: its policy's ``pii`` and every column that any version it
    serves marks as PII, on every route (primary, canary, shadow, either colour). Each of
    these inputs is stored hashed whichever version answered."""
    from prodml.tracking import registry

    store = store or get_store()
    if isinstance(endpoint, str):
        endpoint = get_endpoint(endpoint, store=store)
    columns = set(policy_pii(endpoint.policy))
    for ref in {leaf.model for leaf in d.leaves(endpoint.spec)}:
        columns |= marked_pii(registry.get(ref, store=store).schema)
    return frozenset(columns)


def blessing_required(policy: Mapping[str, Any] | None) -> bool:
    """Whether a new version needs a blessing here: the endpoint's ``require_blessing``,
    or the server-wide ``PRODML_REQUIRE_BLESSING`` (which an endpoint cannot lower)."""
    from prodml.config import Settings

    return bool((policy or {}).get("require_blessing")) or Settings.from_env().require_blessing


class OverrideNotAllowedError(ProdmlError):
    """An override of the deployment policy asked for by a caller who may not (HTTP 403)."""

    http_status = 403

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"endpoint {endpoint!r}: only an admin may override its blessing "
                         "requirement", field="override_blessing", value=None,
                         rule="only an admin may override")


def _checked_policy(updates: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(updates or {})
    if "pii" in out and out["pii"] is not None:
        out["pii"] = sorted(_pii_list(out["pii"]))
    if "require_blessing" in out and out["require_blessing"] is not None:
        if not isinstance(out["require_blessing"], bool):
            raise InvalidInputError("require_blessing", out["require_blessing"],
                                    "must be true or false")
    return out


def _pii_list(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple, set, frozenset)) or len(value) > 1000 or not all(
            isinstance(v, str) and 0 < len(v) <= 255 for v in value):
        raise InvalidInputError("pii", value if isinstance(value, (str, list)) else
                                type(value).__name__, "must be a list of column names")
    return frozenset(value)


def _check_override(override_reason: Any) -> None:
    if override_reason is not None and (not isinstance(override_reason, str)
                                        or not override_reason.strip()
                                        or len(override_reason) > 1000):
        raise InvalidInputError("override_blessing", override_reason,
                                "must be the reason for the override (1 to 1000 characters)")


def _policy_override(name: str, current: Mapping[str, Any], updates: Mapping[str, Any] | None,
                     override_reason: str | None, allow_override: bool) -> str | None:
    """The history note of an override when ``updates`` lower the blessing requirement."""
    if not (current.get("require_blessing") and updates and "require_blessing" in updates
            and not updates["require_blessing"]):
        return None
    _check_override(override_reason)
    if override_reason is None:
        from prodml.tracking.evaluations import NotBlessedError

        raise NotBlessedError(f"endpoint {name!r} requires a blessing; lifting the "
                              "requirement is an override: give its reason",
                              field="require_blessing", value=False,
                              rule="lifting the requirement needs an override")
    if not allow_override:
        raise OverrideNotAllowedError(name)
    return f"require_blessing lifted (an override): {override_reason}"


def check_blessings(spec: d.Node, current: d.Node | None, policy: Mapping[str, Any], *,
                    endpoint: str, override_reason: str | None = None,
                    allow_override: bool = True, store: Store | None = None) -> str | None:
    """Refuse (:class:`~prodml.tracking.evaluations.NotBlessedError`, HTTP 409) a tree that
    would serve a version without a blessing where the policy requires one.

    Every version the new tree serves on any route is checked, except those the current
    tree already serves (they were let in before; refusing them would also refuse the
    blessed version that replaces them). With ``override_reason`` (and ``allow_override``:
    the route layer sets it from the caller's role) the deployment goes ahead, and the
    returned note, naming what was overridden and why, goes into the event's reason.
    """
    from prodml.tracking.evaluations import NotBlessedError, require_blessed

    _check_override(override_reason)
    if not blessing_required(policy):
        return None
    serving = {leaf.model for leaf in d.leaves(current)} if current is not None else set()
    refused: list[NotBlessedError] = []
    for ref in dict.fromkeys(leaf.model for leaf in d.leaves(spec)):
        if ref in serving:
            continue
        try:
            require_blessed(ref, store=store)
        except NotBlessedError as exc:
            refused.append(exc)
    if not refused:
        return None
    if override_reason is None:
        first = refused[0]
        more = f" (and {len(refused) - 1} more version(s))" if len(refused) > 1 else ""
        first.message = f"endpoint {endpoint!r} requires a blessing: {first.message}{more}"
        first.args = (first.message,)
        raise first
    if not allow_override:
        raise OverrideNotAllowedError(endpoint)
    return ("blessing overridden (" + "; ".join(e.message for e in refused)
            + f"): {override_reason}")


def _with_note(reason: str | None, note: str | None) -> str | None:
    return f"{reason} [{note}]" if reason and note else (reason or note)


def resolve_models(spec: d.Node, *, store: Store | None = None) -> d.Node:
    """Pin every leaf to ``name/version`` (``loan@champion`` resolves now, not per request)."""
    from prodml.tracking import registry

    store = store or get_store()
    pinned = spec
    for leaf in list(d.leaves(spec)):
        version = registry.get(leaf.model, store=store)
        if version.ref != leaf.model:
            pinned = d.replace(pinned, leaf, d.Direct(model=version.ref))
    return pinned


def plan(current: d.Node | None, model: str, strategy: str = "direct", *,
         percent: float = 100.0, steps: list[float] | None = None,
         step_every_requests: int | None = None, step_every_seconds: float | None = None,
         routing_key: str | None = None, guards: dict[str, Any] | None = None,
         mode: str | None = None, threshold: float | None = None,
         smoke: list[dict[str, Any]] | None = None) -> d.Node:
    """The tree that ``prodml deploy ENDPOINT MODEL --strategy ...`` asks for.

    The new model goes *beside* what serves now: as the only version (direct), as a mirror
    (shadow), as a canary candidate against the current tree, or as the idle colour of a
    blue-green pair. An automation mode wraps the result.
    """
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise InvalidInputError("strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
    _check_options(percent=percent, steps=steps, step_every_requests=step_every_requests,
                   step_every_seconds=step_every_seconds, routing_key=routing_key,
                   guards=guards, mode=mode, threshold=threshold, smoke=smoke)
    wrapper = d.find(current, d.Automation) if current is not None else None
    serving = _unwrap(current)
    new: d.Node = d.Direct(model=model)
    if strategy != "direct" and serving is None:
        raise InvalidInputError("strategy", strategy,
                                "needs a model already serving the endpoint: deploy one "
                                "with --strategy direct first")
    if strategy == "shadow":
        assert serving is not None
        mirror = _validated(lambda: d.Mirror(node=new, percent=percent))
        if isinstance(serving, d.Shadow):
            new = serving.model_copy(update={"mirrors": (*serving.mirrors, mirror)})
        else:
            new = d.Shadow(primary=serving, mirrors=(mirror,))
    elif strategy == "canary":
        assert serving is not None
        primary = serving.primary if isinstance(serving, d.Shadow) else serving
        options: dict[str, Any] = {"primary": primary, "candidate": new,
                                   "step_every_requests": step_every_requests,
                                   "step_every_seconds": step_every_seconds,
                                   "routing_key": routing_key}  # its clock: on write
        if steps:
            options["steps"] = tuple(float(s) for s in steps)
        if guards:
            if not isinstance(guards, dict):
                raise InvalidInputError("guards", guards, "must be a mapping of guard to bound")
            options["guards"] = _validated(lambda: d.Guards(**guards), prefix="guards")
        new = _validated(lambda: d.Canary(**options))
    elif strategy == "blue-green":
        assert serving is not None
        live = serving.live if isinstance(serving, d.BlueGreen) else serving
        new = _validated(lambda: d.BlueGreen(blue=live, green=d.Direct(model=model),
                                             active="blue", smoke=tuple(smoke or ())))
    if mode is not None or wrapper is not None:
        mode = mode or wrapper.mode  # type: ignore[union-attr]
        threshold = threshold if threshold is not None else (
            wrapper.threshold if wrapper is not None else 0.8)
        new = _validated(lambda: d.Automation(node=new, mode=mode, threshold=threshold))
    return new


def _check_options(**options: Any) -> None:
    """Refuse an option of the wrong JSON type (the HTTP API hands them over as sent), naming
    it, before the tree is built: ``steps: "abc"`` is a 400, not a failed ``float()``."""
    for name, value in options.items():
        if value is None:
            continue
        if name in ("percent", "step_every_seconds", "threshold"):
            ok = _is_number(value)
        elif name == "step_every_requests":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif name == "steps":
            ok = isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)
        elif name in ("routing_key", "mode"):
            ok = isinstance(value, str)
        elif name == "guards":
            ok = isinstance(value, dict)
        else:  # smoke
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value)
        if not ok:
            raise InvalidInputError(name, value, _OPTION_TYPES[name])
    mode = options.get("mode")
    if mode is not None and mode not in d.AUTOMATION_MODES:
        raise InvalidInputError("mode", mode, "must be one of " + ", ".join(d.AUTOMATION_MODES))


_OPTION_TYPES = {
    "percent": "must be a number (a percentage)", "threshold": "must be a number in [0, 1]",
    "step_every_seconds": "must be a number of seconds",
    "step_every_requests": "must be a whole number of requests",
    "steps": "must be a list of rising percentages, e.g. [5, 25, 50, 100]",
    "routing_key": "must be the name of an input field", "mode": "must be text",
    "guards": "must be a mapping of guard to bound, e.g. {\"max_error_rate\": 0.02}",
    "smoke": "must be a list of records (objects of field values)"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validated(build: Callable[[], Any], prefix: str | None = None) -> Any:
    from pydantic import ValidationError

    try:
        return build()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in (prefix, *first["loc"]) if p) or "deployment"
        raise InvalidInputError(where, first.get("input"), first["msg"]) from None


def _unwrap(node: d.Node | None) -> d.Node | None:
    return node.node if isinstance(node, d.Automation) else node


def deploy(name: str, model: str | d.Node | dict[str, Any], strategy: str = "direct", *,
           reason: str | None = None, actor: str | None = None,
           fallback: str | None = None, pii: Iterable[str] | str | None = None,
           require_blessing: bool | None = None, override_reason: str | None = None,
           allow_override: bool = True, store: Store | None = None, **options: Any
           ) -> Endpoint:
    """Put a model (or a whole deployment tree) behind endpoint ``name``.

    ``model`` is a reference (``loan@champion``) placed by ``strategy`` (see :func:`plan`)
    or a full tree (a node or its dict form). References are pinned to versions now.

    Policy (kept on the endpoint for later deployments too): ``pii`` adds columns to those
    the endpoint stores hashed, whatever its versions mark; ``require_blessing`` makes every
    version new to the endpoint need a passing gate (see :func:`check_blessings`), which
    ``override_reason`` overrides, on the record. ``allow_override`` is the hook for the
    caller's role: the HTTP layer passes False for a caller who may not override.
    """
    from prodml.serving.fallback import compile_rule

    store = store or get_store()
    if reason is not None and not isinstance(reason, str):
        raise InvalidInputError("reason", reason, "must be text")
    if fallback is not None and not isinstance(fallback, str):
        raise InvalidInputError("fallback", fallback, "must be a rule written as text")
    if fallback is not None:
        compile_rule(fallback)  # refuse a broken rule before anything is written
    _check_override(override_reason)
    try:
        current: Endpoint | None = get_endpoint(name, store=store)
    except NotFoundError:
        current = None
    if isinstance(model, str):
        pinned_ref = resolve_models(d.Direct(model=model), store=store)
        spec = plan(current.spec if current else None, pinned_ref.model, strategy,  # type: ignore[union-attr]
                    **options)
    else:
        spec = d.parse_spec(model)
    spec = resolve_models(spec, store=store)
    # The versions' own marks stay with the endpoint: a later version that marks nothing
    # (or a deployer who forgot) cannot bring a column's values back into the log in clear.
    marks = (_pii_list(pii) if pii is not None else frozenset()) | _versions_pii(spec, store)
    if require_blessing is not None:
        _checked_policy({"require_blessing": require_blessing})

    def updates(before: Mapping[str, Any]) -> dict[str, Any]:
        """The policy keys this deployment sets: PII marks add to the endpoint's own."""
        out: dict[str, Any] = {}
        if marks - policy_pii(before):
            out["pii"] = sorted(policy_pii(before) | marks)
        if require_blessing is not None:
            out["require_blessing"] = require_blessing
        return out

    def admit(ep: Endpoint | None) -> str | None:
        """The history note of what was overridden; raises if the tree is refused. A
        requirement this deployment lifts still holds for the deployment itself."""
        before = ep.policy if ep is not None else {}
        required = {"require_blessing": bool(before.get("require_blessing")
                                             or require_blessing)}
        notes = [_policy_override(name, before, updates(before), override_reason,
                                  allow_override),
                 check_blessings(spec, ep.spec if ep is not None else None, required,
                                 endpoint=name, override_reason=override_reason,
                                 allow_override=allow_override, store=store)]
        return "; ".join(n for n in notes if n) or None

    if current is None:
        _check_name(name)
        note = admit(None)
        now = now_ms()
        from sqlalchemy.exc import IntegrityError
        try:
            with store.write() as conn:
                first = d.stamp_steps(None, spec, db_now_ms(conn), 1)
                conn.execute(t.endpoints.insert().values(
                    name=name, spec=first.to_dict(), revision=1, paused=False,
                    fallback=fallback, policy=updates({}) or None, created_at=now,
                    updated_at=now))
                conn.execute(t.deployment_events.insert().values(
                    endpoint=name, revision=1, time=now, actor=actor or default_actor(),
                    action="deploy", reason=_with_note(reason, note), from_spec=None,
                    to_spec=first.to_dict(),
                    replica=replica_id()))
                announce(conn, name, 1)
            return get_endpoint(name, store=store)
        except IntegrityError:  # created concurrently: fall through to a recorded change
            pass
    deployed = change(name, lambda ep: (spec, ep.paused, "deploy", _with_note(reason,
                                                                              admit(ep))),
                      actor=actor, policy=updates, store=store)
    if fallback is not None:  # after: a refused deployment leaves the rule as it was
        deployed = set_fallback(name, fallback, store=store, actor=actor)
    return deployed


def _versions_pii(spec: d.Node, store: Store) -> frozenset[str]:
    from prodml.tracking import registry

    return frozenset().union(*(marked_pii(registry.get(ref, store=store).schema)
                               for ref in {leaf.model for leaf in d.leaves(spec)}))


def _check_name(name: str) -> None:
    from prodml.tracking.registry import NAME_RULE

    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        raise InvalidInputError("endpoint", name, "must start with a letter or digit and hold "
                                "only letters, digits, '_', '-' and '.' (255 at most)")


# The changes a rollback undoes: those that move traffic on purpose. A canary's steps are
# part of its deploy (undoing one goes back to before the canary); pause, resume, policy
# and fallback changes, failed checks and rollbacks themselves are not undone (so a second
# rollback restores the same tree again rather than walking forward).
UNDOABLE = ("deploy", "promote", "switch")


def rollback_target(events: list[DeploymentEvent]) -> tuple[DeploymentEvent, d.Node] | None:
    """The change a rollback undoes (the newest deploy, promote or switch, by a person or the
    canary controller) and the tree it restores: the tree before that change with every
    canary replaced by its primary, so a rolled-back canary never runs (or is promoted)
    again. ``events`` newest first, as :func:`history` gives them."""
    event = next((e for e in events if e.action in UNDOABLE and e.from_spec), None)
    if event is None:
        return None
    return event, d.without_canaries(d.parse_spec(event.from_spec))


def rollback(name: str, *, reason: str | None = None, actor: str | None = None,
             store: Store | None = None) -> Endpoint:
    """Return the endpoint to the primary it had before its last deploy, promote or switch
    (see :func:`rollback_target`): after a promote, the canary's old primary, not the
    canary; after a running canary's deploy or steps, the tree before the canary; after a
    blue-green switch, the other colour. To run a canary again, deploy it again."""
    store = store or get_store()

    def back(ep: Endpoint) -> tuple[d.Node, bool, str, str | None]:
        found = rollback_target(history(name, limit=1000, store=store))
        if found is None:
            raise InvalidInputError("endpoint", name,
                                    "has no earlier deployment to roll back to")
        return found[1], ep.paused, "rollback", reason
    return change(name, back, actor=actor, store=store)


def switch(name: str, *, reason: str | None = None, actor: str | None = None,
           store: Store | None = None) -> Endpoint:
    """Flip a blue-green pair: the idle colour takes all traffic, the other stays loaded."""
    def flip(ep: Endpoint) -> tuple[d.Node, bool, str, str | None]:
        pair = d.find(ep.spec, d.BlueGreen)
        if pair is None:
            raise InvalidInputError("endpoint", name, "has no blue-green deployment to switch")
        flipped = pair.model_copy(update={"active": "green" if pair.active == "blue"
                                          else "blue"})
        return d.replace(ep.spec, pair, flipped), ep.paused, "switch", reason
    return change(name, flip, actor=actor, store=store)


def set_paused(name: str, paused: bool, *, reason: str | None = None,
               actor: str | None = None, store: Store | None = None) -> Endpoint:
    """Pause (the fallback rule answers) or resume the endpoint's models."""
    return change(name, lambda ep: (ep.spec, paused, "pause" if paused else "resume", reason),
                  actor=actor, store=store)


def set_fallback(name: str, rule: str | None, *, actor: str | None = None,
                 store: Store | None = None) -> Endpoint:
    from prodml.serving.fallback import compile_rule

    store = store or get_store()
    if rule is not None:
        compile_rule(rule)
    current = get_endpoint(name, store=store)
    now = now_ms()
    with store.write() as conn:
        conn.execute(update(t.endpoints).where(t.endpoints.c.name == name)
                     .values(fallback=rule, revision=t.endpoints.c.revision + 1, updated_at=now))
        conn.execute(t.deployment_events.insert().values(
            endpoint=name, revision=current.revision + 1, time=now,
            actor=actor or default_actor(), action="fallback", reason=rule,
            from_spec=current.spec.to_dict(), to_spec=current.spec.to_dict(),
            replica=replica_id()))
        announce(conn, name, current.revision + 1)
    return get_endpoint(name, store=store)


def promote(name: str, *, reason: str | None = None, actor: str | None = None,
            store: Store | None = None) -> Endpoint:
    """End a running canary early in the candidate's favour: it takes all traffic."""
    def finish(ep: Endpoint) -> tuple[d.Node, bool, str, str | None]:
        canary = d.find(ep.spec, d.Canary)
        if canary is None:
            raise InvalidInputError("endpoint", name, "has no running canary to promote")
        return d.replace(ep.spec, canary, canary.candidate), ep.paused, "promote", reason
    return change(name, finish, actor=actor, store=store)
