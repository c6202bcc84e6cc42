"""Identities: named tokens with a role, kept in the store as SHA-256 digests only.

A token is ``pml_`` and 256 random bits (URL-safe base64). It is shown once, when it is
made; the store keeps its digest and its first characters, so a leaked database gives no
working token. SHA-256 is enough for values this random (a slow password hash protects
guessable secrets, which these are not).

>>> from prodml.store import open_store
>>> import tempfile, os
>>> home = tempfile.mkdtemp()
>>> store = open_store(f"sqlite:///{home}/p.db", f"{home}/artifacts")
>>> made = create_token("ci-bot", "deployer", created_by="ana", store=store)
>>> made.token.startswith("pml_"), made.record.role
(True, 'deployer')
>>> identify(made.token, store=store).name
'ci-bot'
>>> [r.name for r in revoke_token("ci-bot", by="ana", store=store)]
['ci-bot']
>>> identify(made.token, store=store) is None
True
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select, update

from prodml.access.roles import Role
from prodml.errors import InvalidInputError, NotFoundError
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t

TOKEN_PREFIX = "pml_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


@dataclass(frozen=True)
class Identity:
    """Who is calling: a token's name and role (``token_id`` None for the env admin)."""

    name: str
    role: Role
    token_id: str | None = None

    def may(self, role: Role) -> bool:
        return self.role >= role


@dataclass(frozen=True)
class TokenRecord:
    """A stored token, without its secret."""

    id: str
    name: str
    role: str
    prefix: str
    created_at: int
    created_by: str
    revoked_at: int | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``token`` is the secret, shown this once."""

    token: str
    record: TokenRecord

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, **self.record.to_dict()}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidInputError("name", name, "must be 1-128 letters, digits or _.@+- "
                                "starting with a letter or digit")
    return name


def create_token(name: str, role: str | Role, *, created_by: str,
                 store: Store | None = None) -> NewToken:
    """Make a token for ``name`` with ``role``; the secret is in the result only."""
    name, role = check_name(name), Role.parse(role)
    store = store or get_store()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(id=uuid.uuid4().hex, name=name, role=role.name,
                         prefix=token[:len(TOKEN_PREFIX) + 6], created_at=now_ms(),
                         created_by=created_by)
    with store.write() as conn:
        conn.execute(t.access_tokens.insert().values(
            id=record.id, name=record.name, role=record.role, token_sha256=digest(token),
            prefix=record.prefix, created_at=record.created_at, created_by=created_by))
    return NewToken(token, record)


def list_tokens(*, include_revoked: bool = False, store: Store | None = None
                ) -> list[TokenRecord]:
    """Every token (active only, unless ``include_revoked``), oldest first."""
    store = store or get_store()
    query = select(*_RECORD_COLUMNS).order_by(t.access_tokens.c.created_at)
    if not include_revoked:
        query = query.where(t.access_tokens.c.revoked_at.is_(None))
    with store.read() as conn:
        return [TokenRecord(**row._mapping) for row in conn.execute(query)]


def revoke_token(name_or_id: str, *, by: str, store: Store | None = None
                 ) -> list[TokenRecord]:
    """Revoke the active tokens with this id or name; servers refuse them within seconds."""
    store = store or get_store()
    c = t.access_tokens.c
    now = now_ms()
    with store.write() as conn:
        ids = [row.id for row in conn.execute(
            select(c.id).where(c.revoked_at.is_(None),
                               (c.id == name_or_id) | (c.name == name_or_id)))]
        if not ids:
            raise NotFoundError("token", name_or_id, "no active token has this name or id "
                                "(prodml tokens list)")
        conn.execute(update(t.access_tokens).where(c.id.in_(ids))
                     .values(revoked_at=now, revoked_by=by))
        rows = conn.execute(select(*_RECORD_COLUMNS).where(c.id.in_(ids))).all()
    return [TokenRecord(**row._mapping) for row in rows]


def identify(token: str, *, store: Store | None = None) -> Identity | None:
    """The active identity holding ``token``, or None."""
    store = store or get_store()
    c = t.access_tokens.c
    with store.read() as conn:
        row = conn.execute(select(c.id, c.name, c.role).where(
            c.token_sha256 == digest(token), c.revoked_at.is_(None))).first()
    return None if row is None else Identity(row.name, Role[row.role], row.id)


class TokenVerifier:
    """Identifies tokens for a server: every active digest held in memory, read again from
    the store at most every ``ttl`` seconds, so a revoked token is refused within seconds in
    every worker without a query per request; a token not held yet (made a moment ago) is
    looked up by its digest at once, at most ``max_lookups`` times a second, so a flood of
    made-up tokens costs the store a few queries a second, not one each.

    ``env_admin_token`` is ``PRODML_ADMIN_TOKEN``: an admin identity set by the server's
    environment rather than the store, compared in constant time.
    """

    def __init__(self, store: Store, *, env_admin_token: str | None = None,
                 ttl: float = 2.0, max_lookups: int = 20) -> None:
        self.store = store
        self.env_admin = env_admin_token or None
        self.ttl = ttl
        self.max_lookups = max_lookups
        self._lookup_second, self._lookups = 0, 0
        self._known: dict[str, Identity] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def identify(self, token: str) -> Identity | None:
        if self.env_admin is not None and secrets.compare_digest(
                token.encode("utf-8", "surrogatepass"), self.env_admin.encode()):
            return Identity("admin (PRODML_ADMIN_TOKEN)", Role.admin)
        key = digest(token)
        if time.monotonic() - self._loaded_at > self.ttl:
            self._reload()
        found = self._known.get(key)
        if found is None and self._may_look_up():
            found = identify(token, store=self.store)
            if found is not None:
                self._known = {**self._known, key: found}
        return found

    def _may_look_up(self) -> bool:
        second = int(time.monotonic())
        if second != self._lookup_second:
            self._lookup_second, self._lookups = second, 0
        self._lookups += 1
        return self._lookups <= self.max_lookups

    def _reload(self) -> None:
        with self._lock:
            c = t.access_tokens.c
            with self.store.read() as conn:
                rows = conn.execute(select(c.token_sha256, c.id, c.name, c.role)
                                    .where(c.revoked_at.is_(None))).all()
            self._known = {r.token_sha256: Identity(r.name, Role[r.role], r.id) for r in rows}
            self._loaded_at = time.monotonic()


_RECORD_COLUMNS = (t.access_tokens.c.id, t.access_tokens.c.name, t.access_tokens.c.role,
                   t.access_tokens.c.prefix, t.access_tokens.c.created_at,
                   t.access_tokens.c.created_by, t.access_tokens.c.revoked_at,
                   t.access_tokens.c.revoked_by)

