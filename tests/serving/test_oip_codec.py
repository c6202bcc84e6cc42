"""The Open Inference Protocol codec against tritonclient's own encoder and decoder.

Request bodies are built by ``tritonclient.http.InferenceServerClient.generate_request_body``
(binary tensors by default, JSON with ``binary_data=False``) and replies are read back with
``InferenceServerClient.parse_response_body``, so the codec is checked against the client
users run, without a server.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient

from prodml.errors import InvalidInputError
from prodml.serving.protocols import oip, tensors
from prodml.serving.service import Scored

SPEC = [{"name": "age", "type": "integer"}, {"name": "salary", "type": "float"},
        {"name": "car", "type": "category"}, {"name": "owner", "type": "boolean"}]
NUMERIC = [{"name": "age", "type": "integer"}, {"name": "salary", "type": "float"},
           {"name": "hyears", "type": "integer"}]
Client = httpclient.InferenceServerClient


def tensor(name: str, values: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    datatype = "BYTES" if values.dtype == object else {
        "b": "BOOL"}.get(values.dtype.kind) or {np.dtype(t).str: k for k, t in
                                                 tensors.NUMPY_TYPES.items()}[values.dtype.str]
    t = httpclient.InferInput(name, list(values.shape), datatype)
    t.set_data_from_numpy(values, binary_data=binary)
    return t


def request(inputs, outputs=None, **kwargs) -> tuple[bytes, dict[str, str]]:
    body, json_size = Client.generate_request_body(inputs, outputs=outputs, **kwargs)
    if isinstance(body, str):
        body = body.encode()
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    return body, headers


def loan_inputs(binary: bool, shape_2d: bool = False):
    age = np.array([30, 41, 57], dtype=np.int64)
    salary = np.array([52000.5, 61000.0, 75000.25], dtype=np.float64)
    car = np.array(["sedan", "coupé", "🚗"], dtype=object)
    owner = np.array([True, False, True])
    cols = {"age": age, "salary": salary, "car": car, "owner": owner}
    if shape_2d:
        cols = {k: v.reshape(-1, 1) for k, v in cols.items()}
    return [tensor(k, v, binary) for k, v in cols.items()]


EXPECTED = {"age": [30, 41, 57], "salary": [52000.5, 61000.0, 75000.25],
            "car": ["sedan", "coupé", "🚗"], "owner": [True, False, True]}


def decode(body: bytes, headers: dict[str, str], spec=SPEC, **kw) -> oip.DecodedInfer:
    return oip.decode_infer_request(body, headers, spec, **kw)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_request_decodes_to_typed_columns(binary):
    body, headers = request(loan_inputs(binary), request_id="r-1")
    assert bool(headers) is binary
    decoded = decode(body, headers)
    assert decoded.columns == EXPECTED
    assert [type(v) for v in decoded.columns["age"]] == [int] * 3
    assert [type(v) for v in decoded.columns["salary"]] == [float] * 3
    assert decoded.id == "r-1" and decoded.rows == 3
    # no outputs named: tritonclient asks for binary outputs
    assert decoded.binary_output is True and decoded.requested_outputs is None


def test_columns_follow_signature_order_and_accept_rows_by_one():
    body, headers = request(list(reversed(loan_inputs(True, shape_2d=True))))
    assert list(decode(body, headers).columns) == [c["name"] for c in SPEC]


def test_json_data_may_be_nested_or_flat():
    flat = {"inputs": [{"name": "age", "shape": [2, 1], "datatype": "INT32", "data": [1, 2]}]}
    nested = {"inputs": [{"name": "age", "shape": [2, 1], "datatype": "INT32",
                          "data": [[1], [2]]}]}
    spec = [{"name": "age", "type": "integer"}]
    assert decode(orjson.dumps(flat), {}, spec).columns == {"age": [1, 2]}
    assert decode(orjson.dumps(nested), {}, spec).columns == {"age": [1, 2]}


def test_json_request_without_content_type_or_header():
    # tritonclient sends JSON with no Content-Type header at all; headers play no part.
    body, headers = request(loan_inputs(False))
    assert headers == {}
    assert decode(body, {"content-type": "application/octet-stream"}).columns == EXPECTED


def test_narrow_and_half_precision_types_convert():
    inputs = [tensor("age", np.array([30, 41], dtype=np.uint8)),
              tensor("salary", np.array([1.5, 2.25], dtype=np.float16)),
              tensor("hyears", np.array([3, 4], dtype=np.int16))]
    body, headers = request(inputs)
    assert decode(body, headers, NUMERIC).columns == {"age": [30, 41], "salary": [1.5, 2.25],
                                                      "hyears": [3, 4]}
    # integers are fine for a float column (they become floats)
    body, headers = request([tensor("age", np.array([1], np.int64)),
                             tensor("salary", np.array([7], np.int32)),
                             tensor("hyears", np.array([2], np.int64))])
    assert decode(body, headers, NUMERIC).columns["salary"] == [7.0]


def test_bf16_binary_tensor():
    bits = (np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    header = orjson.dumps({"inputs": [{"name": "salary", "shape": [2], "datatype": "BF16",
                                       "parameters": {"binary_data_size": 4}}]})
    decoded = decode(header + bits.tobytes(), {"Inference-Header-Content-Length":
                                               str(len(header))},
                     [{"name": "salary", "type": "float"}])
    assert decoded.columns == {"salary": [1.5, -2.0]}


@pytest.mark.parametrize("how", ["input", "request", "guessed"])
def test_single_matrix_input_maps_columns_in_signature_order(how):
    matrix = np.array([[30, 52000.5, 3], [41, np.nan, 4], [np.nan, 7.0, 5]], dtype=np.float64)
    if how == "input":
        header = orjson.dumps({"inputs": [{"name": "X", "shape": [3, 3], "datatype": "FP64",
                                           "parameters": {"content_type": "np",
                                                          "binary_data_size": matrix.nbytes}}]})
        body, headers = header + matrix.tobytes(), {
            "Inference-Header-Content-Length": str(len(header))}
    else:
        body, headers = request([tensor("input-0", matrix)],
                                parameters={"content_type": "np"} if how == "request" else None)
    columns = decode(body, headers, NUMERIC).columns
    assert columns["age"] == [30, 41, None]  # NaN in an integer column is a missing value
    assert columns["salary"][0] == 52000.5 and math.isnan(columns["salary"][1])
    assert columns["hyears"] == [3, 4, 5] and type(columns["hyears"][0]) is int


def test_bytes_matrix_for_text_columns():
    spec = [{"name": "city", "type": "string"}, {"name": "plan", "type": "category"}]
    grid = np.array([["Paris", "basic"], ["Lyon", "pro"]], dtype=object)
    body, headers = request([tensor("X", grid)], parameters={"content_type": "np"})
    assert decode(body, headers, spec).columns == {"city": ["Paris", "Lyon"],
                                                   "plan": ["basic", "pro"]}


def test_json_nulls_and_nan():
    spec = [{"name": "salary", "type": "float"}, {"name": "age", "type": "integer"}]
    body = json.dumps({"inputs": [
        {"name": "salary", "shape": [3], "datatype": "FP64", "data": [1.5, None, float("nan")]},
        {"name": "age", "shape": [3], "datatype": "INT64", "data": [None, 2, 3]}]}).encode()
    columns = decode(body, {}, spec).columns
    assert columns["salary"][:2] == [1.5, None] and math.isnan(columns["salary"][2])
    assert columns["age"] == [None, 2, 3]


def test_requested_outputs_and_parameters():
    outputs = [httpclient.InferRequestedOutput("predict_proba", binary_data=False),
               httpclient.InferRequestedOutput("predict")]
    body, headers = request(loan_inputs(True), outputs, parameters={"routing_key": "u-7"})
    decoded = decode(body, headers, outputs=["predict", "predict_proba"])
    assert decoded.requested_outputs == (oip.RequestedOutput("predict_proba", False),
                                         oip.RequestedOutput("predict", True))
    assert decoded.binary_output is False and decoded.parameters["routing_key"] == "u-7"


def test_without_a_signature_inputs_pass_through():
    body, headers = request(loan_inputs(True))
    assert decode(body, headers, spec=[]).columns == EXPECTED


# -- refusals: each names the field and the rule ------------------------------------------

def refused(body: bytes, headers: dict | None = None, spec=SPEC, **kw) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        decode(body, headers or {}, spec, **kw)
    return caught.value


def one(name="salary", datatype="FP64", shape=(2,), data=(1.0, 2.0), **extra) -> bytes:
    return orjson.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": list(shape),
                                     "data": list(data), **extra}]})


FLOAT = [{"name": "salary", "type": "float"}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_wrong_datatype_names_the_column(binary):
    inputs = loan_inputs(binary)
    inputs[2] = tensor("car", np.array([1.0, 2.0, 3.0]), binary)  # FP64 for a category
    error = refused(*request(inputs))
    assert error.field == "car.datatype" and error.value == "FP64"
    assert "category column" in error.rule and "BYTES" in error.rule
    inputs = loan_inputs(binary)
    inputs[1] = tensor("salary", np.array(["a", "b", "c"], dtype=object), binary)
    error = refused(*request(inputs))
    assert error.field == "salary.datatype" and "FP64" in error.rule


def test_float_datatype_for_integer_column_is_refused():
    error = refused(one("age", "FP64", data=[1.0, 2.0]), spec=[{"name": "age",
                                                                 "type": "integer"}])
    assert error.field == "age.datatype" and "INT64" in error.rule


def test_unknown_datatype():
    error = refused(one(datatype="FLOAT64"), spec=FLOAT)
    assert error.field == "salary.datatype" and "FP64" in error.rule


def test_shape_mismatch_json():
    error = refused(one(shape=(3,)), spec=FLOAT)
    assert error.field == "salary.shape" and "3 elements" in error.rule


def test_shape_must_be_a_column():
    error = refused(one(shape=(1, 2)), spec=FLOAT)
    assert error.field == "salary.shape" and "[rows]" in error.rule


def test_bad_shape_values():
    for shape in ([-1], ["2"], 2, [True]):
        error = refused(orjson.dumps({"inputs": [{"name": "salary", "datatype": "FP64",
                                                  "shape": shape, "data": [1.0]}]}), spec=FLOAT)
        assert error.field == "salary.shape"


def edited(inputs, edit) -> tuple[bytes, dict[str, str]]:
    """A tritonclient body whose JSON header ``edit`` changed (binary part kept)."""
    body, headers = request(inputs)
    size = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:size])
    edit(header)
    new = orjson.dumps(header)
    return new + body[size:], {"Inference-Header-Content-Length": str(len(new))}


def test_binary_size_mismatch():
    def shrink(header):
        header["inputs"][0]["parameters"]["binary_data_size"] = 12

    body, headers = edited([tensor("salary", np.array([1.0, 2.0]))], shrink)
    error = refused(body[:-4], headers, FLOAT)
    assert error.field == "salary.parameters.binary_data_size" and "16" in error.rule


def test_binary_size_past_the_body():
    body, headers = request([tensor("salary", np.array([1.0, 2.0]))])
    error = refused(body[:-4], headers, FLOAT)
    assert error.field == "salary.parameters.binary_data_size"


def test_extra_binary_bytes():
    body, headers = request([tensor("salary", np.array([1.0, 2.0]))])
    error = refused(body + b"\0\0", headers, FLOAT)
    assert error.field == "body" and "binary_data_size" in error.rule


def test_binary_body_without_header_length():
    body, headers = request([tensor("salary", np.array([1.0, 2.0]))])
    error = refused(body, {}, FLOAT)
    length = headers["Inference-Header-Content-Length"]
    assert error.field == "Inference-Header-Content-Length", error
    assert f"send Inference-Header-Content-Length: {length}" in error.rule
    assert "UTF-8" not in error.rule and "surrogates" not in error.rule


@pytest.mark.parametrize("value", ["abc", "0", "-5", "999999"])
def test_bad_header_length(value):
    body, _ = request([tensor("salary", np.array([1.0, 2.0]))])
    error = refused(body, {"inference-header-content-length": value}, FLOAT)
    assert error.field == "Inference-Header-Content-Length"


def test_truncated_bytes_element():
    raw = (5).to_bytes(4, "little") + b"abc"
    header = orjson.dumps({"inputs": [{"name": "car", "datatype": "BYTES", "shape": [1],
                                       "parameters": {"binary_data_size": len(raw)}}]})
    error = refused(header + raw, {"Inference-Header-Content-Length": str(len(header))},
                    [{"name": "car", "type": "string"}])
    assert error.field == "car.data" and "past the end" in error.rule


def test_bytes_element_count_must_match_shape():
    def grow(header):
        header["inputs"][0]["shape"] = [3]

    body, headers = edited([tensor("car", np.array(["a", "b"], dtype=object))], grow)
    error = refused(body, headers, [{"name": "car", "type": "string"}])
    assert error.field == "car.shape"


def test_non_utf8_text():
    body, headers = request([tensor("car", np.array([b"\xff\xfe"], dtype=object))])
    error = refused(body, headers, [{"name": "car", "type": "string"}])
    assert error.field == "car" and "UTF-8" in error.rule


def test_binary_bool_bytes_must_be_0_or_1():
    header = orjson.dumps({"inputs": [{"name": "owner", "datatype": "BOOL", "shape": [2],
                                       "parameters": {"binary_data_size": 2}}]})
    error = refused(header + b"\x01\x07", {"Inference-Header-Content-Length":
                                           str(len(header))}, [{"name": "owner",
                                                                "type": "boolean"}])
    assert error.field == "owner"


def test_missing_column():
    body, headers = request(loan_inputs(True)[:3])
    error = refused(body, headers)
    assert error.field == "owner" and "required" in error.rule


def test_unknown_column():
    inputs = loan_inputs(True) + [tensor("colour", np.array(["r", "g", "b"], dtype=object))]
    error = refused(*request(inputs))
    assert error.field == "colour" and "not an input" in error.rule and "age" in error.rule


def test_duplicate_input():
    body = orjson.dumps({"inputs": [orjson.loads(one())["inputs"][0]] * 2})
    assert refused(body, spec=FLOAT).rule == "appears twice"


def test_columns_must_have_the_same_rows():
    body, headers = request([tensor("age", np.array([1, 2], np.int64)),
                             tensor("salary", np.array([1.0, 2.0, 3.0])),
                             tensor("hyears", np.array([1, 2], np.int64))])
    error = refused(body, headers, NUMERIC)
    assert error.field == "salary.shape" and "same number of rows" in error.rule


def test_matrix_width_must_match_signature():
    body, headers = request([tensor("X", np.zeros((2, 2)))], parameters={"content_type": "np"})
    error = refused(body, headers, NUMERIC)
    assert error.field == "X.shape" and "age, salary, hyears" in error.rule


def test_matrix_with_fractional_integer_column():
    body, headers = request([tensor("X", np.array([[1.5, 2.0, 3.0]]))])
    error = refused(body, headers, NUMERIC)
    assert error.field == "age" and "whole numbers" in error.rule


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"), (b"[1, 2]", "body"), (b'"x"', "body"),
    (b"{}", "inputs"), (b'{"inputs": []}', "inputs"), (b'{"inputs": [1]}', "inputs[0]"),
    (b'{"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}', "inputs[0].name"),
    (b'{"id": 5, "inputs": []}', "id"),
    (b'{"parameters": [], "inputs": []}', "parameters"),
    (b'{"parameters": {"binary_data_output": "yes"}, "inputs": []}',
     "parameters.binary_data_output"),
])
def test_malformed_requests(body, field):
    assert refused(body, spec=FLOAT).field == field


@pytest.mark.parametrize("data, field", [
    ("abc", "salary.data"), ([[1.0], [2.0, 3.0]], "salary.data"), (["a", "b"], "salary"),
    ([True, False], "salary"), ([{"x": 1}, 2.0], "salary"),
])
def test_bad_json_data(data, field):
    body = orjson.dumps({"inputs": [{"name": "salary", "datatype": "FP64", "shape": [2],
                                     "data": data}]})
    assert refused(body, spec=FLOAT).field == field


def test_integer_out_of_range():
    error = refused(one("age", "INT8", data=[1, 300]), spec=[{"name": "age",
                                                              "type": "integer"}])
    assert error.field == "age" and error.value == 300 and "INT8" in error.rule


def test_data_and_binary_size_together():
    body = orjson.dumps({"inputs": [{"name": "salary", "datatype": "FP64", "shape": [1],
                                     "data": [1.0], "parameters": {"binary_data_size": 8}}]})
    error = refused(body + b"\0" * 8, {"Inference-Header-Content-Length":
                                       str(len(body))}, FLOAT)
    assert error.field == "salary.data"


def test_missing_data():
    body = orjson.dumps({"inputs": [{"name": "salary", "datatype": "FP64", "shape": [1]}]})
    assert refused(body, spec=FLOAT).field == "salary.data"


def test_zero_rows():
    error = refused(one(shape=(0,), data=()), spec=FLOAT)
    assert error.field == "inputs" and "at least one row" in error.rule


def test_unknown_requested_output():
    body = orjson.dumps({"inputs": orjson.loads(one())["inputs"],
                         "outputs": [{"name": "logits"}]})
    error = refused(body, spec=FLOAT, outputs=["predict", "predict_proba"])
    assert error.field == "outputs[0].name" and "predict_proba" in error.rule


# -- replies, read back with tritonclient --------------------------------------------------

def scored(predictions=("yes", "no", "yes"), probabilities=((0.2, 0.8), (0.9, 0.1),
                                                             (0.3, 0.7)),
           classes=("no", "yes"), statuses=None) -> Scored:
    n = len(predictions)
    return Scored(prediction_ids=[f"p{i}" for i in range(n)], predictions=list(predictions),
                  probabilities=None if probabilities is None else [list(p) if p else None
                                                                    for p in probabilities],
                  classes=None if classes is None else list(classes),
                  confidence=[0.8, 0.9, 0.7][:n], model_name="loan", model_version=2,
                  route="primary", statuses=list(statuses or ["ok"] * n))


def read_back(body: bytes, headers: dict[str, str]):
    size = headers.get("inference-header-content-length")
    return Client.parse_response_body(body, header_length=None if size is None else int(size))


def decoded_request(binary_output=True, outputs=None, request_id="abc") -> oip.DecodedInfer:
    return oip.DecodedInfer({"age": [1, 2, 3]}, request_id, {}, outputs, binary_output)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_reply_reads_back_in_tritonclient(binary):
    body, headers = oip.encode_infer_response(scored(), decoded_request(binary), "loan", None)
    assert ("inference-header-content-length" in headers) is binary
    result = read_back(body, headers)
    # binary BYTES come back as bytes, JSON ones as str
    expected = [b"yes", b"no", b"yes"] if binary else ["yes", "no", "yes"]
    assert result.as_numpy("predict").tolist() == expected
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (3, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba, [[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])
    reply = result.get_response()
    assert reply["model_name"] == "loan" and reply["model_version"] == "2"
    assert reply["id"] == "abc"
    assert reply["parameters"]["prediction_ids"] == ["p0", "p1", "p2"]
    assert reply["parameters"]["route"] == "primary" and "statuses" not in reply["parameters"]
    assert result.get_output("predict_proba")["parameters"]["classes"] == ["no", "yes"]


def test_numeric_answers_are_int64_or_fp64():
    body, headers = oip.encode_infer_response(
        scored(predictions=(0, 1, 1), classes=(0, 1)), decoded_request(True), "loan", 1)
    result = read_back(body, headers)
    assert result.get_output("predict")["datatype"] == "INT64"
    assert result.as_numpy("predict").tolist() == [0, 1, 1]
    body, headers = oip.encode_infer_response(
        scored(predictions=(0.5, 1.25, 2.0), probabilities=None, classes=None),
        decoded_request(True), "price", 1)
    result = read_back(body, headers)
    assert result.get_output("predict")["datatype"] == "FP64"
    assert result.as_numpy("predict").tolist() == [0.5, 1.25, 2.0]
    assert result.get_output("predict_proba") is None


def test_requested_outputs_only_and_per_output_binary():
    wanted = (oip.RequestedOutput("predict_proba", False), oip.RequestedOutput("confidence",
                                                                               True))
    body, headers = oip.encode_infer_response(scored(), decoded_request(False, wanted), "loan",
                                              2)
    result = read_back(body, headers)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba",
                                                                      "confidence"]
    assert "data" in result.get_output("predict_proba")
    assert "binary_data_size" in result.get_output("confidence")["parameters"]
    np.testing.assert_allclose(result.as_numpy("confidence"), [0.8, 0.9, 0.7])


def test_rows_sent_to_review_have_no_answer():
    reply = scored(predictions=("yes", None, "no"), probabilities=((0.2, 0.8), None,
                                                                    (0.9, 0.1)),
                   statuses=["ok", "review", "ok"])
    body, headers = oip.encode_infer_response(reply, decoded_request(True), "loan", 2)
    result = read_back(body, headers)
    assert result.as_numpy("predict").tolist() == [b"yes", b"", b"no"]
    assert np.isnan(result.as_numpy("predict_proba")[1]).all()
    assert result.get_response()["parameters"]["statuses"] == ["ok", "review", "ok"]
    numbers = scored(predictions=(1, None, 0), classes=(0, 1), statuses=["ok", "review", "ok"])
    body, headers = oip.encode_infer_response(numbers, decoded_request(False), "loan", 2)
    result = read_back(body, headers)
    assert result.get_output("predict")["datatype"] == "FP64"
    assert np.isnan(result.as_numpy("predict")[1])


def test_error_body_is_what_tritonclient_reads():
    error = InvalidInputError("car.datatype", "FP64", "'car' is a category column: send BYTES")
    body = orjson.loads(oip.error_body(error))
    assert body["error"] == str(error) and body["field"] == "car.datatype"


def test_metadata_tensors():
    assert oip.input_metadata(SPEC) == [
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "salary", "datatype": "FP64", "shape": [-1]},
        {"name": "car", "datatype": "BYTES", "shape": [-1]},
        {"name": "owner", "datatype": "BOOL", "shape": [-1]}]
    assert oip.output_metadata([{"name": "predict", "type": "string"},
                                {"name": "predict_proba", "type": "float"}], ["no", "yes"]) == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}]
