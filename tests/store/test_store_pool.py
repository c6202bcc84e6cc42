"""A PostgreSQL store's connection pool follows the settings; a bad value is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prodml.config import Settings
from prodml.errors import InvalidInputError
from prodml.store import open_store


def test_pool_settings_default_and_parse() -> None:
    default = Settings.from_env({})
    assert (default.db_pool_size, default.db_max_overflow, default.db_pool_timeout) == (5, 5, 30.0)
    chosen = Settings.from_env({"PRODML_DB_POOL_SIZE": "12", "PRODML_DB_MAX_OVERFLOW": "0",
                                "PRODML_DB_POOL_TIMEOUT": "2.5"})
    assert (chosen.db_pool_size, chosen.db_max_overflow, chosen.db_pool_timeout) == (12, 0, 2.5)


@pytest.mark.parametrize("name, value", [
    ("PRODML_DB_POOL_SIZE", "0"), ("PRODML_DB_POOL_SIZE", "five"),
    ("PRODML_DB_POOL_SIZE", "2.5"), ("PRODML_DB_MAX_OVERFLOW", "-1"),
    ("PRODML_DB_POOL_TIMEOUT", "0"), ("PRODML_DB_POOL_TIMEOUT", "soon"),
])
def test_a_bad_pool_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Settings.from_env({name: value})
    assert caught.value.field == name
    assert str(caught.value).startswith(f"{name}={value!r}: must be ")


@pytest.mark.postgres
def test_a_postgres_engine_uses_the_pool_settings(pg_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODML_DB_POOL_SIZE", "3")
    monkeypatch.setenv("PRODML_DB_MAX_OVERFLOW", "2")
    monkeypatch.setenv("PRODML_DB_POOL_TIMEOUT", "1.5")
    store = open_store(pg_url, str(tmp_path / "artifacts"))
    try:
        pool = store.engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 1.5)
        assert pool._pre_ping
    finally:
        store.close()


def test_the_cli_says_a_bad_pool_value_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PRODML_HOME": str(tmp_path), "PRODML_DB_POOL_SIZE": "lots"}
    env.pop("PRODML_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "prodml", "info"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: PRODML_DB_POOL_SIZE='lots': must be a whole number of at least 1"]


@pytest.mark.postgres
def test_a_pool_with_no_connection_free_in_time_is_a_503(pg_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from fastapi.testclient import TestClient

    from prodml.serving.app import create_app

    monkeypatch.setenv("PRODML_DB_POOL_SIZE", "1")
    monkeypatch.setenv("PRODML_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("PRODML_DB_POOL_TIMEOUT", "0.2")
    store = open_store(pg_url, str(tmp_path / "artifacts"))
    try:
        with store.read():  # the only connection, held
            client = TestClient(create_app(store), base_url="http://127.0.0.1")  # no lifespan
            reply = client.get("/endpoints")
            assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
            assert reply.json()["error"] == "StoreUnavailableError"
            assert "QueuePool limit of size 1 overflow 0 reached" in reply.json()["message"]
            looked_up = client.get("/endpoints", headers={"Authorization": "Bearer pml_x"})
            assert looked_up.status_code == 503 and looked_up.headers["retry-after"] == "5"
    finally:
        store.close()
