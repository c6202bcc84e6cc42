"""Open Inference Protocol v2 against a real ``prodml serve``, driven by tritonclient.

The server is the one ``tests/serving/conftest.py`` starts (endpoint ``loan``: a logistic
regression over nine numeric columns, classes 0 / 1); this module adds ``triage``, a model
with text, category and boolean columns and string classes, to exercise BYTES tensors.
"""

from __future__ import annotations

import gzip
from urllib.parse import urlparse

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import FEATURES

TRIAGE = ["plan", "city", "amount", "vip"]
DTYPES = {"INT64": np.int64, "FP64": np.float64}


@pytest.fixture(scope="module")
def client(served) -> httpclient.InferenceServerClient:
    triton = httpclient.InferenceServerClient(urlparse(served.url).netloc)
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def triage(served, client):
    """Deploy ``triage``: one-hot text and category columns, a flag, an amount; string classes."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from prodml.data.schema import infer_schema
    from prodml.serving import endpoints as eps
    from prodml.tracking import registry

    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], n),
                          "city": rng.choice(["Paris", "Lyon", "Zürich", "Kraków"], n),
                          "amount": rng.normal(100, 30, n).round(2),
                          "vip": rng.random(n) < 0.3})
    label = np.where((frame["plan"] == "basic") & ~frame["vip"], "review", "approve")
    model = make_pipeline(make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan", "city"]), remainder="passthrough"),
        LogisticRegression(max_iter=500)).fit(frame, label)
    registry.register("triage", model, input_example=frame, schema=infer_schema(frame),
                      store=served.store)
    eps.deploy("triage", "triage/1", store=served.store, reason="OIP tests: text columns")
    assert served.wait_for(lambda: _ready(client, "triage"), timeout=30)
    return frame, model


def _ready(client, name: str) -> bool:
    try:
        return client.is_model_ready(name)
    except InferenceServerException:
        return False


def loan_inputs(served, rows: int = 5, binary: bool = True) -> list[httpclient.InferInput]:
    meta = {t["name"]: t["datatype"] for t in
            httpclient.InferenceServerClient(urlparse(served.url).netloc)
            .get_model_metadata("loan")["inputs"]}
    frame = served.data[FEATURES].iloc[:rows]
    inputs = []
    for name in FEATURES:
        values = frame[name].to_numpy(DTYPES[meta[name]])
        tensor = httpclient.InferInput(name, [rows], meta[name])
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def plain_predictions(served, rows: int = 5) -> list:
    """The same rows through prodml's plain JSON route: the answers OIP must match."""
    with served.client() as http:
        reply = http.post("/endpoints/loan/predict", json={"records": served.records(rows)})
    assert reply.status_code == 200, reply.text
    return [p["prediction"] for p in reply.json()["predictions"]]


# -- health and metadata ------------------------------------------------------------------

def test_server_live_ready_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "prodml" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata(client):
    meta = client.get_model_metadata("loan")
    assert meta["name"] == "loan" and meta["versions"] == ["1"]
    assert [t["name"] for t in meta["inputs"]] == FEATURES
    types = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert types["age"] == "INT64" and types["salary"] == "FP64"
    assert all(t["shape"] == [-1] for t in meta["inputs"])
    outputs = {t["name"]: t for t in meta["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"] == {"name": "predict_proba", "datatype": "FP64",
                                        "shape": [-1, 2]}
    assert client.get_model_metadata("loan", "1")["inputs"] == meta["inputs"]


def test_model_ready(client):
    assert client.is_model_ready("loan") and client.is_model_ready("loan", "1")
    assert not client.is_model_ready("nope") and not client.is_model_ready("loan", "9")


# -- inference ----------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_plain_json_route(served, client, binary):
    outputs = None if binary else [httpclient.InferRequestedOutput("predict", binary_data=False),
                                   httpclient.InferRequestedOutput("predict_proba",
                                                                   binary_data=False)]
    result = client.infer("loan", loan_inputs(served, 5, binary), outputs=outputs,
                          request_id="req-7")
    assert result.as_numpy("predict").tolist() == plain_predictions(served, 5)
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (5, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    reply = result.get_response()
    assert reply["model_name"] == "loan" and reply["model_version"] == "1"
    assert reply["id"] == "req-7"
    assert len(set(reply["parameters"]["prediction_ids"])) == 5
    assert reply["parameters"]["route"] == "primary"
    binary_sizes = [o.get("parameters", {}).get("binary_data_size") for o in reply["outputs"]]
    assert all(size is not None for size in binary_sizes) is binary


def test_infer_one_matrix_input(served, client):
    matrix = served.data[FEATURES].iloc[:5].to_numpy(np.float64)
    tensor = httpclient.InferInput("input-0", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix)
    result = client.infer("loan", [tensor], parameters={"content_type": "np"})
    assert result.as_numpy("predict").tolist() == plain_predictions(served, 5)


def test_requested_outputs_only(served, client):
    result = client.infer("loan", loan_inputs(served, 3),
                          outputs=[httpclient.InferRequestedOutput("predict_proba"),
                                   httpclient.InferRequestedOutput("confidence",
                                                                   binary_data=False)])
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["predict_proba", "confidence"]
    assert result.as_numpy("predict") is None
    np.testing.assert_allclose(result.as_numpy("confidence"),
                               result.as_numpy("predict_proba").max(axis=1))


def test_infer_named_version(served, client):
    result = client.infer("loan", loan_inputs(served, 2), model_version="1")
    assert result.get_response()["model_version"] == "1"


def test_gzip_request_body(served, client):
    result = client.infer("loan", loan_inputs(served, 4), request_compression_algorithm="gzip")
    assert result.as_numpy("predict").tolist() == plain_predictions(served, 4)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_text_columns_as_bytes_tensors(triage, client, binary):
    frame, model = triage
    rows = frame.iloc[:6]
    inputs = []
    for name, datatype in (("plan", "BYTES"), ("city", "BYTES"), ("amount", "FP64"),
                           ("vip", "BOOL")):
        values = rows[name].to_numpy(object if datatype == "BYTES" else None)
        tensor = httpclient.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    outputs = None if binary else [httpclient.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer("triage", inputs, outputs=outputs)
    answers = [v.decode() if isinstance(v, bytes) else v
               for v in result.as_numpy("predict").tolist()]
    assert answers == model.predict(rows).tolist()
    assert result.get_output("predict")["datatype"] == "BYTES"
    meta = client.get_model_metadata("triage")
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == {
        "plan": "BYTES", "city": "BYTES", "amount": "FP64", "vip": "BOOL"}


def test_json_request_without_content_type(served):
    """tritonclient sends JSON with no Content-Type; a bare body is read as JSON."""
    rows = served.data[FEATURES].iloc[:2]
    body = orjson.dumps({"inputs": [
        {"name": n, "shape": [2], "datatype": "INT64" if rows[n].dtype.kind == "i" else "FP64",
         "data": rows[n].tolist()} for n in FEATURES]})
    request = httpx.Request("POST", f"{served.url}/v2/models/loan/infer", content=body)
    assert "content-type" not in request.headers
    with httpx.Client() as http:
        reply = http.send(request)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == plain_predictions(served, 2)


# -- errors: 400 {"error"} naming the field and the rule ---------------------------------

def expect_error(call, status: str, *words: str) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    error = caught.value
    assert error.status() == status, error.message()
    for word in words:
        assert word in error.message(), error.message()
    return error


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_wrong_datatype_is_400_naming_the_field(served, client, binary):
    inputs = loan_inputs(served, 2, binary)
    salary = httpclient.InferInput("salary", [2], "BYTES")
    salary.set_data_from_numpy(np.array(["lots", "more"], dtype=object), binary_data=binary)
    inputs[FEATURES.index("salary")] = salary
    expect_error(lambda: client.infer("loan", inputs), "400", "salary", "FP64")


def test_missing_and_unknown_columns(served, client):
    expect_error(lambda: client.infer("loan", loan_inputs(served, 2)[1:]), "400", "salary",
                 "required")
    extra = httpclient.InferInput("colour", [2], "BYTES")
    extra.set_data_from_numpy(np.array(["r", "g"], dtype=object))
    expect_error(lambda: client.infer("loan", loan_inputs(served, 2) + [extra]), "400",
                 "colour", "not an input")


def test_schema_rules_are_400(served, client, triage):
    inputs = loan_inputs(served, 2)
    salary = httpclient.InferInput("salary", [2], "FP64")
    salary.set_data_from_numpy(np.array([50000.0, np.nan]))
    inputs[FEATURES.index("salary")] = salary
    expect_error(lambda: client.infer("loan", inputs), "400", "salary", "NaN")
    tensors = []
    for name, datatype, values in (("plan", "BYTES", ["gold"]), ("city", "BYTES", ["Paris"]),
                                   ("amount", "FP64", [10.0]), ("vip", "BOOL", [True])):
        tensor = httpclient.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.array(values, dtype=object if datatype == "BYTES"
                                            else None))
        tensors.append(tensor)
    expect_error(lambda: client.infer("triage", tensors), "400", "plan", "gold")


def test_unknown_model_and_version_are_404(served, client):
    expect_error(lambda: client.infer("nope", loan_inputs(served, 1)), "404", "nope")
    expect_error(lambda: client.infer("loan", loan_inputs(served, 1), model_version="9"),
                 "404", "9")
    expect_error(lambda: client.get_model_metadata("nope"), "404", "nope")


def test_malformed_bodies_are_400(served):
    with httpx.Client(base_url=served.url) as http:
        for body, headers, field in (
                (b"{not json", {}, "body"),
                (b'{"inputs": []}', {}, "inputs"),
                (b'{"inputs": [{"name": "salary", "shape": [3], "datatype": "FP64", "data": [1]}]}',
                 {}, "salary.shape"),
                (b'{"inputs": []}' + b"\0" * 8, {"Inference-Header-Content-Length": "99"},
                 "Inference-Header-Content-Length")):
            reply = http.post("/v2/models/loan/infer", content=body, headers=headers)
            assert reply.status_code == 400, reply.text
            assert reply.json()["field"] == field and reply.json()["error"]
        reply = http.get("/v2/models/loan/versions/one")
        assert reply.status_code == 400 and reply.json()["field"] == "version"


def test_oversized_body_is_413(served):
    with httpx.Client(base_url=served.url) as http:
        reply = http.post("/v2/models/loan/infer", content=b" " * (17 * 1024 * 1024))
        assert reply.status_code == 413 and "body" in reply.json()["error"]
        bomb = gzip.compress(b" " * (40 * 1024 * 1024))
        reply = http.post("/v2/models/loan/infer", content=bomb,
                          headers={"Content-Encoding": "gzip"})
        assert reply.status_code == 413
