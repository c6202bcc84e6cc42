"""A real ``prodml serve`` (uvicorn) on 127.0.0.1 over a real SQLite store, for the HTTP tests.

``served`` starts one server per test module: endpoint ``loan`` serves ``loan/1`` (a
logistic regression with a data schema) directly; ``loan/2`` (gradient boosting) is
registered and ready to be deployed beside it. Tests change deployments through the admin
API or the store and see the server pick the change up (it polls every 0.5 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears",
            "loan"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    home: Path
    store: Any
    process: subprocess.Popen
    data: Any  # the loan frame the models were trained on
    env: dict

    @property
    def admin_token(self) -> str:
        """The admin token the server made on its first start (``$PRODML_HOME/admin-token``)."""
        return (self.home / "admin-token").read_text().strip()

    def token(self, name: str, role: str) -> str:
        """A new token for ``name`` with ``role``, made in the server's store."""
        from prodml.access import create_token

        return create_token(name, role, created_by="tests", store=self.store).token

    def client_as(self, name: str, role: str, **kwargs: Any) -> httpx.Client:
        """A client holding a new token for ``name`` with ``role``."""
        return self.client(headers={"Authorization": f"Bearer {self.token(name, role)}"},
                           **kwargs)

    def client(self, *, anonymous: bool = False, **kwargs: Any) -> httpx.Client:
        """A client of the server, signed in as its admin unless ``anonymous``."""
        headers = dict(kwargs.pop("headers", None) or {})
        if not anonymous:
            headers.setdefault("Authorization", f"Bearer {self.admin_token}")
        return httpx.Client(base_url=self.url, timeout=30, headers=headers, **kwargs)

    def records(self, n: int = 1, start: int = 0) -> list[dict]:
        return self.data[FEATURES].iloc[start:start + n].to_dict(orient="records")

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval)


def build_store(home: Path, url: str | None = None):
    """Register the two loan models (with a schema) in a fresh store under ``home`` (or the
    database at ``url``, artifacts still under ``home``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prodml.data.schema import infer_schema
    from prodml.demo.data import loan_applications
    from prodml.store import open_store
    from prodml.tracking import registry

    store = open_store(url or f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    data = loan_applications(rows=2000, seed=7)
    X, y = data[FEATURES], data["approved"]
    schema = infer_schema(X)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    gbm = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(X, y)
    registry.register("loan", lr, input_example=X, schema=schema, store=store)
    registry.register("loan", gbm, input_example=X, schema=schema, store=store)
    return store, data


def start_server(home: Path, port: int, *args: str, env_extra: dict | None = None,
                 ready_path: str = "/endpoints", **popen: Any) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PRODML_HOME": str(home)}
    env.pop("PRODML_DATABASE_URL", None)
    env.pop("PRODML_ARTIFACTS", None)
    env.update(env_extra or {})  # PRODML_DATABASE_URL here serves another database
    log = open(home / f"server-{port}.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "prodml", "serve", "--port", str(port),
                                *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                               **popen)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: "
                               f"{(home / f'server-{port}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                return process, env
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start within 60 s")


def admin_headers(home: Path) -> dict[str, str]:
    """The Authorization header of the admin token a server made on its first start."""
    return {"Authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    from prodml.serving import endpoints as eps

    home = tmp_path_factory.mktemp("serve")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store, reason="first release")
    port = free_port()
    process, env = start_server(home, port)
    try:
        yield Served(f"http://127.0.0.1:{port}", home, store, process, data, env)
    finally:
        stop_server(process)
