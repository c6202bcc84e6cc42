"""Evaluations and blessings kept with model versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import prodml as pm


@pytest.fixture
def version_and_data(store):
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"salary": rng.normal(50, 10, 600), "age": rng.integers(20, 80, 600)})
    y = (X["salary"] > 50).astype(int)
    model = LogisticRegression().fit(X, y)
    return pm.models.register("loan", model), X.assign(y=y), model


def test_evaluation_and_blessing_round_trip(version_and_data):
    version, frame, model = version_and_data
    result = pm.evaluate(model, frame, label="y", slices=[("age", [20, 50, 80])], bootstrap=20,
                         features=["salary", "age"])
    blessing = pm.gate(result, {"name": "g", "conditions": [{"metric": "accuracy",
                                                             "min": 0.5}]})
    pm.models.attach_evaluation(version.ref, result, blessing, name="holdout")
    stored = pm.models.evaluations("loan@latest")
    assert len(stored) == 1 and stored[0].name == "holdout" and stored[0].blessed
    back = stored[0].result
    assert back.metric("accuracy") == result.metric("accuracy")
    assert back.slice("age=20-50").count == result.slice("age=20-50").count
    assert pm.models.blessing(version.ref).blessed
    pm.models.require_blessed(version.ref)


def test_a_failed_or_missing_gate_blocks_require_blessed(version_and_data):
    version, frame, model = version_and_data
    with pytest.raises(pm.models.NotBlessedError, match="never gated"):
        pm.models.require_blessed(version.ref)
    result = pm.evaluate(model, frame, label="y", bootstrap=0, features=["salary", "age"])
    failing = pm.gate(result, {"name": "strict", "conditions": [{"metric": "accuracy",
                                                                  "min": 1.01}]})
    pm.models.attach_evaluation(version.ref, result, failing)
    assert pm.models.blessing(version.ref).blessed is False
    with pytest.raises(pm.models.NotBlessedError, match="gate 'strict' failed"):
        pm.models.require_blessed(version.ref)
    with pytest.raises(pm.InvalidInputError, match="EvaluationResult"):
        pm.models.attach_evaluation(version.ref, {"accuracy": 1.0})
