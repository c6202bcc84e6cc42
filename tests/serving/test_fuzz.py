"""Fuzz the live HTTP API from its own OpenAPI document (schemathesis): every answer is one
the document declares, and none is a 5xx.

Every operation of ``/openapi.json`` gets a bounded number of generated requests (valid and
invalid bodies, headers and path parameters, binary and CSV bodies where the operation takes
them), and every answer passes schemathesis' checks: no server error, a declared status code,
a declared content type, a body that matches the declared schema, declared headers.

The server is a real ``prodml serve`` with an admin token, serving endpoint ``loan``. Two
passes: anonymous (the admin and labelling routes answer 401), then with the admin token (the
same checks, plus schemathesis' ``ignored_auth``: a route that requires a token refuses a
request without one or with a wrong one). With the token, the admin routes act on ``scratch``,
an endpoint in the store that this server does not serve, so that ``loan`` keeps answering.
Most other generated requests name ``loan``, so they reach the protocol decoders rather than
stopping at a 404. Known-good requests then check the success answers (200 and their schemas)
of the routes random bodies rarely satisfy: predict, infer, invocations, feedback, deploy.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, ignored_auth, not_a_server_error,
                                 response_headers_conformance, response_schema_conformance,
                                 status_code_conformance)
from schemathesis.core.failures import FailureGroup

from tests.serving.conftest import FEATURES, build_store, free_port, start_server, stop_server

EXAMPLES = 10
ADMIN_TOKEN = "fuzz-secret"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> SimpleNamespace:
    from prodml.serving import endpoints as eps

    home = tmp_path_factory.mktemp("fuzz")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store, reason="fuzzing")
    eps.deploy("scratch", "loan/1", store=store, reason="the admin routes' target")
    port = free_port()
    process, _ = start_server(home, port, "--endpoint", "loan",
                              env_extra={"PRODML_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        url = f"http://127.0.0.1:{port}"
        yield SimpleNamespace(url=url, records=data[FEATURES].iloc[:2].to_dict("records"),
                              api=schemathesis.openapi.from_url(f"{url}/openapi.json"))
    finally:
        stop_server(process)


def test_every_answer_is_declared(fuzzed):
    """Every operation, valid and invalid inputs, anonymous and with the admin token: each
    answer is below 500 and is what the document says."""
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for token in (None, ADMIN_TOKEN):
        for result in fuzzed.api.get_all_operations():
            operation = result.ok()
            seen = statuses.setdefault(operation.label, set())
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failures += _fuzz(operation, mode, fuzzed.url, seen, token)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])
    # the generated requests reached the protocol decoders (a 400 names a broken rule)
    for label in ("POST /v2/models/{name}/infer", "POST /endpoints/{name}/invocations",
                  "POST /invocations"):
        assert 400 in statuses[label], (label, statuses[label])
    # ... and with the token, past the gate of the labelling and admin routes
    for label in ("POST /feedback", "POST /endpoints/{name}/deploy",
                  "POST /endpoints/{name}/pause", "POST /admin/pipelines/{run_id}/resume"):
        assert statuses[label] - {401}, (label, statuses[label])


def test_success_answers_match_their_schemas(fuzzed):
    """The 2xx answers random bodies rarely reach, checked against the document."""
    api, records = fuzzed.api, fuzzed.records
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def call(label: str, status: int, *, headers=None, **case) -> dict:
        method, _, path = label.partition(" ")
        operation = api[path][method]
        response = operation.Case(**case).call_and_validate(base_url=fuzzed.url,
                                                            headers=headers, checks=CHECKS)
        assert response.status_code == status, (label, response.status_code, response.text)
        kind = response.headers.get("content-type", [""])[0]  # each header: a list of values
        return response.json() if "json" in kind else {}

    loan = {"name": "loan"}
    many = call("POST /endpoints/{name}/predict", 200, path_parameters=loan,
                body={"records": records}, media_type="application/json")
    assert len(many["predictions"]) == 2
    one = call("POST /endpoints/{name}/predict", 200, path_parameters=loan,
               body={"record": records[0]}, media_type="application/json")
    tensors = [{"name": n, "shape": [2], "datatype": "FP64" if isinstance(records[0][n], float)
                else "INT64", "data": [r[n] for r in records]} for n in FEATURES]
    for binary in (False, True):
        call("POST /v2/models/{name}/infer", 200, path_parameters=loan,
             body={"inputs": tensors, "parameters": {"binary_data_output": binary}},
             media_type="application/json")
    for label, path in (("POST /endpoints/{name}/invocations", loan),
                        ("POST /invocations", None)):
        call(label, 200, path_parameters=path, body={"dataframe_records": records},
             media_type="application/json")
    call("POST /feedback", 200, headers=admin, media_type="application/json",
         body={"prediction_id": one["prediction_id"], "label": 1})
    scratch = {"name": "scratch"}
    call("POST /endpoints/{name}/deploy", 200, headers=admin, path_parameters=scratch,
         body={"model": "loan/2", "reason": "fuzz"}, media_type="application/json")
    call("POST /endpoints/{name}/rollback", 200, headers=admin, path_parameters=scratch)
    call("GET /endpoints/{name}/history", 200, path_parameters=scratch)
    for label in ("GET /ping", "GET /health", "GET /version", "GET /metrics"):
        call(label, 200)


def _fuzz(operation, mode, url: str, statuses: set[int], token: str | None) -> list[str]:
    found: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else None
    open_ = {} in (operation.definition.raw.get("security") or [{}])
    checks = CHECKS + [ignored_auth] if token else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        name = (case.path_parameters or {}).get("name")
        if token and not open_ and name is not None:
            case.path_parameters["name"] = "scratch"  # change an endpoint nobody uses
        elif isinstance(name, str) and len(name) % 4:
            case.path_parameters["name"] = "loan"  # reach the decoders, not only the 404
        try:
            statuses.add(case.call_and_validate(base_url=url, headers=headers, checks=checks)
                         .status_code)
        except FailureGroup as exc:  # a failed check: keep going, report them all
            statuses.add(500)
            who = "admin" if token else "anonymous"
            found.append(f"{operation.label} ({mode.value}, {who}): {str(exc)[:1500]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return found
