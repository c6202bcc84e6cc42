"""Root pytest configuration: every test and doctest gets its own empty prodml home."""

import pytest

collect_ignore_glob = ["prodml/store/migrations/*", "benchmarks/*", ".venv/*"]


@pytest.fixture(autouse=True)
def _isolated_prodml_home(tmp_path, monkeypatch):
    from prodml.store import reset_default_store

    monkeypatch.setenv("PRODML_HOME", str(tmp_path / "prodml-home"))
    monkeypatch.delenv("PRODML_DATABASE_URL", raising=False)
    monkeypatch.delenv("PRODML_ARTIFACTS", raising=False)
    reset_default_store()
    yield
    reset_default_store()
