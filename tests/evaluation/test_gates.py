"""Gates over real evaluations: value, slice, change and fairness bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import prodml as pm
from prodml.evaluation.gates import GateSpec


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    n = 4000
    frame = pd.DataFrame({"y": rng.integers(0, 2, n), "age": rng.integers(18, 90, n),
                          "group": rng.choice(["a", "b"], n)})
    noise = rng.random(n)
    # good everywhere except the oldest applicants, where it guesses
    good = np.where(noise < 0.92, frame["y"], 1 - frame["y"])
    frame["good"] = np.where((frame["age"] >= 75) & (rng.random(n) < 0.5), rng.integers(0, 2, n),
                             good)
    frame["weak"] = np.where(noise < 0.7, frame["y"], 1 - frame["y"])
    return frame


def evaluate(frame, column):
    return pm.evaluate(column, frame, label="y", slices=[("age", [18, 45, 75, 90])],
                       protected=["group"], bootstrap=0)


def test_value_bounds_overall_and_on_every_slice(data):
    result = evaluate(data, "good")
    spec = {"name": "release", "conditions": [
        {"metric": "accuracy", "min": 0.8},
        {"metric": "accuracy", "slices": "age", "min": 0.8}]}
    blessing = pm.gate(result, spec)
    assert not blessing.blessed
    failed = {r.slice for r in blessing.failures}
    assert failed == {"age=75-90"}
    old = result.metric("accuracy", "age=75-90")
    assert blessing.failures[0].observed == pytest.approx(old) and old < 0.8
    relaxed = pm.gate(result, {"conditions": [{"metric": "accuracy", "slice": "age=18-45",
                                                "min": 0.85}]})
    assert relaxed.blessed and len(relaxed.results) == 1


def test_change_bounds_against_a_baseline(data):
    good, weak = evaluate(data, "good"), evaluate(data, "weak")
    spec = {"conditions": [{"metric": "accuracy", "change": {"min_absolute": 0.05}},
                           {"metric": "f1", "change": {"min_relative": 0.0}}]}
    assert pm.gate(good, spec, baseline=weak).blessed
    reverse = pm.gate(weak, spec, baseline=good)
    assert not reverse.blessed
    accuracy = reverse.results[0]
    assert "improvement" in accuracy.detail and accuracy.observed == weak.metric("accuracy")
    with pytest.raises(pm.InvalidInputError, match="pass baseline"):
        pm.gate(good, spec)
    # where lower is better, a drop is the improvement
    lower = {"conditions": [{"metric": "accuracy",
                             "change": {"direction": "lower", "min_absolute": 0.05}}]}
    assert pm.gate(weak, lower, baseline=good).blessed
    # a metric the evaluation lacks (log loss of hard labels) fails, saying why
    missing = pm.gate(good, {"conditions": [{"metric": "log_loss", "max": 1.0}]})
    assert not missing.blessed and missing.results[0].detail == "metric not available"


def test_fairness_bounds_and_parity(data):
    result = evaluate(data, "good")
    report = result.fairness["group"]
    spec = {"conditions": [
        {"attribute": "group", "metric": "demographic_parity_ratio",
         "min": report.demographic_parity_ratio - 0.01},
        {"attribute": "group", "parity": True}]}
    blessing = pm.gate(result, spec)
    assert blessing.results[0].passed
    parity = blessing.results[1:]
    assert len(parity) == 6  # two groups x selection rate, TPR, FPR
    assert all(r.passed == (0.8 <= r.observed <= 1.25) for r in parity)
    strict = pm.gate(result, {"conditions": [{"attribute": "group",
                                               "metric": "demographic_parity_ratio",
                                               "min": report.demographic_parity_ratio + 0.01}]})
    assert not strict.blessed


def test_spec_errors_name_the_field(tmp_path):
    with pytest.raises(pm.InvalidInputError, match="conditions"):
        GateSpec.load({"name": "x"})
    with pytest.raises(pm.InvalidInputError, match=r"conditions.0.*min, max, change or parity"):
        GateSpec.load({"conditions": [{"metric": "accuracy"}]})
    with pytest.raises(pm.InvalidInputError, match="Extra inputs"):
        GateSpec.load({"conditions": [{"metric": "accuracy", "minimum": 1}]})
    path = tmp_path / "gate.yaml"
    path.write_text("conditions:\n  - metric: f1\n    min: 0.7\n")
    assert GateSpec.load(path).conditions[0].min == 0.7
    assert GateSpec.load(str(path)).conditions[0].metric == "f1"
    with pytest.raises(pm.InvalidInputError, match="does not exist"):
        GateSpec.load(tmp_path / "missing.yaml")


def test_unknown_slice_feature_is_a_clear_error(data):
    result = evaluate(data, "good")
    with pytest.raises(pm.InvalidInputError, match="has: age"):
        pm.gate(result, {"conditions": [{"metric": "accuracy", "slices": "zip", "min": 0.5}]})
