"""Who may change what, against a real ``prodml serve`` (docs/security.md).

Each protection is shown refusing the attack and, beside it, letting the same request through
once the missing piece (a token, the role, the same origin, the CSRF token) is there: the
refusal comes from the protection, not from something else being broken.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import select

from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.serving.conftest import (FEATURES, build_store, free_port, start_server,
                                    stop_server)


def _revision(served) -> int:
    return eps.get_endpoint("loan", store=served.store).revision


def test_first_start_makes_an_owner_only_admin_token(served):
    path = served.home / "admin-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    assert token.startswith("pml_")
    log = next(served.home.glob("server-*.log")).read_text()
    assert str(path) in log and token not in log  # says where it is, never what it is
    # the store keeps its digest only: the secret is nowhere in the database's bytes
    for name in ("prodml.db", "prodml.db-wal"):
        file = served.home / name
        if file.exists():
            assert token.encode() not in file.read_bytes()


def test_changes_need_a_token_with_the_right_role(served):
    before = _revision(served)
    body = {"model": "loan/1", "reason": "anonymous"}
    with served.client(anonymous=True) as anonymous:
        refused = anonymous.post("/endpoints/loan/deploy", json=body)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["field"] == "authorization"
        assert anonymous.post("/endpoints/loan/pause").status_code == 401
        assert anonymous.post("/endpoints/loan/rollback").status_code == 401
        # the actor header names nobody: only a token does
        assert anonymous.post("/endpoints/loan/pause",
                              headers={"X-Prodml-Actor": "admin"}).status_code == 401
    with served.client_as("val", "viewer") as viewer:
        refused = viewer.post("/endpoints/loan/deploy", json=body)
        assert refused.status_code == 403 and "needs deployer" in refused.json()["message"]
    with served.client_as("lea", "labeler") as labeler:
        assert labeler.post("/endpoints/loan/deploy", json=body).status_code == 403
    assert _revision(served) == before
    with served.client_as("ci-bot", "deployer") as deployer:
        done = deployer.post("/endpoints/loan/deploy",
                             json={"model": "loan/1", "reason": "redeploy"},
                             headers={"X-Prodml-Actor": "somebody-else"})
        assert done.status_code == 200, done.text
    newest = eps.history("loan", limit=1, store=served.store)[0]
    assert newest.actor == "ci-bot"  # the token's name, whatever a header claimed


def test_labels_need_a_labeler_and_record_who_gave_them(served):
    with served.client(anonymous=True) as anonymous:
        answer = anonymous.post("/endpoints/loan/predict", json=served.records(1)[0])
        assert answer.status_code == 200  # predictions stay open by default
        pid = answer.json()["prediction_id"]
        refused = anonymous.post("/feedback", json={"prediction_id": pid, "label": 0})
        assert refused.status_code == 401
    with served.client_as("vic", "viewer") as viewer:
        assert viewer.post("/feedback", json={"prediction_id": pid,
                                              "label": 0}).status_code == 403
    with served.store.read() as conn:
        assert conn.execute(select(t.feedback).where(
            t.feedback.c.prediction_id == pid)).all() == []
    with served.client_as("lena", "labeler") as labeler:
        assert labeler.post("/feedback", json={"prediction_id": pid,
                                               "label": 1}).status_code == 200
    with served.store.read() as conn:
        rows = conn.execute(select(t.feedback).where(t.feedback.c.prediction_id == pid)).all()
    assert [(r.value, r.actor) for r in rows] == [("1", "lena")]


def test_a_revoked_token_is_refused_within_seconds(served):
    from prodml.access import revoke_token

    with served.client_as("temp", "labeler") as client:
        pid = client.post("/endpoints/loan/predict",
                          json=served.records(1)[0]).json()["prediction_id"]
        assert client.post("/feedback", json={"prediction_id": pid,
                                              "label": 1}).status_code == 200
        revoke_token("temp", by="tests", store=served.store)
        refused = served.wait_for(lambda: client.post(
            "/feedback", json={"prediction_id": pid, "label": 1}).status_code == 401,
            timeout=5)
        assert refused


def test_unknown_hosts_are_refused_dns_rebinding(served):
    port = served.url.rsplit(":", 1)[1]
    with served.client(anonymous=True) as client:
        for host in (f"evil.example:{port}", "attacker.test", f"127.0.0.1.nip.io:{port}"):
            refused = client.get("/endpoints", headers={"Host": host})
            assert refused.status_code == 400 and refused.json()["field"] == "host", host
            assert client.post("/endpoints/loan/predict", json=served.records(1)[0],
                               headers={"Host": host}).status_code == 400
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "app.localhost"):
            assert client.get("/endpoints", headers={"Host": host}).status_code == 200, host


def test_changes_from_another_origin_are_refused(served):
    before = _revision(served)
    with served.client() as admin:  # even with a valid token
        for headers in ({"Origin": "http://evil.example"},
                        {"Origin": "null"},
                        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
                        {"Sec-Fetch-Site": "cross-site"}):
            refused = admin.post("/endpoints/loan/pause", json={}, headers=headers)
            assert refused.status_code == 403, headers
            refused = admin.post("/endpoints/loan/predict", json=served.records(1)[0],
                                 headers=headers)
            assert refused.status_code == 403, headers
        assert _revision(served) == before
        # the server's own pages are its own origin
        same = admin.post("/endpoints/loan/resume", json={},
                          headers={"Origin": served.url})
        assert same.status_code == 200, same.text


def test_json_routes_take_json_only(served):
    before = _revision(served)
    with served.client() as admin:
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x"):
            refused = admin.post("/endpoints/loan/deploy", content=b'{"model": "loan/1"}',
                                 headers={"Content-Type": content_type})
            assert refused.status_code == 415, content_type
            assert refused.json()["field"] == "content-type"
            assert admin.post("/endpoints/loan/predict",
                              content=b'{"record": {"salary": 1}}',
                              headers={"Content-Type": content_type}).status_code == 415
        assert _revision(served) == before
        assert admin.post("/endpoints/loan/deploy", json={"model": "loan/1"}).status_code \
            == 200


def test_the_dashboard_session_needs_its_csrf_token(served):
    from prodml.serving.gate import csrf_token

    token = served.token("dora", "deployer")
    with served.client(anonymous=True) as browser:
        assert browser.post("/ui/session", json={"token": "pml_wrong"}).status_code == 401
        signed = browser.post("/ui/session", json={"token": token})
        assert signed.status_code == 200 and signed.json() == {"name": "dora",
                                                                "role": "deployer"}
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = browser.get("/ui/endpoints/loan")
        assert csrf_token(token) in page.text and "dora" in page.text
        assert token not in page.text
        refused = browser.post("/endpoints/loan/resume", json={})  # the cookie alone
        assert refused.status_code == 403 and refused.json()["field"] == "x-csrf-token"
        done = browser.post("/endpoints/loan/resume", json={},
                            headers={"X-CSRF-Token": csrf_token(token)})
        assert done.status_code == 200, done.text
        assert eps.history("loan", limit=1, store=served.store)[0].actor == "dora"
        assert browser.delete("/ui/session",
                              headers={"X-CSRF-Token": csrf_token(token)}).status_code == 204


def test_tokens_on_the_command_line(served):
    env = {**served.env}

    def prodml(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "prodml", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    made = prodml("tokens", "create", "--name", "cli-bot", "--role", "deployer")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("pml_")
    listed = prodml("tokens", "list", "--json")
    assert '"cli-bot"' in listed.stdout and token not in listed.stdout
    with served.client(headers={"Authorization": f"Bearer {token}"}) as bot:
        assert bot.post("/endpoints/loan/resume", json={}).status_code == 200
    bad = prodml("tokens", "create", "--name", "x", "--role", "root")
    assert bad.returncode == 1 and "role='root'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert prodml("tokens", "revoke", "cli-bot").returncode == 0
    missing = prodml("tokens", "revoke", "cli-bot")
    assert missing.returncode == 1 and "no active token" in missing.stderr


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A server whose predictions and pages need a viewer token."""
    home = tmp_path_factory.mktemp("private")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store)
    port = free_port()
    process, _ = start_server(home, port, "--predict-access", "token", "--read-access",
                              "token", ready_path="/v2/health/ready")
    try:
        yield f"http://127.0.0.1:{port}", store, data
    finally:
        stop_server(process)


def test_predictions_and_pages_can_need_a_token(private):
    from prodml.access import create_token

    url, store, data = private
    record = data[FEATURES].iloc[0].to_dict()
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        assert anonymous.get("/v2/health/ready").status_code == 200  # probes stay open
        assert anonymous.post("/endpoints/loan/predict", json=record).status_code == 401
        assert anonymous.post("/v2/models/loan/infer", json={"inputs": []}).status_code == 401
        assert anonymous.get("/endpoints").status_code == 401
        to_login = anonymous.get("/ui")
        assert to_login.status_code == 303 and to_login.headers["location"] == "/ui/login"
        assert anonymous.get("/ui/login").status_code == 200
    viewer = create_token("app", "viewer", created_by="tests", store=store).token
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {viewer}"}) as app:
        answer = app.post("/endpoints/loan/predict", json=record)
        assert answer.status_code == 200, answer.text
        assert app.get("/endpoints").status_code == 200
        assert app.get("/ui").status_code == 200
        assert app.post("/endpoints/loan/pause", json={}).status_code == 403
