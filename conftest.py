"""Root pytest configuration: every test and doctest gets its own empty prodml home.

BLAS and OpenMP get one thread each, here before NumPy is imported and inherited by every
server and worker the tests start: on two cores a pool per process only oversubscribes.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402

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
