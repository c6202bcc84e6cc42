"""``/v2/health/ready`` follows the store even when the server serves no endpoint: a replica
started before any deployment is not ready while it cannot read its store (the store probe,
``ServingService.healthy``), and is ready again when the store answers."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from prodml.serving.app import create_app
from prodml.store import open_store


def test_ready_with_no_endpoint_needs_the_store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", str(tmp_path / "artifacts"))
    try:
        # a long poll interval: only the test moves the probe
        app = create_app(store, admin_token="secret", poll_interval=3600)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            service = app.state.service
            assert service.endpoint_names() == []
            assert client.get("/v2/health/ready").status_code == 200
            service.store_probe.failed(OperationalError("SELECT 1", {}, OSError("down")))
            answer = client.get("/v2/health/ready")
            assert answer.status_code == 503 and answer.json() == {"ready": False}
            assert client.get("/v2/health/live").status_code == 200
            service.store_probe.succeeded()
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        store.close()
