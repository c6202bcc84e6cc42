"""The one store: a migrated database plus an artifact location.

``get_store()`` returns the process-wide store configured by ``PRODML_*`` variables;
``open_store()`` opens another one explicitly and can make it the default.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from prodml.config import Settings
from prodml.store.artifacts import ArtifactStore, Blob
from prodml.store.engine import current_revision, open_engine, write


def now_ms() -> int:
    """Milliseconds since the Unix epoch: the store's unit of time."""
    return time.time_ns() // 1_000_000


# The database's clock in the same unit. PostgreSQL's now() is the start of the current
# transaction (every stamp of one write agrees); SQLite's 'now' is fixed for one statement
# and read from the clock of the host that opened the file.
_DB_NOW_MS = {
    "postgresql": "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM now()) * 1000) AS BIGINT)",
    "sqlite": "SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000"
              " + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER)",
}


def db_now_ms(conn: Connection) -> int:
    """Milliseconds since the Unix epoch by the database's clock, read on ``conn`` (inside
    a write, the time of that write): one clock for every replica, whatever theirs say."""
    return int(conn.execute(text(_DB_NOW_MS[conn.dialect.name])).scalar_one())


@dataclass
class Store:
    """A database engine and an artifact store, opened and migrated."""

    database_url: str
    engine: Engine
    artifacts: ArtifactStore

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        with write(self.engine) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def insert(self, table: Table):  # type: ignore[no-untyped-def]
        """An INSERT that supports ``on_conflict_do_*`` on both backends."""
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    def record_artifact(self, conn: Connection, blob: "Blob", media_type: str | None = None
                        ) -> None:
        """Make the artifacts table know a blob already written to the artifact store."""
        from prodml.store import tables

        conn.execute(self.insert(tables.artifacts).values(
            sha256=blob.sha256, uri=blob.uri, size=blob.size, media_type=media_type,
            created_at=now_ms()).on_conflict_do_nothing(index_elements=["sha256"]))

    def revision(self) -> str | None:
        return current_revision(self.engine)

    def close(self) -> None:
        self.engine.dispose()


_default: Store | None = None
_default_key: tuple[str, str] | None = None
_pinned = False  # True when open_store(make_default=True) chose the default explicitly
_lock = threading.Lock()
_last_environment: tuple[str | None, ...] | None = None
_last_key: tuple[str, str] = ("", "")


def _set_default(store: Store | None, key: tuple[str, str] | None, pinned: bool) -> None:
    global _default, _default_key, _pinned
    if _default is not None and _default is not store:
        _default.close()
    _default, _default_key, _pinned = store, key, pinned


def open_store(database_url: str | None = None, artifacts: str | None = None, *,
               make_default: bool = False) -> Store:
    """Open (and migrate) a store; ``None`` arguments come from ``PRODML_*`` settings.

    >>> import tempfile
    >>> home = tempfile.mkdtemp()
    >>> store = open_store(f"sqlite:///{home}/p.db", f"{home}/artifacts")
    >>> store.dialect, store.revision() is not None
    ('sqlite', True)
    """
    settings = Settings.from_env()
    url = database_url or settings.database_url
    location = artifacts or settings.artifacts
    store = Store(url, open_engine(url, settings), ArtifactStore(location))
    if make_default:
        with _lock:
            _set_default(store, (url, location), pinned=True)
    return store


def get_store() -> Store:
    """The default store for this process, opened on first use from the environment.

    If ``PRODML_*`` variables change (tests, notebooks), the next call opens the new store,
    unless a store was chosen with ``open_store(..., make_default=True)``.
    """
    global _last_environment, _last_key
    if _default is not None and _pinned:
        return _default
    # Every tracking call lands here: resolve the settings only when their inputs changed.
    environment = (os.environ.get("PRODML_HOME"), os.environ.get("PRODML_DATABASE_URL"),
                   os.environ.get("PRODML_ARTIFACTS"), os.getcwd())
    if environment != _last_environment:
        settings = Settings.from_env()
        _last_environment, _last_key = environment, (settings.database_url, settings.artifacts)
    key = _last_key
    with _lock:
        if _default is not None and (_pinned or _default_key == key):
            return _default
        store = Store(key[0], open_engine(key[0]), ArtifactStore(key[1]))
        _set_default(store, key, pinned=False)
        return store


def reset_default_store() -> None:
    """Forget the default store (closing it); the next ``get_store()`` reads the environment."""
    with _lock:
        _set_default(None, None, pinned=False)
