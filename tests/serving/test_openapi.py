"""The OpenAPI document of the server's app, read without a server: every operation says what
its success is, that the gate may refuse it, and nothing FastAPI would answer instead (422).

The live conformance of the answers to this document is ``test_fuzz.py``'s work; this catches a
route added without its ``responses=`` (:mod:`prodml.serving.openapi`) before any request.
"""

from __future__ import annotations

import pytest

from prodml.serving.app import create_app
from prodml.store import open_store

TEXT_ROUTES = {"/ping", "/health", "/version", "/metrics"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("openapi")
    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    return create_app(store, admin_token="secret").openapi()


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def test_every_success_has_a_schema_and_text_routes_are_text(spec):
    for path, method, operation in operations(spec):
        ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert len(ok) == 1, (method, path, list(operation["responses"]))
        (content,) = [r["content"] for r in ok.values()]
        if path in TEXT_ROUTES:
            assert list(content) == [("text/plain; version=0.0.4; charset=utf-8"
                                      if path == "/metrics" else "text/plain")], path
            continue
        schema = content["application/json"]["schema"]
        assert schema not in ({}, None), (method, path)


def test_every_operation_declares_the_gates_refusals_in_its_protocols_shape(spec):
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        refusals = {"400", "401"} | ({"403", "413", "415"} if method == "POST" else set())
        assert refusals <= set(responses), (method, path, sorted(responses))
        shape = ("OipError" if path.startswith("/v2") else
                 "MlflowError" if path.endswith("/invocations") else "Error")
        for code in refusals:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, (method, path, code)
        assert responses["401"]["headers"]["WWW-Authenticate"]


def test_routes_that_need_a_token_say_so(spec):
    security = {(m, p): o["security"] for p, m, o in operations(spec)}
    assert security[("POST", "/endpoints/{name}/deploy")] == [{"bearer": []}]
    assert security[("POST", "/feedback")] == [{"bearer": []}]
    assert security[("POST", "/endpoints/{name}/predict")] == [{}, {"bearer": []}]
    assert security[("GET", "/ping")] == [{}, {"bearer": []}]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_docs_and_ui_are_not_operations(spec):
    assert not any(p.startswith(("/docs", "/ui", "/redoc")) or p == "/" for p in spec["paths"])
