"""MLflow scoring protocol against a real ``prodml serve``, with bodies as MLflow's client
and pandas write them (``tests/serving/conftest.py`` serves endpoint ``loan``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.serving.conftest import FEATURES

JSON = {"Content-Type": "application/json"}


def mlflow_json(payload) -> bytes:
    """``mlflow.pyfunc.scoring_server.client``: ``json.dumps`` with numpy / dates made plain."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if hasattr(o, "isoformat"):
            return o.isoformat()
        raise TypeError(type(o))
    return json.dumps(payload, default=default).encode()


@pytest.fixture(scope="module")
def expected(served) -> list:
    with served.client() as http:
        reply = http.post("/endpoints/loan/predict", json={"records": served.records(5)})
    assert reply.status_code == 200, reply.text
    return [p["prediction"] for p in reply.json()["predictions"]]


def frame(served, rows: int = 5):
    return served.data[FEATURES].iloc[:rows].reset_index(drop=True)


def test_ping_health_version(served):
    from prodml import __version__

    with served.client() as http:
        assert http.get("/ping").status_code == 200
        assert http.get("/health").status_code == 200
        reply = http.get("/version")
        assert reply.status_code == 200 and reply.text == __version__


@pytest.mark.parametrize("shape", ["dataframe_split", "to_json_split", "dataframe_records",
                                   "instances", "inputs", "inputs_rows"])
def test_json_shapes(served, expected, shape):
    df = frame(served)
    body = {
        "dataframe_split": lambda: mlflow_json({"dataframe_split": df.to_dict(orient="split")}),
        "to_json_split": lambda: ('{"dataframe_split": ' + df.to_json(orient="split")
                                  + "}").encode(),
        "dataframe_records": lambda: mlflow_json({"dataframe_records":
                                                  df.to_dict(orient="records")}),
        "instances": lambda: mlflow_json({"instances": df.to_dict(orient="records")}),
        "inputs": lambda: mlflow_json({"inputs": {k: v.tolist() for k, v in df.items()}}),
        "inputs_rows": lambda: mlflow_json({"inputs": df.to_numpy().tolist()}),
    }[shape]()
    with served.client() as http:
        reply = http.post("/invocations", content=body, headers=JSON)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["predictions"] == expected
    assert len(set(answer["prediction_ids"])) == 5
    assert answer["model_version"] == 1 and answer["route"] == "primary"


@pytest.mark.parametrize("index", [False, True])
def test_csv(served, expected, index):
    with served.client() as http:
        reply = http.post("/invocations", content=frame(served).to_csv(index=index),
                          headers={"Content-Type": "text/csv"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == expected


def test_named_endpoint_and_params(served, expected):
    body = mlflow_json({"dataframe_split": frame(served).to_dict(orient="split"),
                        "params": {"routing_key": "customer-9"}})
    with served.client() as http:
        reply = http.post("/endpoints/loan/invocations", content=body,
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == expected


def error(reply, status: int, *words: str, code: str = "BAD_REQUEST") -> dict:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error_code"] == code
    for word in words:
        assert word in body["message"], body["message"]
    return body


def test_bad_requests(served):
    df = frame(served, 2)
    with served.client() as http:
        def post(body, headers=JSON, path="/invocations"):
            return http.post(path, content=body, headers=headers)

        error(post(b"{nope"), 400, "valid JSON")
        error(post(b"[1, 2]"), 400, "exactly one of", "received a list")
        error(post(b"{}", {"Content-Type": "text/plain"}), 415, "Content-Type")
        error(post(df.to_csv(index=False).encode("utf-16"), {"Content-Type": "text/csv"}), 400)
        error(post(mlflow_json({"dataframe_split": df.drop(columns="age")
                                .to_dict(orient="split")})), 400, "age", "required")
        error(post(mlflow_json({"dataframe_split": df.assign(colour="red")
                                .to_dict(orient="split")})), 400, "colour")
        records = df.to_dict(orient="records")
        records[1]["age"] = "thirty"
        error(post(mlflow_json({"dataframe_records": records})), 400, "age", "thirty")
        records = df.to_dict(orient="records")
        records[0]["salary"] = float("nan")  # json.dumps writes NaN; the schema forbids it
        error(post(mlflow_json({"dataframe_records": records})), 400, "salary", "NaN")
        error(post(b"{}", path="/endpoints/nope/invocations"), 404, "nope",
              code="RESOURCE_DOES_NOT_EXIST")
        error(post(b" " * (17 * 1024 * 1024)), 413, "body")


def test_invocations_needs_a_name_when_two_endpoints_are_served(served):
    from prodml.serving import endpoints as eps

    eps.deploy("loan-gbm", "loan/2", store=served.store, reason="MLflow tests: a second one")
    with served.client() as http:
        body = mlflow_json({"dataframe_split": frame(served, 1).to_dict(orient="split")})
        assert served.wait_for(lambda: http.post("/invocations", content=body,
                                                 headers=JSON).status_code == 400)
        error(http.post("/invocations", content=body, headers=JSON), 400, "loan", "loan-gbm",
              "/endpoints/{name}/invocations")
        reply = http.post("/endpoints/loan-gbm/invocations", content=body, headers=JSON)
        assert reply.status_code == 200 and reply.json()["model_version"] == 2
