"""The request gate on its own, over a real SQLite store: the corners a browser or a script
can reach that the server tests do not (methods, root paths, headers that are missing or
not ASCII, a store that cannot be read, a flood of made-up tokens)."""

from __future__ import annotations

import orjson
import pytest

from prodml.access import Role, TokenVerifier, create_token
from prodml.serving.gate import (AccessPolicy, ForbiddenError, IdentityUnavailableError,
                                 RequestGate, UnauthorizedError, UnknownHostError,
                                 UnsupportedMediaTypeError, csrf_token, error_body)
from prodml.store import open_store


@pytest.fixture
def gate(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", str(tmp_path / "artifacts"))
    tokens = {role: create_token(f"a-{role}", role, created_by="tests", store=store).token
              for role in ("viewer", "deployer")}
    yield RequestGate(TokenVerifier(store), AccessPolicy()), tokens, store
    store.close()


def scope(method: str, path: str, **headers: str) -> dict:
    base = {"host": "127.0.0.1:8000"}
    return {"type": "http", "method": method, "path": path,
            "headers": [(k.replace("_", "-").encode(), v.encode("latin-1"))
                        for k, v in {**base, **headers}.items() if v is not None]}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_every_method_that_changes_state_needs_a_deployer(gate, method):
    check, tokens, _ = gate
    with pytest.raises(UnauthorizedError):
        check.check(scope(method, "/endpoints/loan/pause"))
    with pytest.raises(ForbiddenError):
        check.check(scope(method, "/endpoints/loan/pause",
                          authorization=f"Bearer {tokens['viewer']}"))
    assert check.check(scope(method, "/endpoints/loan/pause",
                             authorization=f"Bearer {tokens['deployer']}")).role \
        is Role.deployer


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_are_open_by_default_and_closed_on_request(gate, method):
    check, tokens, store = gate
    assert check.check(scope(method, "/endpoints")) is None
    private = RequestGate(TokenVerifier(store), AccessPolicy(read_access="token"))
    with pytest.raises(UnauthorizedError):
        private.check(scope(method, "/endpoints"))
    assert private.check(scope(method, "/v2/health/ready")) is None  # probes stay open


def test_the_route_path_is_judged_without_the_root_path(gate):
    check, _, _ = gate
    behind_proxy = {**scope("POST", "/prodml/endpoints/loan/predict"), "root_path": "/prodml"}
    assert check.check(behind_proxy, "/endpoints/loan/predict") is None
    with pytest.raises(UnauthorizedError):
        check.check(behind_proxy, "/endpoints/loan/deploy")


def test_hosts(gate):
    check, _, _ = gate
    for host in ("127.0.0.5:8000", "localhost", "[::1]:8000", "ops.localhost"):
        assert check.check(scope("GET", "/endpoints", host=host)) is None, host
    for host in ("127.0.0.1.evil.example", "1270.0.0.1", "evil.example", "127.0.0.256"):
        with pytest.raises(UnknownHostError):
            check.check(scope("GET", "/endpoints", host=host))
    assert check.check(scope("GET", "/endpoints", host=None)) is None  # HTTP/1.0: no Host
    named = RequestGate(check.verifier, AccessPolicy(allowed_hosts=frozenset({"Models.Corp"})))
    assert named.check(scope("GET", "/endpoints", host="models.corp:443")) is None


def test_a_csrf_header_that_is_not_ascii_is_a_403_not_a_crash(gate):
    check, tokens, _ = gate
    cookie = f"prodml_session={tokens['deployer']}"
    with pytest.raises(ForbiddenError):
        check.check(scope("POST", "/endpoints/loan/pause", cookie=cookie,
                          x_csrf_token="\xe9t\xe9"))
    assert check.check(scope("POST", "/endpoints/loan/pause", cookie=cookie,
                             x_csrf_token=csrf_token(tokens["deployer"]))).name == "a-deployer"
    # an open route asks no CSRF token of a signed-in browser (nothing to protect there)
    assert check.check(scope("POST", "/endpoints/loan/predict", cookie=cookie)) is not None


def test_json_routes_refuse_other_bodies_even_without_a_token(gate):
    check, _, _ = gate
    with pytest.raises(UnsupportedMediaTypeError):
        check.check(scope("POST", "/feedback", content_type="text/plain",
                          content_length="10"))


def test_made_up_tokens_cost_the_store_a_few_queries_a_second(gate):
    from sqlalchemy import event

    check, _, store = gate
    queries = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: queries.append(statement))
    for i in range(500):
        with pytest.raises(UnauthorizedError):
            check.check(scope("GET", "/endpoints", authorization=f"Bearer pml_junk{i}"))
    lookups = [q for q in queries if "access_tokens" in q]
    assert 1 <= len(lookups) <= 3 * check.verifier.max_lookups  # a few seconds' worth at most


def test_a_store_that_cannot_be_read_is_a_503(gate, tmp_path):
    check, tokens, store = gate
    store.engine.dispose()
    (tmp_path / "p.db").unlink()
    (tmp_path / "p.db").mkdir()  # the database is gone; a folder stands where it was
    fresh = RequestGate(TokenVerifier(store), AccessPolicy())
    with pytest.raises(IdentityUnavailableError) as refused:
        fresh.check(scope("POST", "/endpoints/loan/pause",
                          authorization=f"Bearer {tokens['deployer']}"))
    assert refused.value.http_status == 503
    # in each protocol's shape; MLflow's names a 503 as its own server does
    assert orjson.loads(error_body(refused.value, "/invocations"))["error_code"] == \
        "TEMPORARILY_UNAVAILABLE"
    assert orjson.loads(error_body(UnauthorizedError("no token", field="authorization",
                                                     value=None, rule="r"), "/invocations")
                        )["error_code"] == "UNAUTHENTICATED"
    assert "error" in orjson.loads(error_body(refused.value, "/v2/models/loan/infer"))
