"""A store that cannot be opened is one clear line naming the URL, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

import prodml as pm
from prodml.errors import StoreUnavailableError
from prodml.store import open_store


def assert_one_line_naming(error: StoreUnavailableError, shown_url: str) -> str:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"cannot open store {shown_url}: ")
    assert len(message) > len(f"cannot open store {shown_url}: ")  # and says why
    return message


def test_unreachable_postgres_server(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, str(tmp_path / "artifacts"))
    message = assert_one_line_naming(caught.value, "postgresql+psycopg://postgres:***@127.0.0.1:1/x")
    assert "s3cret" not in message
    assert "refused" in message.lower() or "failed" in message.lower()


def test_a_file_where_the_store_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    url = f"sqlite:///{tmp_path}/taken/prodml.db"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, str(tmp_path / "artifacts"))
    assert "cannot create folder" in assert_one_line_naming(caught.value, url)


def test_a_folder_where_the_database_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "prodml.db").mkdir()
    url = f"sqlite:///{tmp_path}/prodml.db"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, str(tmp_path / "artifacts"))
    assert "unable to open" in assert_one_line_naming(caught.value, url)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "prodml.db").write_bytes(b"these bytes are not a SQLite database " * 40)
    url = f"sqlite:///{tmp_path}/prodml.db"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, str(tmp_path / "artifacts"))
    assert "not a database" in assert_one_line_naming(caught.value, url)


@pytest.mark.parametrize("url, shown, reason", [
    ("mysql://user:pw@db/prodml", "mysql://user:***@db/prodml", "unsupported backend"),
    ("postgresql+nodriver://user:pw@db/prodml", "postgresql+nodriver://user:***@db/prodml",
     "Can't load plugin"),
    ("not a url", "not a url", "not a database URL"),
])
def test_urls_prodml_cannot_use(url: str, shown: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, str(tmp_path / "artifacts"))
    assert reason in assert_one_line_naming(caught.value, shown)


@pytest.mark.postgres
def test_a_database_the_server_does_not_have(postgres_server, tmp_path: Path) -> None:
    url = postgres_server.url("no_such_database")
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, str(tmp_path / "artifacts"))
    assert 'database "no_such_database" does not exist' in assert_one_line_naming(caught.value, url)


def test_the_public_api_reports_an_unreachable_default_store(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("PRODML_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    with pytest.raises(StoreUnavailableError, match=r"^cannot open store "
                       r"postgresql\+psycopg://postgres@127\.0\.0\.1:1/x: "):
        pm.start_run("never")
    # Fixing the setting is enough: the failed open left nothing behind.
    monkeypatch.delenv("PRODML_DATABASE_URL")
    with pm.start_run("now") as run:
        run.log_metric("ok", 1.0)
    assert pm.runs.get(run.id).metrics == {"ok": 1.0}
