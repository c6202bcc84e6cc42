"""The first admin token: made by ``prodml serve`` (or ``prodml ui``) when no identity exists.

As Jupyter does, a server that nobody configured still refuses anonymous changes: on its
first start it makes an admin token, writes it to ``$PRODML_HOME/admin-token`` readable by
the owner only (mode 0600), and prints where it is. Later starts reuse it while it is
active; once an admin token exists (made with ``prodml tokens create --role admin``), or
``PRODML_ADMIN_TOKEN`` is set, nothing is made.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from prodml.access.roles import Role
from prodml.access.tokens import create_token, identify, list_tokens
from prodml.store import Store

FILE_NAME = "admin-token"
LOCAL_ADMIN = "local-admin"


@dataclass(frozen=True)
class LocalAdmin:
    """Where the local admin token is, and whether this start made it."""

    path: Path
    created: bool


def ensure_local_admin(store: Store, home: Path, *, env_admin_token: str | None = None
                       ) -> LocalAdmin | None:
    """Make the local admin token when no admin identity exists; None when one does."""
    if env_admin_token:
        return None
    path = Path(home) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # servers started together in one home make one token, not one each
    with open(path.parent / f".{FILE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure(store, path)


def _ensure(store: Store, path: Path) -> LocalAdmin | None:
    if path.exists():
        found = identify(path.read_text().strip(), store=store)
        if found is not None and found.role is Role.admin:
            return LocalAdmin(path, created=False)
    if any(r.role == Role.admin.name for r in list_tokens(store=store)):
        return None
    made = create_token(LOCAL_ADMIN, Role.admin, created_by="prodml serve", store=store)
    write_secret(path, made.token)
    return LocalAdmin(path, created=True)


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable and writable by the owner only (0600), never
    world-readable even for an instant (the mode is set when the file is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
