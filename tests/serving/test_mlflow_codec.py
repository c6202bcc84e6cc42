"""MLflow scoring codec: bodies exactly as MLflow's client and pandas write them."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import orjson
import pandas as pd
import pytest

from prodml.errors import InvalidInputError
from prodml.serving.protocols import mlflow_scoring as ms
from prodml.serving.protocols.transport import UnsupportedMediaTypeError
from prodml.serving.service import Scored

SPEC = [{"name": "age", "type": "integer"}, {"name": "salary", "type": "float"},
        {"name": "car", "type": "category"}, {"name": "owner", "type": "boolean"}]
FRAME = pd.DataFrame({"age": [30, 41, 57], "salary": [52000.5, 61000.0, np.nan],
                      "car": ["sedan", "coupé", "van"], "owner": [True, False, True]})
JSON = "application/json"


def mlflow_json(payload) -> bytes:
    """What mlflow's client (``dump_input_data`` + ``_CustomJsonEncoder``) puts on the wire."""
    def default(o):
        if isinstance(o, (dt.datetime, dt.date, pd.Timestamp)):
            return o.isoformat()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o))
    return json.dumps(payload, default=default).encode()


def decode(body: bytes, content_type: str | None = JSON, spec=SPEC) -> ms.Invocation:
    return ms.decode_invocation(body, content_type, spec)


def check_frame(columns: dict) -> None:
    assert list(columns) == ["age", "salary", "car", "owner"]
    assert columns["age"] == [30, 41, 57]
    assert columns["salary"][:2] == [52000.5, 61000.0]
    assert columns["salary"][2] is None or math.isnan(columns["salary"][2])
    assert columns["car"] == ["sedan", "coupé", "van"]
    assert columns["owner"] == [True, False, True]


def test_dataframe_split_as_mlflow_client_sends_it():
    body = mlflow_json({"dataframe_split": FRAME.to_dict(orient="split")})
    assert b"NaN" in body  # Python's json writes the missing salary as NaN
    invocation = decode(body)
    check_frame(invocation.columns)
    assert invocation.format == "dataframe_split" and invocation.rows == 3


def test_dataframe_split_from_to_json():
    body = ('{"dataframe_split": ' + FRAME.to_json(orient="split") + "}").encode()
    check_frame(decode(body).columns)


def test_dataframe_split_columns_in_any_order_and_without_columns():
    shuffled = FRAME[["car", "owner", "age", "salary"]]
    check_frame(decode(mlflow_json({"dataframe_split": shuffled.to_dict(orient="split")}))
                .columns)
    rows = FRAME.to_dict(orient="split")["data"]
    check_frame(decode(mlflow_json({"dataframe_split": {"data": rows}})).columns)


def test_dataframe_records():
    check_frame(decode(mlflow_json({"dataframe_records": FRAME.to_dict(orient="records")}))
                .columns)
    body = ('{"dataframe_records": ' + FRAME.to_json(orient="records") + "}").encode()
    check_frame(decode(body).columns)


def test_instances_as_records_and_as_rows():
    check_frame(decode(mlflow_json({"instances": FRAME.to_dict(orient="records")})).columns)
    check_frame(decode(mlflow_json({"instances": FRAME.values.tolist()})).columns)


def test_inputs_as_columns_and_as_rows():
    columns = {k: v.tolist() for k, v in FRAME.items()}
    check_frame(decode(mlflow_json({"inputs": columns})).columns)
    check_frame(decode(mlflow_json({"inputs": FRAME.values.tolist()})).columns)
    tensors = {k: [[v] for v in vs] for k, vs in columns.items()}  # [rows, 1] tensors
    check_frame(decode(mlflow_json({"inputs": tensors})).columns)


def test_one_column_model_takes_a_flat_list():
    spec = [{"name": "age", "type": "integer"}]
    assert decode(b'{"instances": [30, 41]}', spec=spec).columns == {"age": [30, 41]}
    assert decode(b'{"inputs": {"age": 30}}', spec=spec).columns == {"age": [30]}


def test_params_and_content_type_variants():
    body = mlflow_json({"dataframe_records": FRAME.to_dict(orient="records"),
                        "params": {"routing_key": "u-1"}})
    for content_type in (JSON, "application/json; charset=utf-8",
                         "Application/JSON;charset=UTF-8", None):
        assert decode(body, content_type).params == {"routing_key": "u-1"}


@pytest.mark.parametrize("index", [False, True])
def test_csv_as_pandas_writes_it(index):
    invocation = decode(FRAME.to_csv(index=index).encode(), "text/csv")
    check_frame(invocation.columns)
    assert invocation.format == "csv"
    assert type(invocation.columns["age"][0]) is int
    assert type(invocation.columns["owner"][0]) is bool


def test_csv_integer_column_with_a_gap_written_as_floats():
    frame = pd.DataFrame({"age": [30.0, None], "salary": [1.0, 2.0], "car": ["a", "b"],
                          "owner": [True, True]})
    assert decode(frame.to_csv(index=False).encode(), "text/csv").columns["age"] == [30, None]


def test_csv_without_a_signature_infers_types():
    columns = decode(b"a,b\n1,x\n2,y\n", "text/csv", spec=None).columns
    assert columns == {"a": [1, 2], "b": ["x", "y"]}


def test_datetime_column_arrives_as_iso_text():
    spec = [{"name": "when", "type": "datetime"}]
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-05-01 10:00", "2024-05-02 00:00"])})
    columns = decode(mlflow_json({"dataframe_split": frame.to_dict(orient="split")}),
                     spec=spec).columns
    assert columns["when"] == ["2024-05-01T10:00:00", "2024-05-02T00:00:00"]


# -- refusals -----------------------------------------------------------------------------

def refused(body: bytes, content_type: str | None = JSON, spec=SPEC) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        decode(body, content_type, spec)
    return caught.value


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1",
                                          "application/json; format=pandas-split"])
def test_wrong_content_type_is_415(content_type):
    error = refused(b"{}", content_type)
    assert isinstance(error, UnsupportedMediaTypeError) and error.status_code == 415
    assert error.field == "Content-Type"


@pytest.mark.parametrize("body, field, words", [
    (b"{nope", "body", "valid JSON"),
    (b"[1, 2]", "body", "received a list"),
    (b"{}", "body", "exactly one of"),
    (b'{"dataframe_split": {"data": []}, "instances": []}', "body", "exactly one of"),
    (b'{"inputs": [[1]], "params": [1]}', "params", "JSON object"),
    (b'{"dataframe_split": [[1, 2]]}', "dataframe_split", "columns"),
    (b'{"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}', "dataframe_split.data[0]",
     "1 values"),
    (b'{"dataframe_split": {"columns": ["age", "age"], "data": [[1, 2]]}}',
     "dataframe_split.columns", "unique"),
    (b'{"dataframe_records": {"age": 1}}', "dataframe_records", "list of records"),
    (b'{"dataframe_records": [1]}', "dataframe_records[0]", "object"),
    (b'{"instances": [1, 2]}', "instances", "one input"),
    (b'{"instances": 5}', "instances", "list of rows"),
    (b'{"dataframe_split": {"columns": ["age", "salary", "car", "owner"], "data": []}}',
     "body", "at least one row"),
])
def test_malformed_bodies(body, field, words):
    error = refused(body)
    assert error.field == field and words in error.rule


def test_unknown_and_missing_columns():
    frame = FRAME.assign(colour="red")
    error = refused(mlflow_json({"dataframe_split": frame.to_dict(orient="split")}))
    assert error.field == "colour" and "not an input" in error.rule
    error = refused(mlflow_json({"dataframe_records": FRAME.drop(columns="car")
                                 .to_dict(orient="records")}))
    assert error.field == "car" and "required" in error.rule


def test_columns_of_different_lengths():
    error = refused(mlflow_json({"inputs": {"age": [1, 2], "salary": [1.0], "car": ["a", "b"],
                                            "owner": [True, True]}}))
    assert error.field == "salary" and "same number of rows" in error.rule


@pytest.mark.parametrize("body, field", [
    (b"age,salary,car,owner\nthirty,1.0,a,true\n", "age"),
    (b"age,salary,car,owner\n30.5,1.0,a,true\n", "age"),
    (b"age,salary,car,owner\n30,lots,a,true\n", "salary"),
    (b"age,salary,car,owner\n30,1.0,a,maybe\n", "owner"),
    (b"age,salary,car,owner\n30,1.0,a\n", "body"),
    (b"", "body"),
    (b"age,salary,car,owner\n", "body"),
    (b"age,salary,car,owner\n30,1.0,\xff,true\n", "body"),
])
def test_bad_csv(body, field):
    assert refused(body, "text/csv").field == field


# -- answers ------------------------------------------------------------------------------

def test_predictions_with_prodml_extras():
    scored = Scored(prediction_ids=["a", "b"], predictions=["yes", None],
                    probabilities=None, classes=None, confidence=[0.9, None],
                    model_name="loan", model_version=3, route="canary",
                    statuses=["ok", "review"])
    body = json.loads(ms.encode_predictions(scored))
    assert body == {"predictions": ["yes", None], "prediction_ids": ["a", "b"],
                    "model_version": 3, "route": "canary", "statuses": ["ok", "review"]}


def test_numpy_predictions_serialise():
    scored = Scored(prediction_ids=["a"], predictions=[np.int64(1)], probabilities=None,
                    classes=None, confidence=[None], model_name="loan", model_version=1,
                    route="primary", statuses=["ok"])
    assert json.loads(ms.encode_predictions(scored))["predictions"] == [1]


def test_error_shape():
    body = orjson.loads(ms.error_body(InvalidInputError("age", "x", "must be a number")))
    assert body["error_code"] == "BAD_REQUEST" and "age" in body["message"]
    from prodml.errors import NotFoundError
    body = orjson.loads(ms.error_body(NotFoundError("endpoint", "nope"), 404))
    assert body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
