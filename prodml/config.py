"""Settings from the environment (``PRODML_*``) with defaults under the working directory.

- ``PRODML_HOME``: folder for the embedded store and artifacts (default ``./.prodml``).
- ``PRODML_DATABASE_URL``: SQLAlchemy URL; default ``sqlite:///$PRODML_HOME/prodml.db``.
  ``postgresql+psycopg://user@host:port/db`` uses PostgreSQL.
- ``PRODML_ARTIFACTS``: fsspec location for artifacts (default ``$PRODML_HOME/artifacts``).
- ``PRODML_ADMIN_TOKEN``: an admin token set by the environment (besides stored tokens).
- ``PRODML_ALLOWED_HOSTS``: host names the server answers besides loopback ones (comma
  separated; ``*`` for any, behind a proxy that checks Host).
- ``PRODML_ALLOWED_ORIGINS``: other origins whose pages may change state (comma separated).
- ``PRODML_PREDICT_ACCESS`` / ``PRODML_READ_ACCESS``: ``open`` (default) or ``token``.
- ``PRODML_FALLBACK_ALLOW``: the ``module:function`` fallback rules this process may import,
  comma-separated; ``module:*`` allows every public function defined in that module. Empty
  (the default): no fallback rule imports anything, only expressions are accepted.
  ``prodml serve --allow-fallback`` adds to it.
- ``PRODML_FALLBACK_TIMEOUT_MS``: time a fallback rule may take per record (default 50).
- ``PRODML_DRAIN_TIMEOUT``: seconds a version being replaced (a swap, a shutdown on
  SIGTERM) may take to answer the requests it holds before they fail with a 503 (default 30).
- ``PRODML_REQUIRE_BLESSING``: ``1`` makes every endpoint refuse a version without a
  passing gate (as if deployed with ``--require-blessing``); default off.
- ``PRODML_POLL_INTERVAL``: seconds between a server's reads of the endpoints' revisions
  (default 0.5); the fallback where changes are not announced.
- ``PRODML_NOTIFY``: on PostgreSQL, each server listens for announced endpoint changes
  (``LISTEN/NOTIFY``) and switches at once; ``0`` leaves it to polling (default ``1``).
- ``PRODML_NOTIFY_URL``: the database URL that listening connection uses (default
  ``PRODML_DATABASE_URL``): PostgreSQL itself or a session-mode pool where the store's URL
  is a PgBouncer in transaction mode, which cannot hold a ``LISTEN``.
- ``PRODML_DB_POOL_SIZE`` / ``PRODML_DB_MAX_OVERFLOW`` / ``PRODML_DB_POOL_TIMEOUT``: a
  PostgreSQL store's connection pool per process: connections kept open (default 5), extra
  ones opened under load and closed after (default 5), seconds a request waits for a free
  connection before failing (default 30). SQLite ignores them. See ``docs/store.md``.
- ``PRODML_CONTROLLER_LEASE_S``: how long the replica that runs the canary controller holds
  the job without renewing it (default 5): another replica takes over within about that
  long after the controller dies.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from prodml.errors import InvalidInputError

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
FALLBACK_ALLOW_ENTRY = re.compile(rf"{_DOTTED}:(?:\*|[A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Settings:
    """Where prodml keeps its records, and what the server may run.

    >>> s = Settings.from_env({"PRODML_HOME": "/tmp/x"})
    >>> s.database_url
    'sqlite:////tmp/x/prodml.db'
    >>> s.artifacts
    '/tmp/x/artifacts'
    >>> s.fallback_allow, s.fallback_timeout_ms
    ((), 50.0)
    >>> Settings.from_env({"PRODML_FALLBACK_ALLOW": "rules:approve, my.rules:*"}).fallback_allow
    ('rules:approve', 'my.rules:*')
    >>> s.poll_interval, s.notify, Settings.from_env({"PRODML_NOTIFY": "0"}).notify
    (0.5, True, False)
    """

    home: Path
    database_url: str
    artifacts: str
    admin_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    predict_access: str = "open"
    read_access: str = "open"
    fallback_allow: tuple[str, ...] = ()  # "module:function" or "module:*"
    fallback_timeout_ms: float = 50.0
    require_blessing: bool = False
    drain_timeout_s: float = 30.0
    poll_interval: float = 0.5
    notify: bool = True
    notify_url: str | None = None
    db_pool_size: int = 5
    db_max_overflow: int = 5
    db_pool_timeout: float = 30.0
    controller_lease_s: float = 5.0

    @classmethod
    def from_env(cls, environ: "os._Environ[str] | dict[str, str] | None" = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("PRODML_HOME") or Path.cwd() / ".prodml").expanduser().absolute()
        url = env.get("PRODML_DATABASE_URL") or f"sqlite:///{home / 'prodml.db'}"
        artifacts = env.get("PRODML_ARTIFACTS") or str(home / "artifacts")
        return cls(home=home, database_url=url, artifacts=artifacts,
                   admin_token=env.get("PRODML_ADMIN_TOKEN") or None,
                   allowed_hosts=_names(env.get("PRODML_ALLOWED_HOSTS")),
                   allowed_origins=_names(env.get("PRODML_ALLOWED_ORIGINS")),
                   predict_access=env.get("PRODML_PREDICT_ACCESS") or "open",
                   read_access=env.get("PRODML_READ_ACCESS") or "open",
                   fallback_allow=parse_fallback_allow(env.get("PRODML_FALLBACK_ALLOW", "")),
                   fallback_timeout_ms=_positive(env, "PRODML_FALLBACK_TIMEOUT_MS", 50.0),
                   require_blessing=_flag(env.get("PRODML_REQUIRE_BLESSING"),
                                          "PRODML_REQUIRE_BLESSING"),
                   drain_timeout_s=_positive(env, "PRODML_DRAIN_TIMEOUT", 30.0),
                   poll_interval=_positive(env, "PRODML_POLL_INTERVAL", 0.5),
                   notify=_flag(env.get("PRODML_NOTIFY") or "1", "PRODML_NOTIFY"),
                   notify_url=env.get("PRODML_NOTIFY_URL") or None,
                   db_pool_size=_whole(env, "PRODML_DB_POOL_SIZE", 5, minimum=1),
                   db_max_overflow=_whole(env, "PRODML_DB_MAX_OVERFLOW", 5, minimum=0),
                   db_pool_timeout=_positive(env, "PRODML_DB_POOL_TIMEOUT", 30.0),
                   controller_lease_s=_positive(env, "PRODML_CONTROLLER_LEASE_S", 5.0))


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def parse_fallback_allow(value: str) -> tuple[str, ...]:
    """Comma-separated ``module:function`` / ``module:*`` entries; a malformed one is an
    :class:`~prodml.errors.InvalidInputError` (a typo must not silently allow nothing)."""
    entries = tuple(e.strip() for e in value.split(",") if e.strip())
    for entry in entries:
        if not FALLBACK_ALLOW_ENTRY.fullmatch(entry):
            raise InvalidInputError("PRODML_FALLBACK_ALLOW", entry,
                                    "every entry must be 'module:function' or 'module:*'")
    return entries


def _positive(env: "os._Environ[str] | dict[str, str]", name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InvalidInputError(name, raw, "must be a positive number")
    return value


def _whole(env: "os._Environ[str] | dict[str, str]", name: str, default: int, *,
           minimum: int) -> int:
    """A whole number of at least ``minimum``; anything else names the variable.

    >>> _whole({"N": " 8 "}, "N", 5, minimum=1), _whole({}, "N", 5, minimum=1)
    (8, 5)
    >>> _whole({"N": "2.5"}, "N", 5, minimum=0)
    Traceback (most recent call last):
    ...
    prodml.errors.InvalidInputError: N='2.5': must be a whole number of at least 0
    """
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise InvalidInputError(name, raw, f"must be a whole number of at least {minimum}")
    return int(text)


def _flag(value: str | None, name: str) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off (any case); unset is off.

    >>> _flag("1", "X"), _flag("off", "X"), _flag(None, "X")
    (True, False, False)
    """
    if value is None or not value.strip():
        return False
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    from prodml.errors import InvalidInputError

    raise InvalidInputError(name, value, "must be 1 or 0 (true/false, yes/no, on/off)")
