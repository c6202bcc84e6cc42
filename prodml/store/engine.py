"""Opening the database: SQLite (WAL) or PostgreSQL, migrated to the latest revision.

Why ``BEGIN IMMEDIATE`` for writes on SQLite: a deferred transaction that reads and then
writes can fail at once with ``SQLITE_BUSY`` when another process committed in between (the
busy timeout does not apply to that upgrade). Taking the write lock at ``BEGIN`` makes
writers queue on the busy timeout instead, so several processes can log at once and lose
nothing. Reads stay deferred and never block writers (WAL).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from prodml.errors import StoreUnavailableError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000
_PG_MIGRATION_LOCK = 7_201_734_551  # any fixed bigint: the advisory lock key for migrations


def open_engine(url: str) -> Engine:
    """Create an engine for ``url`` and bring its schema to the latest migration."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailableError(url, f"not a database URL ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, parsed.database)
    elif parsed.get_backend_name() == "postgresql":
        try:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        except (NoSuchModuleError, ArgumentError) as exc:
            raise StoreUnavailableError(url, str(exc)) from None
    else:
        raise StoreUnavailableError(url, f"unsupported backend {parsed.get_backend_name()!r}; "
                                         "use sqlite:/// or postgresql+psycopg://")
    _dispose_in_forked_children(engine)
    try:
        migrate(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreUnavailableError(_safe(url), reason) from None
    return engine


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(url, f"cannot create folder {folder}: {exc.strerror}") from None
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()
        # Run search compares text params as numbers through this (see tracking/search.py).
        dbapi_conn.create_function("prodml_number", 1, _number_or_none, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("prodml_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _number_or_none(text_value: object) -> float | None:
    try:
        return float(text_value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _dispose_in_forked_children(engine: Engine) -> None:
    # A pooled connection must never cross fork(): the child would share the parent's socket
    # or SQLite file handle. Drop the pool in the child; the parent keeps its connections.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on success, rolled back on any error."""
    with engine.connect().execution_options(prodml_write=True) as conn, conn.begin():
        yield conn


def _alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> None:
    """Upgrade to the latest revision, once, even when many processes open the store at once."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    with _migration_lock(engine):
        if current_revision(engine) == head:  # another process migrated while we waited
            return
        with engine.connect() as conn:
            command.upgrade(_alembic_config(conn), "head")
            conn.commit()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    else:
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def describe_error(exc: DBAPIError) -> str:
    """The first line of a driver error, for one-line messages."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
