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
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (ArgumentError, DatabaseError, DBAPIError, InterfaceError,
                            NoSuchModuleError, OperationalError)

from prodml.config import Settings
from prodml.errors import StoreUnavailableError

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; a test checks it against Alembic's own view.
HEAD_REVISION = "0009"
SQLITE_BUSY_TIMEOUT_MS = 60_000
_PG_MIGRATION_LOCK = 7_201_734_551  # any fixed bigint: the advisory lock key for migrations


def open_engine(url: str, settings: Settings | None = None) -> Engine:
    """Create an engine for ``url`` and bring its schema to the latest migration.

    A PostgreSQL engine's pool follows ``settings`` (default: the environment's
    ``PRODML_DB_POOL_SIZE``, ``PRODML_DB_MAX_OVERFLOW``, ``PRODML_DB_POOL_TIMEOUT``); each
    connection is checked before use (``pool_pre_ping``), so one the server dropped (a
    restart, an idle timeout in between) is replaced instead of failing a request.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailableError(url, f"not a database URL ({exc})") from None
    shown = _safe(url)  # messages name the URL, never its password
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, shown, parsed.database)
    elif parsed.get_backend_name() == "postgresql":
        pool = settings or Settings.from_env()
        try:
            engine = create_engine(url, pool_pre_ping=True, pool_size=pool.db_pool_size,
                                   max_overflow=pool.db_max_overflow,
                                   pool_timeout=pool.db_pool_timeout)
        except (NoSuchModuleError, ArgumentError) as exc:
            raise StoreUnavailableError(shown, str(exc)) from None
    else:
        raise StoreUnavailableError(shown, f"unsupported backend {parsed.get_backend_name()!r}; "
                                           "use sqlite:/// or postgresql+psycopg://")
    _dispose_in_forked_children(engine)
    try:
        migrate(engine)
    except DBAPIError as exc:
        if not _cannot_open(exc):
            raise
        engine.dispose()
        raise StoreUnavailableError(shown, describe_error(exc)) from None
    return engine


def _cannot_open(exc: DBAPIError) -> bool:
    # Connection failures, and the plain DatabaseError SQLite raises for a file that is not a
    # database ("file is not a database"); a ProgrammingError or IntegrityError is a bug.
    return isinstance(exc, (OperationalError, InterfaceError)) or type(exc) is DatabaseError


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_engine(url: str, shown: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(shown, f"cannot create folder {folder}: {exc.strerror}"
                                        ) from None
        _switch_to_wal(shown, database)
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


def _switch_to_wal(shown: str, database: str) -> None:
    # Turning a new file to WAL needs an exclusive lock, and SQLite answers "database is
    # locked" at once, without waiting on the busy timeout, when another connection holds or
    # wants a lock on the same new file (many processes opening a new store together). So the
    # switch (persistent, once made) happens before any connection opens, under the store's
    # file lock, retried until the busy timeout; a file already in WAL mode skips all this.
    if _is_wal(database):
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    try:
        with _file_lock(database):
            while True:
                conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                finally:
                    conn.close()
                time.sleep(0.02)
    except sqlite3.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailableError(shown, reason) from None
    except OSError as exc:
        raise StoreUnavailableError(shown, f"cannot lock {database}: {exc.strerror}") from None


def _is_wal(database: str) -> bool:
    # The header's read and write format versions (bytes 18 and 19) are 2 in WAL mode.
    try:
        with open(database, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"


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


def head_revision() -> str:
    """The newest migration, as Alembic sees it (imports Alembic: use only when migrating)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database (``None`` for an empty one)."""
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    conn.commit()  # end the read: the upgrade runs its own transactions on this connection
    return revision


def migrate(engine: Engine) -> None:
    """Upgrade to the latest revision, once, even when many processes open the store at once.

    The common case (already at head) costs one query and never imports Alembic. The
    upgrade runs on the connection that holds the lock: one connection in all, so a pool of
    size 1 can migrate too.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    with _migration_lock(engine) as conn:
        if _revision(conn) == HEAD_REVISION:  # migrated while we waited
            return
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection, held by this process alone among those opening the store."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()  # whatever the upgrade left open, if it failed
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    else:
        database = engine.url.database
        with contextlib.ExitStack() as stack:
            if database and database != ":memory:":
                stack.enter_context(_file_lock(database))
            yield stack.enter_context(engine.connect())


@contextlib.contextmanager
def _file_lock(database: str) -> Iterator[None]:
    """An exclusive lock, across processes, on a lock file beside a SQLite database."""
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def describe_error(exc: BaseException) -> str:
    """The first line of a driver error (or of SQLAlchemy's own, such as a pool that had no
    connection free in time), for one-line messages."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).split(" (Background on this error at:")[0].strip()
    return text.splitlines()[0] if text else type(cause).__name__
