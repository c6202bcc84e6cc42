"""Window metrics equal their definitions computed directly with NumPy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest

from prodml.data.schema import Schema
from prodml.errors import InvalidInputError
from prodml.monitoring import (custom_metrics, feature_columns, input_metrics, measure_window,
                               output_metrics, software_metrics)


@pytest.fixture(scope="module")
def window() -> pl.DataFrame:
    rng = np.random.default_rng(3)
    n = 5_000
    income = rng.normal(50_000, 15_000, n)
    income[rng.random(n) < 0.05] = np.nan
    plan = rng.choice(["basic", "pro", "gold", "enterprise"], n, p=[0.5, 0.3, 0.15, 0.05])
    age = rng.integers(10, 110, n).astype(float)
    return pl.DataFrame({
        "id": [f"p{i}" for i in range(n)],
        "time": np.sort(rng.integers(0, 600_000, n)),
        "status": rng.choice(["ok", "error", "timeout", "review"], n, p=[0.9, 0.04, 0.03, 0.03]),
        "latency_ms": rng.gamma(2.0, 5.0, n),
        "prediction": pl.Series(rng.choice(["approve", "reject", None], n, p=[0.6, 0.35, 0.05]),
                                dtype=pl.String),
        "confidence": rng.uniform(0.5, 1.0, n),
        "income": income,
        "plan": pl.Series(np.where(rng.random(n) < 0.1, None, plan), dtype=pl.String),
        "age": age,
        "proba_approve": rng.random(n),
        "clicked": rng.poisson(0.3, n),
    })


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema(columns={"plan": {"type": "string", "categories": ["basic", "pro", "gold"]},
                           "age": {"type": "float", "min_value": 18, "max_value": 99},
                           "income": {"type": "float"}})


def test_software_metrics_equal_numpy(window):
    m = software_metrics(window)
    latency = window["latency_ms"].to_numpy()
    for q in (50, 95, 99):
        assert m[f"latency_p{q}_ms"] == pytest.approx(np.quantile(latency, q / 100), rel=1e-12)
    time = window["time"].to_numpy()
    assert m["throughput_per_s"] == pytest.approx(len(time) / ((time.max() - time.min()) / 1000))
    status = window["status"].to_numpy()
    assert m["error_rate"] == np.isin(status, ["error", "timeout"]).mean()
    assert software_metrics(window, span_s=600)["throughput_per_s"] == len(time) / 600
    assert software_metrics(window, error_statuses=["error"])["error_rate"] == \
        (status == "error").mean()


def test_input_metrics_equal_numpy(window, schema):
    m = input_metrics(window, schema=schema, events=["clicked"])
    assert m["volume"] == window.height
    income = window["income"].to_numpy()
    assert m["missing_share[income]"] == np.isnan(income).mean()
    plan = window["plan"].to_list()
    present = [p for p in plan if p is not None]
    assert m["missing_share[plan]"] == plan.count(None) / len(plan)
    assert m["mean_length[plan]"] == pytest.approx(np.mean([len(p) for p in present]))
    assert m["out_of_domain_share[plan]"] == pytest.approx(
        np.mean([p not in ("basic", "pro", "gold") for p in present]))
    age = window["age"].to_numpy()
    assert m["out_of_domain_share[age]"] == pytest.approx(np.mean((age < 18) | (age > 99)))
    assert "out_of_domain_share[income]" not in m  # no domain declared
    assert not any("[clicked]" in k or "proba_" in k for k in m)  # not features


def test_output_metrics_equal_numpy(window):
    m = output_metrics(window, events=["clicked"])
    pred = window["prediction"].to_list()
    answered = [p for p in pred if p is not None]
    assert m["null_prediction_share"] == pred.count(None) / len(pred)
    assert m["class_share[approve]"] == answered.count("approve") / len(answered)
    assert m["class_share[reject]"] == answered.count("reject") / len(answered)
    assert m["mean_confidence"] == pytest.approx(window["confidence"].to_numpy().mean())
    assert m["event_rate[clicked]"] == (window["clicked"].to_numpy() > 0).mean()
    declared = output_metrics(window, classes=["approve", "reject", "refer"])
    assert declared["class_share[refer]"] == 0.0
    assert declared["class_share[approve]"] == m["class_share[approve]"]


def test_empty_answers_count_as_null():
    w = pl.DataFrame({"prediction": ['{"a": 1}', "", " ", "null", "[]", "{}", None, "x"]})
    assert output_metrics(w)["null_prediction_share"] == 6 / 8


def test_measure_window_is_every_group_in_one_pass(window, schema):
    custom = {"p90_income": lambda f: f["income"].fill_nan(None).quantile(0.9)}
    m = measure_window(window, schema=schema, events=["clicked"], custom=custom)
    expected = {**software_metrics(window), **input_metrics(window, schema=schema,
                                                             events=["clicked"]),
                **output_metrics(window, events=["clicked"]),
                **custom_metrics(window, custom)}
    assert m.keys() == expected.keys()
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, nan_ok=True), key
    only = measure_window(window, groups=["software"])
    assert set(only) == {"volume", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                         "throughput_per_s", "error_rate"}


def test_pandas_and_arrow_windows_give_the_same_metrics(window, schema):
    polars_result = measure_window(window, schema=schema, events=["clicked"])
    pandas_result = measure_window(window.to_pandas(), schema=schema, events=["clicked"])
    arrow_result = measure_window(window.to_arrow(), schema=schema, events=["clicked"])
    for key, value in polars_result.items():
        assert pandas_result[key] == pytest.approx(value, nan_ok=True), key
        assert arrow_result[key] == pytest.approx(value, nan_ok=True), key


def test_an_empty_window_gives_nan_not_an_error(window, schema):
    m = measure_window(window.head(0), schema=schema)
    assert m["volume"] == 0
    assert math.isnan(m["error_rate"]) and math.isnan(m["mean_confidence"])
    assert math.isnan(m["throughput_per_s"])


def test_one_instant_has_no_throughput():
    m = software_metrics(pl.DataFrame({"time": [5, 5], "status": ["ok", "ok"]}))
    assert math.isnan(m["throughput_per_s"])


def test_datetime_time_column():
    t = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:00:10"])
    assert software_metrics(pd.DataFrame({"time": t}))["throughput_per_s"] == 0.2


def test_feature_columns_leave_out_the_logs_own():
    frame = pl.DataFrame({c: [1] for c in ("id", "time", "status", "prediction", "confidence",
                                           "label", "label_time", "parent_id", "age",
                                           "proba_yes", "clicked", "income")})
    assert feature_columns(frame, events=["clicked"]) == ["age", "income"]


def test_errors_name_the_field():
    w = pl.DataFrame({"a": [1.0]})
    with pytest.raises(InvalidInputError, match="features='b'"):
        input_metrics(w, ["b"])
    with pytest.raises(InvalidInputError, match="events='clicks'"):
        output_metrics(w, events=["clicks"])
    with pytest.raises(InvalidInputError, match="custom metric 'bad'"):
        custom_metrics(w, {"bad": lambda f: "high"})
    with pytest.raises(InvalidInputError, match="groups='drift'"):
        measure_window(w, groups=["drift"])


def test_declared_classes_match_predictions_of_any_type():
    ints = pl.DataFrame({"prediction": [1, 0, 1, 1]})
    assert output_metrics(ints, classes=[1, "0"])["class_share[1]"] == 0.75
    assert output_metrics(ints, classes=[1, "0"])["class_share[0]"] == 0.25
    flags = pl.DataFrame({"prediction": [True, False, True, None]})
    shares = output_metrics(flags, classes=[True, False])
    assert (shares["class_share[True]"], shares["class_share[False]"]) == (2 / 3, 1 / 3)
    assert output_metrics(ints, classes=["cat"])["class_share[cat]"] == 0.0
    assert output_metrics(flags)["class_share[True]"] == 2 / 3  # observed, same names
