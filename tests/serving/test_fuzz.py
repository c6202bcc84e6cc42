"""Fuzz the live HTTP API from its own OpenAPI document (schemathesis): no 5xx, ever.

Every operation of ``/openapi.json`` gets a bounded number of generated requests (valid and
invalid bodies, headers and path parameters, binary and CSV bodies where the operation takes
them). The server is a real ``prodml serve`` with an admin token, so the admin routes answer
401 to the fuzzer instead of pausing the endpoint its infer requests need. Most generated
requests name the served endpoint ``loan``, so they reach the protocol decoders rather than
stopping at a 404.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from tests.serving.conftest import build_store, free_port, start_server, stop_server

EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzzed_url(tmp_path_factory) -> str:
    from prodml.serving import endpoints as eps

    home = tmp_path_factory.mktemp("fuzz")
    store, _ = build_store(home)
    eps.deploy("loan", "loan/1", store=store, reason="fuzzing")
    port = free_port()
    process, _ = start_server(home, port, env_extra={"PRODML_ADMIN_TOKEN": "fuzz-secret"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


def test_no_server_errors(fuzzed_url):
    """Every operation, valid and invalid inputs: each answer is below 500."""
    api = schemathesis.openapi.from_url(f"{fuzzed_url}/openapi.json")
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        seen = statuses.setdefault(operation.label, set())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(operation, mode, fuzzed_url, seen)
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:20])
    # the generated requests reached the protocol decoders (a 400 names a broken rule)
    for label in ("POST /v2/models/{name}/infer", "POST /endpoints/{name}/invocations",
                  "POST /invocations"):
        assert 400 in statuses[label], (label, statuses[label])


def _fuzz(operation, mode, url: str, statuses: set[int]) -> list[str]:
    found: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        name = (case.path_parameters or {}).get("name")
        if isinstance(name, str) and len(name) % 4:
            case.path_parameters["name"] = "loan"  # reach the decoders, not only the 404
        try:
            statuses.add(case.call_and_validate(base_url=url, checks=[not_a_server_error])
                         .status_code)
        except FailureGroup as exc:  # a failed check: keep going, report them all
            statuses.add(500)
            found.append(f"{operation.label} ({mode.value}): {str(exc)[:600]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return found
