"""Personal data never reaches the store in clear (issue 14, finding 4).

Distinctive values (every one holds ``zqsecret``) go through every path a real server and
the CLI offer: predict on the primary, canary and shadow routes, a second endpoint serving a
version that is already loaded, a canary without PII marks added beside a version with
them, a column marked only on the endpoint (``--pii``), a routing key from the canary's
column and one from the body, review items under partial automation and their resolution,
feedback, and ``prodml predict`` with the PII column kept in its output. Then the raw bytes
of the SQLite file, its WAL and every file under the artifact store are searched: not one
occurrence.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.serving.conftest import admin_headers, free_port, start_server, stop_server

MARK = b"zqsecret"


def secret(kind: str, i: int) -> str:
    return f"{kind}.zqsecret{i}@example.com"


@pytest.fixture(scope="module")
def pii_home(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    from prodml.data.schema import Schema
    from prodml.serving import endpoints as eps
    from prodml.store import open_store
    from prodml.tracking import registry

    home = tmp_path_factory.mktemp("pii")
    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 0.5, 2.5]})
    y = [0, 0, 1, 1, 0, 1]

    def schema(email_pii: bool) -> Schema:
        return Schema.from_dict({"columns": {
            "x": {"type": "float"},
            "email": {"type": "string", "required": False, "pii": email_pii},
            "phone": {"type": "string", "required": False}}})

    model = LogisticRegression().fit(X, y)
    registry.register("cust", model, input_example=X, schema=schema(True), store=store)  # /1
    registry.register("cust", model, input_example=X, schema=schema(False), store=store)  # /2
    registry.register("cust", model, input_example=X, schema=schema(False), store=store)  # /3
    eps.deploy("a", "cust/1", store=store)
    port = free_port()
    process, env = start_server(home, port)
    try:
        yield home, store, f"http://127.0.0.1:{port}", env
    finally:
        stop_server(process)


def admin(client, name: str, body: dict) -> dict:
    answer = client.post(f"/endpoints/{name}/deploy", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_revision(client, name: str, revision: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = client.post(f"/endpoints/{name}/predict", json={"x": 1.0})
        if answer.status_code == 200 and answer.json()["revision"] >= revision:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never served revision {revision}")


def test_no_personal_value_reaches_the_store_in_clear(pii_home):
    import httpx

    home, store, url, env = pii_home
    routes: set[str] = set()
    with httpx.Client(base_url=url, timeout=30, headers=admin_headers(home)) as client:
        # (a) a second endpoint serving a version the server has loaded already
        revision_b = admin(client, "b", {"model": "cust/1"})["revision"]
        # the endpoint's own marks: cust/2 marks nothing, the endpoint marks phone
        revision_c = admin(client, "c", {"model": "cust/2", "pii": ["phone"]})["revision"]
        # (b) a canary without marks beside cust/1, sticky on the email column (c), a
        # shadow without marks beside both, and partial automation (every answer reviewed)
        admin(client, "a", {"model": "cust/2", "strategy": "canary", "routing_key": "email",
                            "steps": [50], "step_every_requests": 1_000_000})
        revision_a = admin(client, "a", {"model": "cust/3", "strategy": "shadow",
                                         "mode": "partial", "threshold": 1.0})["revision"]
        for name, revision in (("a", revision_a), ("b", revision_b), ("c", revision_c)):
            wait_revision(client, name, revision)

        ids = []
        for i in range(40):
            answer = client.post("/endpoints/a/predict", json={
                "x": i % 4 * 1.0, "email": secret("alice", i), "phone": f"+47 555 {i:04d}"})
            assert answer.status_code == 200, answer.text
            routes.add(answer.json()["route"])
            ids.append(answer.json()["prediction_id"])
        for i in range(5):
            answer = client.post("/endpoints/b/predict", json={
                "x": 1.0, "email": secret("bob", i)})
            assert answer.status_code == 200, answer.text
            answer = client.post("/endpoints/c/predict", json={
                "x": 1.0, "phone": secret("carol", i), "routing_key": secret("key", i)})
            assert answer.status_code == 200, answer.text
        answer = client.post("/endpoints/b/predict", json={"records": [{"x": 1.0}]},
                             headers={"X-Prodml-Routing-Key": secret("header", 0)})
        assert answer.status_code == 200, answer.text

        # review items of partial automation: listed with hashed inputs, resolved with an
        # object label that carries the email
        reviews = client.get("/reviews", params={"endpoint": "a"}).json()
        assert reviews, "partial automation at threshold 1.0 queues every answer"
        done = client.post(f"/reviews/{reviews[0]['id']}/resolve",
                           json={"label": {"email": secret("review", 0), "approved": 1}})
        assert done.status_code == 200, done.text
        fed = client.post("/feedback", json=[
            {"prediction_id": ids[1], "label": {"email": secret("label", 0), "approved": 0}},
            {"prediction_id": ids[2], "label": 1}])
        assert fed.status_code == 200, fed.text
        time.sleep(1.0)  # shadow answers are written without a waiter

    assert {"canary", "human"} <= routes or {"canary", "primary"} <= routes, routes

    # batch: the endpoint's PII column kept in the output (and logged as the run's artifact)
    data = home / "batch.csv"
    pd.DataFrame({"x": [0.0, 3.0], "email": [secret("batch", 0), secret("batch", 1)]}
                 ).to_csv(data, index=False)
    output = home / "out" / "scored.parquet"
    ran = subprocess.run([sys.executable, "-m", "prodml", "predict", "a", str(data), "-o",
                          str(output), "--id-column", "email", "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr

    # every route was logged: shadows included
    from sqlalchemy import func, select

    from prodml.store import tables as t
    with store.read() as conn:
        logged = dict(conn.execute(select(t.predictions.c.route, func.count())
                                   .group_by(t.predictions.c.route)).all())
    assert logged.get("shadow", 0) >= 40, logged

    found = []
    database = home / "prodml.db"
    files = [database, database.with_name("prodml.db-wal"),
             *(p for p in (home / "artifacts").rglob("*") if p.is_file())]
    assert files[1].exists(), "the server holds the WAL open while it runs"
    for path in files:
        raw = path.read_bytes() if path.exists() else b""
        at = raw.find(MARK)
        if at >= 0:
            found.append(f"{path.relative_to(home)} ({raw.count(MARK)} times; first in "
                         f"{raw[max(0, at - 120):at + 40]!r})")
    assert found == [], f"personal data in clear: {found}"
    # the search sees what is stored: a column nobody marked is there in clear
    assert any(b"+47 555 0001" in path.read_bytes() for path in files[:2] if path.exists())
    # the batch output itself keeps the id column as the log does: hashed, joinable
    kept = pq.read_table(output).column("email").to_pylist()
    assert MARK not in output.read_bytes()
    assert len(kept[0]) == 64 and kept[0] != secret("batch", 0)


def test_the_endpoint_set_is_the_union_of_versions_and_policy(pii_home):
    from prodml.serving import endpoints as eps

    _home, store, _url, _env = pii_home
    assert eps.pii_columns("a", store=store) == {"email"}
    assert eps.pii_columns("c", store=store) == {"phone"}
    # a later deploy without --pii keeps the endpoint's marks; with --pii, adds to them
    assert eps.deploy("c", "cust/2", store=store).policy["pii"] == ["phone"]
    assert eps.deploy("c", "cust/2", pii="ssn", store=store).policy["pii"] == ["phone", "ssn"]
