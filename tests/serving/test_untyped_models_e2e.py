"""A model registered without a logged dataset or an input example is served numbers
(issue 14, finding 9): types come from the model, or else from the first request it answers,
recorded once in the registry. Against the real server of ``served`` (see conftest)."""

from __future__ import annotations

import pandas as pd
import pytest

from prodml.serving import endpoints as eps
from prodml.tracking import registry
from prodml.tracking.runs import start_run
from tests.serving.conftest import FEATURES

pytestmark = pytest.mark.slow


def _predict_when_served(served, endpoint, record):
    with served.client() as client:
        return served.wait_for(lambda: (r := client.post(
            f"/endpoints/{endpoint}/predict", json=record)).status_code != 404 and r)


def test_a_model_registered_with_only_a_run_is_served_numbers(served):
    from sklearn.linear_model import LogisticRegression

    X, y = served.data[FEATURES], served.data["approved"]
    with start_run("untyped", store=served.store) as run:  # no dataset logged
        version = registry.register("bare", LogisticRegression(max_iter=300).fit(X, y),
                                    run=run, store=served.store)
    assert {c.type for c in version.signature.inputs} == {"float"}
    eps.deploy("bare", version.ref, store=served.store)
    answer = _predict_when_served(served, "bare", served.records(1)[0])
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] in (0, 1)
    with served.client() as client:
        many = client.post("/endpoints/bare/predict", json={"records": served.records(5)})
        assert many.status_code == 200 and len(many.json()["predictions"]) == 5
        wrong = client.post("/endpoints/bare/predict",
                            json={**served.records(1)[0], "age": "old"})
        assert wrong.status_code == 400 and wrong.json()["field"] == "age"


def test_types_the_model_cannot_tell_come_from_the_first_request(served):
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = served.data[["salary", "age"]].assign(
        band=pd.cut(served.data["age"], [0, 40, 60, 200], labels=["y", "m", "o"]).astype(str))
    y = served.data["approved"]
    model = make_pipeline(make_column_transformer(
        (StandardScaler(), ["salary", "age"]), (OneHotEncoder(handle_unknown="ignore"),
                                                ["band"])), LogisticRegression(max_iter=300))
    version = registry.register("mixed", model.fit(X, y), store=served.store)
    assert [(c.name, c.type) for c in version.signature.inputs] == [
        ("salary", "float"), ("age", "float"), ("band", "unknown")]
    eps.deploy("mixed", version.ref, store=served.store)
    first = _predict_when_served(served, "mixed", {"salary": 50000, "age": 30, "band": "y"})
    assert first.status_code == 200, first.text
    recorded = served.wait_for(lambda: registry.get(version.ref, store=served.store)
                               .signature.source == "first_request", timeout=10)
    assert recorded
    stored = registry.get(version.ref, store=served.store).signature
    assert [(c.name, c.type) for c in stored.inputs] == [
        ("salary", "float"), ("age", "float"), ("band", "string")]
    with served.client() as client:
        refused = served.wait_for(lambda: (r := client.post(
            "/endpoints/mixed/predict", json={"salary": 1.0, "age": 30, "band": 5}
        )).status_code == 400 and r)
        assert refused and refused.json()["field"] == "band"
        assert client.post("/endpoints/mixed/predict", json={"salary": 1.0, "age": 30,
                                                              "band": "o"}).status_code == 200
