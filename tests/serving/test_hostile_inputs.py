"""Inputs a client should not send, against a real ``prodml serve``: each is a 4xx with a JSON
body naming the field, the value and the rule; none is a 500, none breaks the kept-alive
connection, and none counts against a model or moves a canary's guards.

One server for the module (see conftest). Besides ``loan`` (a version with a data schema) it
serves ``bare``: versions registered with an input example only, so their checks are the
signature's (types, no ranges), which is where non-finite numbers used to reach the model.
"""

from __future__ import annotations

import gzip
import json
import time

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from prodml.serving.protocols import MAX_JSON_DEPTH
from prodml.serving.validation import FINITE_RULE
from prodml.store import tables as t
from tests.serving.conftest import FEATURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bare(served):
    """Endpoint ``bare``: ``bare/1`` serves; ``bare/2`` is registered, ready for a canary."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prodml.serving import endpoints as eps
    from prodml.tracking import registry

    X, y = served.data[FEATURES], served.data["approved"]
    for c in (1.0, 0.5):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))
        registry.register("bare", model.fit(X, y), input_example=X, store=served.store)
    eps.deploy("bare", "bare/1", store=served.store, reason="signature-only checks")
    with served.client() as client:
        assert served.wait_for(lambda: client.post(
            "/endpoints/bare/predict", json=served.records(1)[0]).status_code == 200,
            timeout=30)
    return "bare"


def still_alive(client: httpx.Client) -> None:
    """The same kept-alive connection answers the next request (a 500 used to close it)."""
    assert client.get("/endpoints/loan").status_code == 200


def assert_refused(response: httpx.Response, codes: tuple[int, ...] = (400,)) -> dict:
    assert response.status_code in codes, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


# ---- finding 3: non-finite numbers are the client's mistake, on every protocol ---------------

def _record(served) -> dict:
    return served.records(1)[0]


def _plain_token(served, token: str) -> bytes:
    return json.dumps({**_record(served), "salary": 1.5}).replace("1.5", token).encode()


def _oip(served, value: float, binary: bool) -> tuple[bytes, dict]:
    with served.client() as client:
        types = {i["name"]: i["datatype"] for i in client.get("/v2/models/bare").json()["inputs"]}
    record = _record(served)
    inputs = []
    for name in FEATURES:
        tensor = {"name": name, "shape": [1], "datatype": types[name]}
        if name == "salary" and binary:
            tensor["parameters"] = {"binary_data_size": 8}
        else:
            tensor["data"] = [value if name == "salary" else record[name]]
        inputs.append(tensor)
    header = json.dumps({"inputs": inputs}).encode()  # json writes Infinity
    if not binary:
        return header, {"content-type": "application/json"}
    return header + np.array([value], "<f8").tobytes(), {
        "inference-header-content-length": str(len(header)),
        "content-type": "application/octet-stream"}


def _requests(served) -> dict[str, tuple[str, bytes, dict]]:
    json_type = {"content-type": "application/json"}
    record = _record(served)
    csv = ",".join(FEATURES) + "\n" + ",".join(
        "inf" if k == "salary" else str(record[k]) for k in FEATURES)
    split = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[
        float("inf") if k == "salary" else record[k] for k in FEATURES]]}}).encode()
    many = json.dumps({"records": [record, {**record, "salary": float("-inf")}]}).encode()
    return {
        "plain Infinity": ("/endpoints/bare/predict", _plain_token(served, "Infinity"), json_type),
        "plain 1e309": ("/endpoints/bare/predict", _plain_token(served, "1e309"), json_type),
        "plain -Infinity, 2nd record": ("/endpoints/bare/predict", many, json_type),
        "plain 400-digit integer": ("/endpoints/bare/predict",
                                    _plain_token(served, "1" + "0" * 400), json_type),
        "OIP JSON": ("/v2/models/bare/infer", *_oip(served, float("inf"), binary=False)),
        "OIP binary": ("/v2/models/bare/infer", *_oip(served, float("inf"), binary=True)),
        "MLflow CSV": ("/endpoints/bare/invocations", csv.encode(), {"content-type": "text/csv"}),
        "MLflow JSON": ("/endpoints/bare/invocations", split, json_type),
    }


REQUESTS = ["plain Infinity", "plain 1e309", "plain -Infinity, 2nd record",
            "plain 400-digit integer", "OIP JSON", "OIP binary", "MLflow CSV", "MLflow JSON"]


@pytest.mark.parametrize("kind", REQUESTS)
def test_non_finite_numbers_are_a_400_naming_the_field(served, bare, kind):
    path, body, headers = _requests(served)[kind]
    with served.client() as client:
        response = client.post(path, content=body, headers=headers)
        error = assert_refused(response)
        still_alive(client)
    # each protocol's error shape: plain {"field", "rule"}, OIP {"error", "field", "rule"},
    # MLflow {"error_code", "message", "field", "rule"}
    assert error["field"].endswith("salary"), error
    assert error["rule"] == FINITE_RULE, error
    if kind == "plain -Infinity, 2nd record":
        assert error["field"] == "records[1].salary"


def _errors_logged(served, endpoint: str) -> int:
    with served.store.read() as conn:
        return conn.execute(select(func.count()).select_from(t.predictions).where(
            t.predictions.c.endpoint == endpoint, t.predictions.c.status == "error")).scalar()


def test_non_finite_numbers_never_count_against_the_model_or_move_a_canary(served, bare):
    """12 requests with Infinity among 30 good ones used to roll a healthy canary back."""
    from prodml.serving import endpoints as eps

    with served.client() as client:
        deployed = client.post("/endpoints/bare/deploy", json={
            "model": "bare/2", "strategy": "canary", "steps": [50, 100],
            "step_every_requests": 10_000, "reason": "healthy candidate",
            "guards": {"max_error_rate": 0.05, "min_requests": 5}})
        assert deployed.status_code == 200, deployed.text
        canary_spec = deployed.json()["spec"]
        assert served.wait_for(lambda: client.post(
            "/endpoints/bare/predict", json=_record(served)).json().get("revision")
            == deployed.json()["revision"])
        requests = _requests(served)
        good = bad = 0
        for i in range(42):
            if i % 7 in (2, 5):  # 12 of 42, over the protocols that used to reach the model
                path, body, headers = requests[("MLflow CSV", "OIP JSON", "plain 1e309")[i % 3]]
                response = client.post(path, content=body, headers={
                    **headers, "x-prodml-routing-key": f"user-{i}"})
                assert response.status_code == 400, response.text
                bad += 1
            else:
                response = client.post("/endpoints/bare/predict",
                                       json={**served.records(1, i)[0],
                                             "routing_key": f"user-{i}"})
                assert response.status_code == 200, response.text
                good += 1
        time.sleep(2.0)  # the canary controller looks every 0.5 s
        assert client.get("/endpoints/bare").json()["spec"] == canary_spec
        metrics = client.get("/metrics").text
    assert (good, bad) == (30, 12)
    assert _errors_logged(served, "bare") == 0
    assert 'endpoint="bare"' in metrics and not any(
        'status="error"' in line for line in metrics.splitlines()
        if line.startswith("prodml_requests_total") and 'endpoint="bare"' in line)
    # client refusals and server failures are separate series
    assert 'prodml_http_errors_total{code="400",path_kind="predict"}' in metrics
    assert "# TYPE prodml_server_errors_total counter" in metrics
    eps.deploy("bare", "bare/1", store=served.store, reason="back to one version")


def test_missing_values_keep_their_meaning(served, bare):
    """null (and NaN, pandas' missing value) are not non-finite numbers: the schema rules."""
    with served.client() as client:
        response = client.post("/endpoints/bare/predict",
                               content=_plain_token(served, "NaN"))
        error = assert_refused(response)
        assert error["field"] == "salary" and error["rule"] != FINITE_RULE
        response = client.post("/endpoints/bare/predict", json={**_record(served),
                                                                  "salary": None})
        error = assert_refused(response)
        assert error["field"] == "salary" and "null" in error["rule"]


# ---- finding 5: no input answers 500 -----------------------------------------------------------

def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE = [
    ("POST", "/endpoints/loan/predict", '{"records": [{"salary": %s}]}' % deep(990), (400,)),
    ("POST", "/endpoints/loan/predict", '{"record": %s}' % deep(990), (400,)),
    ("POST", "/feedback", deep(990), (400,)),
    ("POST", "/feedback", '{"prediction_id": "x", "label": %s}' % deep(990), (400,)),
    ("POST", "/endpoints/loan/deploy", '{"model": "loan/1", "reason": %s}' % deep(990),
     (400,)),
    ("POST", "/endpoints/loan/rollback", '{"reason": %s}' % deep(990), (400,)),
    ("POST", "/v2/models/loan/infer", '{"inputs": %s}' % deep(990), (400,)),
    ("POST", "/invocations", '{"dataframe_records": %s}' % deep(990), (400,)),
    ("POST", "/reviews/1/resolve", '{"label": %s}' % deep(990), (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/1", "reason": ["a"]}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/1", "reason": {"a": 1}}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/1", "fallback": []}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/1", "fallback": {}}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/2", "strategy": "canary",
                                        "steps": "abc"}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/2", "strategy": "canary",
                                        "steps": [{}]}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/2", "strategy": "shadow",
                                        "percent": "x"}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/2", "strategy": "shadow",
                                        "percent": {}}, (400,)),
    ("POST", "/endpoints/loan/deploy", {"model": "loan/1", "mode": {}}, (400,)),
    ("POST", "/endpoints/loan/pause", {"reason": {"a": 1}}, (400,)),
    ("POST", "/reviews/" + "1" * 30 + "/resolve", {"label": 1}, (400, 404)),
    ("POST", "/reviews/" + "1" * 5000 + "/resolve", {"label": 1}, (400, 404)),
    ("POST", "/reviews/%C2%B2/resolve", {"label": 1}, (400, 404)),
    ("GET", "/v2/models/loan/versions/" + "1" * 5000, None, (400, 404)),
    ("GET", "/v2/models/loan/versions/" + "1" * 5000 + "/ready", None, (400, 404)),
    ("POST", "/v2/models/loan/versions/" + "1" * 5000 + "/infer", {}, (400, 404)),
    ("GET", "/ui/models/loan/" + "1" * 30, None, (404,)),
    ("GET", "/ui/models/loan/%C2%B2", None, (404,)),
    ("GET", "/ui/runs?q=" + "(" * 400 + "metrics.a > 1" + ")" * 400, None, (400,)),
    ("GET", "/ui/runs?q=" + "not%20" * 1200 + "metrics.a%20%3E%201", None, (400,)),
]


@pytest.mark.parametrize("method, path, body, codes", HOSTILE,
                         ids=[f"{m} {p[:40]} {str(b)[:40]}" for m, p, b, _ in HOSTILE])
def test_hostile_inputs_get_a_4xx_and_the_connection_lives(served, method, path, body, codes):
    with served.client() as client:
        if isinstance(body, str):
            response = client.request(method, path, content=body.encode(),
                                      headers={"content-type": "application/json"})
        else:
            response = client.request(method, path, json=body)
        assert response.status_code in codes, (response.status_code, response.text[:300])
        if path.startswith("/ui/"):
            assert "Traceback" not in response.text
        else:
            error = response.json()
            assert error.get("field") and error.get("rule"), error
        still_alive(client)
        assert client.get("/endpoints/loan").json()["spec"] == {"kind": "direct",
                                                                 "model": "loan/1"}


def test_the_depth_limit_names_its_rule(served):
    with served.client() as client:
        ok = client.post("/endpoints/loan/predict", json={
            "record": {**_record(served), "note": json.loads(deep(MAX_JSON_DEPTH - 2))}})
        assert ok.status_code in (200, 400) and "levels deep" not in ok.text
        too_deep = client.post("/endpoints/loan/predict", content=json.dumps(
            {"record": {**_record(served), "note": json.loads(deep(MAX_JSON_DEPTH))}}))
        error = assert_refused(too_deep)
    assert error["field"] == "body"
    assert error["rule"] == f"must not nest arrays and objects more than {MAX_JSON_DEPTH} " \
                            "levels deep"


_POSTS = ["/endpoints/loan/predict", "/feedback", "/endpoints/deep-test/deploy",
          "/endpoints/no-such-endpoint/rollback", "/v2/models/loan/infer", "/invocations",
          "/endpoints/loan/invocations", "/reviews/1/resolve", "/reviews/" + "f" * 32 +
          "/resolve"]
_ENVELOPES = ["%s", '{"record": %s}', '{"records": [{"salary": %s}]}', '{"label": %s}',
              '[{"prediction_id": "%s", "label": %%s}]' % ("f" * 32), '{"reason": %s}',
              '{"model": %s}', '{"spec": %s}', '{"inputs": [{"name": "salary", "shape": [1], '
              '"datatype": "FP64", "data": %s}]}', '{"dataframe_split": {"data": %s}}',
              '{"instances": %s}', '{"inputs": %s, "parameters": %s}']


@st.composite
def deep_bodies(draw) -> tuple[str, str]:
    """A POST route and a JSON body with a value nested up to 1,000 levels inside it."""
    # around the limit, and deep enough that a recursive walk overflows the stack
    levels = draw(st.one_of(st.sampled_from([1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH,
                                             MAX_JSON_DEPTH + 1, 990, 1000]),
                            st.integers(1, 1000)))
    shape = draw(st.sampled_from(["list", "object", "mixed"]))
    leaf = draw(st.sampled_from(["1", "1.5", '"x"', "null", "true", "[]", "{}"]))
    opens, closes = [], []
    for level in range(levels):
        as_list = shape == "list" or (shape == "mixed" and level % 2)
        opens.append("[" if as_list else '{"k":')
        closes.append("]" if as_list else "}")
    value = "".join(opens) + leaf + "".join(reversed(closes))
    envelope = draw(st.sampled_from(_ENVELOPES))
    body = envelope.replace("%s", value) if envelope.count("%s") > 1 else envelope % value
    return draw(st.sampled_from(_POSTS)), body


def test_bodies_nested_up_to_1000_levels_never_answer_500(served):
    seen: dict[int, int] = {}
    with served.client() as client:
        @given(case=deep_bodies())
        @settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def post(case):
            path, body = case
            response = client.post(path, content=body.encode(),
                                   headers={"content-type": "application/json"})
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (path, body[:120], response.text[:300])
            if response.status_code >= 400:
                assert response.json(), response.text

        post()
        still_alive(client)
        assert client.get("/endpoints/loan").json()["spec"] == {"kind": "direct",
                                                                 "model": "loan/1"}
    assert 400 in seen


# ---- finding 10: a trailing newline is not part of a name ---------------------------------------

def test_a_trailing_newline_is_not_a_new_endpoint(served):
    with served.client() as client:
        response = client.post("/endpoints/loan%0A/deploy", json={"model": "loan/1"})
        error = assert_refused(response)
        assert error["field"] == "endpoint", error
        names = [e["name"] for e in client.get("/endpoints").json()]
    assert "loan\n" not in names


# ---- finding 12: errors that say what is wrong ---------------------------------------------------

def test_binary_oip_body_without_its_header_says_so(served):
    with served.client() as client:
        header = json.dumps({"inputs": [{"name": "salary", "shape": [1], "datatype": "FP64",
                                         "parameters": {"binary_data_size": 8}}]}).encode()
        response = client.post("/v2/models/loan/infer",
                               content=header + np.array([1.5]).tobytes(),
                               headers={"content-type": "application/octet-stream"})
        error = assert_refused(response)
    assert error["field"] == "Inference-Header-Content-Length", error
    assert f"Inference-Header-Content-Length: {len(header)}" in error["rule"]
    assert "surrogates" not in response.text


def test_gzip_predict_body_is_decoded_and_unknown_encodings_are_415(served):
    record = orjson.dumps(_record(served))
    with served.client() as client:
        zipped = client.post("/endpoints/loan/predict", content=gzip.compress(record),
                             headers={"content-encoding": "gzip",
                                      "content-type": "application/json"})
        assert zipped.status_code == 200, zipped.text
        assert zipped.json()["model_version"] == 1
        brotli = client.post("/endpoints/loan/predict", content=b"\x0b\x02\x80{}\x03",
                             headers={"content-encoding": "br"})
        error = assert_refused(brotli, (415,))
        assert error["field"] == "Content-Encoding"
        broken = client.post("/endpoints/loan/predict", content=gzip.compress(record)[:20],
                             headers={"content-encoding": "gzip"})
        error = assert_refused(broken)
        undeclared = client.post("/endpoints/loan/predict", content=gzip.compress(record))
        error2 = assert_refused(undeclared)
        still_alive(client)
    for text in (broken.text, undeclared.text):  # the raw bytes are described, never echoed
        assert "\\u001f" not in text and "\\x1f" not in text and "\ufffd" not in text
    assert "gzip" in error2["value"] and "Content-Encoding" in error2["value"]
