"""Opening a store migrates it to head once, even when many processes open it together."""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import store_workers
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, table, text
from sqlalchemy.engine import make_url

import prodml as pm
from prodml.store import open_store
from prodml.store import tables as t
from prodml.store.engine import _PG_MIGRATION_LOCK, head_revision


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL nothing has opened yet."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path}/fresh/prodml.db"


@contextlib.contextmanager
def migration_lock_held(url: str) -> Iterator[None]:
    """Hold the lock prodml takes to migrate, from outside prodml."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                             dbname=parsed.database, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_PG_MIGRATION_LOCK,))
            yield
    else:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        with open(f"{parsed.database}.migrate.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def open_in_thread(url: str, artifacts: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["store"] = open_store(url, artifacts)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def alembic_rows(store: pm.Store) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_new_store_has_every_table_at_head(fresh_url: str, tmp_path: Path) -> None:
    store = open_store(fresh_url, str(tmp_path / "artifacts"))
    try:
        assert store.revision() == head_revision()
        assert alembic_rows(store) == [head_revision()]
        assert set(inspect(store.engine).get_table_names()) == (
            set(t.metadata.tables) | {"alembic_version"})
        # The migrations build exactly what tables.py declares: columns, types, indexes, keys.
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
    finally:
        store.close()


def test_reopening_a_migrated_store_changes_nothing(fresh_url: str, tmp_path: Path) -> None:
    artifacts = str(tmp_path / "artifacts")
    first = open_store(fresh_url, artifacts)
    with pm.start_run("kept", params={"alpha": 1}, store=first, code_dir=tmp_path) as run:
        run.log_metric("loss", 0.5)
    first.close()

    # A store already at head must not even ask for the migration lock: with the lock held
    # elsewhere, reopening still returns at once.
    with migration_lock_held(fresh_url):
        thread, outcome = open_in_thread(fresh_url, artifacts)
        thread.join(timeout=20)
        assert not thread.is_alive(), "reopening a migrated store waited for the migration lock"
    assert "error" not in outcome, outcome.get("error")
    again = outcome["store"]
    try:
        assert again.revision() == head_revision()
        assert alembic_rows(again) == [head_revision()]
        record = pm.runs.get(run.id, store=again)
        assert record.params == {"alpha": "1"} and record.metrics == {"loss": 0.5}
    finally:
        again.close()


def test_migration_waits_for_the_migration_lock(fresh_url: str, tmp_path: Path) -> None:
    with migration_lock_held(fresh_url):
        thread, outcome = open_in_thread(fresh_url, str(tmp_path / "artifacts"))
        thread.join(timeout=0.5)
        assert thread.is_alive(), "a fresh store migrated without taking the migration lock"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    store = outcome["store"]
    try:
        assert store.revision() == head_revision()
    finally:
        store.close()


def test_a_new_sqlite_store_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    # Switching a new file to WAL while another connection writes it makes SQLite answer
    # "database is locked" at once, busy timeout or not; opening must wait, not fail.
    database = tmp_path / "prodml.db"
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE outside (a)")  # a new file, still in rollback-journal mode
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, ["COMMIT"])
    release.start()
    try:
        store = open_store(f"sqlite:///{database}", str(tmp_path / "artifacts"))
    finally:
        release.join()
        other.close()
    try:
        assert store.revision() == head_revision()
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert "outside" in inspect(conn).get_table_names()
    finally:
        store.close()


@pytest.mark.slow
def test_eight_processes_open_one_fresh_store_at_once(fresh_url: str, tmp_path: Path,
                                                      run_together) -> None:
    artifacts = str(tmp_path / "artifacts")
    results = run_together(store_workers.open_store_task,
                           [(fresh_url, artifacts)] * store_workers.POOL_SIZE)

    assert len({pid for pid, _ in results}) == store_workers.POOL_SIZE
    assert [revision for _, revision in results] == [head_revision()] * store_workers.POOL_SIZE
    store = open_store(fresh_url, artifacts)
    try:
        assert alembic_rows(store) == [head_revision()]
        with store.read() as conn:
            assert conn.execute(select(func.count()).select_from(
                table("experiments"))).scalar_one() == 0
        assert set(t.metadata.tables) <= set(inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_head_revision_constant_is_alembics_head() -> None:
    # migrate() compares against the constant so that opening a store need not import Alembic.
    from prodml.store import engine

    assert engine.HEAD_REVISION == head_revision()
