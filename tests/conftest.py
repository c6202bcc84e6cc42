"""Shared fixtures: a real PostgreSQL server for the session, and the ``store`` fixture.

``store`` runs a test once on a SQLite file and once on a fresh PostgreSQL database, with
that store made the process default, so ``pm.start_run(...)`` and ``pm.models.*`` use it.

The PostgreSQL server is started by the suite itself (``initdb`` + ``pg_ctl``) in a folder
under ``/tmp``, on a free port, with ``fsync=off``; it is stopped and removed at the end of
the session. Without ``initdb`` on PATH the postgres tests are skipped, unless
``PRODML_REQUIRE_POSTGRES=1`` (CI), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server the test session owns."""

    port: int
    data_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"prodml_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def _unavailable(reason: str) -> None:
    if os.environ.get("PRODML_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (PRODML_REQUIRE_POSTGRES=1) but {reason}",
                    pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason} (set PRODML_REQUIRE_POSTGRES=1 to fail "
                "instead)")


def _as_server_user(args: list[str]) -> list[str]:
    # initdb, pg_ctl and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_SYSTEM_USER, "--", *args]
    return args


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    # stdin/stdout never stay attached to the server: pg_ctl's child keeps no pipe of ours.
    return subprocess.run(_as_server_user(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir: Path, port: int | None = None) -> int:
    """Start the server in ``data_dir`` on ``port`` (a restart), or on a free port."""
    log = data_dir / "server.log"
    failure = ""
    for _attempt in range(3 if port is None else 1):  # a free port may be taken meanwhile
        chosen = port or _free_port()
        options = (f"-p {chosen} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        done = _run(["pg_ctl", "-D", str(data_dir), "-l", str(log), "-o", options, "-w",
                     "-t", "60", "start"], timeout=90)
        if done.returncode == 0:
            return chosen
        failure = done.stdout + done.stderr
        if log.exists():
            failure += log.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"pg_ctl start failed:\n{failure}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server for the session (skipped if none is installed)."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        _unavailable("initdb/pg_ctl are not on PATH")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            _unavailable("running as root and runuser is not available")
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            _unavailable(f"running as root and there is no {PG_SYSTEM_USER!r} system user")

    # Under /tmp, not pytest's tmp_path: /tmp/pytest-of-root is mode 700 and the server's
    # user could not reach its own data folder.
    data_dir = Path(tempfile.mkdtemp(prefix="prodml-pg-"))
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(data_dir, user=PG_SYSTEM_USER)
        done = _run(["initdb", "-D", str(data_dir), "-A", "trust", "-U", "postgres",
                     "--no-sync"], timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        port = _start(data_dir)
        started = True
        yield PostgresServer(port, data_dir)
    finally:
        if started:
            stopped = _run(["pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                           timeout=60)
            if stopped.returncode != 0:
                _run(["pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                     timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for this test, as a SQLAlchemy URL."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """An open, migrated store, made the default: once on SQLite, once on PostgreSQL."""
    from prodml.store import open_store, reset_default_store

    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path}/prodml.db"
    opened = open_store(url, str(tmp_path / "artifacts"), make_default=True)
    try:
        yield opened
    finally:
        reset_default_store()
