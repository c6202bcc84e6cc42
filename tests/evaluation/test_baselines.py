"""Baselines: quick models against hand-built scikit-learn ones, HLP against hand counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from prodml.errors import InvalidInputError
from prodml.evaluation.baselines import (human_level_performance, infer_task, quick_baseline,
                                         wilson)


@pytest.fixture(scope="module")
def loans() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 400
    X = pd.DataFrame({"income": rng.normal(50, 15, n), "debt": rng.normal(10, 4, n),
                      "region": rng.choice(["north", "south", "east"], n)})
    X.loc[rng.choice(n, 20, replace=False), "income"] = np.nan
    logit = 0.08 * (X["income"].fillna(50) - 50) - 0.3 * (X["debt"] - 10) \
        + (X["region"] == "south") * 1.5
    y = (logit + rng.logistic(size=n) > 0).astype(int).to_numpy()
    return X, y


def test_majority_baseline_is_sklearns_dummy(loans):
    X, y = loans
    model = quick_baseline(X, y, kind="majority")
    reference = DummyClassifier(strategy="most_frequent").fit(X, y)
    assert isinstance(model, DummyClassifier)
    assert np.array_equal(model.predict(X), reference.predict(X))
    assert model.score(X, y) == pytest.approx(max(np.mean(y), 1 - np.mean(y)))


def test_linear_baseline_matches_a_hand_built_pipeline(loans):
    X, y = loans
    model = quick_baseline(X, y, seed=3)
    hand = make_pipeline(ColumnTransformer([
        ("n", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         ["income", "debt"]),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"),
                            OneHotEncoder(handle_unknown="ignore")), ["region"])]),
        LogisticRegression(max_iter=1000, random_state=3)).fit(X, y)
    assert isinstance(model[-1], LogisticRegression)
    np.testing.assert_allclose(model.predict_proba(X), hand.predict_proba(X), atol=1e-10)
    majority = quick_baseline(X, y, kind="majority").score(X, y)
    assert model.score(X, y) > majority + 0.1  # the signal is there: a real baseline finds it


def test_linear_baseline_takes_polars_and_unseen_categories(loans):
    X, y = loans
    model = quick_baseline(pl.from_pandas(X), y)
    unseen = pd.DataFrame({"income": [40.0], "debt": [12.0], "region": ["atlantis"]})
    assert model.predict(unseen).shape == (1,)  # unknown category ignored, not an error
    assert model.predict(pl.from_pandas(X.head(5))).tolist() == model.predict(X.head(5)).tolist()


def test_linear_baseline_takes_numpy_arrays(loans):
    X, y = loans
    array = X[["income", "debt"]].fillna(50).to_numpy()
    model = quick_baseline(array, y)
    hand = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(array, y)
    np.testing.assert_allclose(model.predict_proba(array[:20]), hand.predict_proba(array[:20]),
                               atol=1e-10)


def test_regression_baselines():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"x": rng.normal(size=200), "kind": rng.choice(["a", "b"], 200)})
    y = 3 * X["x"].to_numpy() + (X["kind"] == "b") * 2 + rng.normal(scale=0.1, size=200)
    linear, mean = quick_baseline(X, y), quick_baseline(X, y, kind="majority")
    assert isinstance(linear[-1], Ridge) and isinstance(mean, DummyRegressor)
    assert mean.predict(X[:1])[0] == pytest.approx(y.mean())
    assert linear.score(X, y) > 0.99 and mean.score(X, y) == pytest.approx(0.0)


def test_auto_falls_back_to_majority_on_tiny_or_constant_data():
    assert isinstance(quick_baseline({"x": [1, 2, 3]}, [0, 1, 1]), DummyClassifier)
    constant = pd.DataFrame({"x": [1.0] * 20})
    assert isinstance(quick_baseline(constant, [0, 1] * 10), DummyClassifier)
    assert infer_task(np.array([0.0, 1.0, 1.0])) == "classification"
    assert infer_task(np.linspace(0, 1, 50)) == "regression"


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "forest"}, "kind"), ({"task": "ranking"}, "task")])
def test_quick_baseline_rejects_unknown_options(loans, kwargs, field):
    X, y = loans
    with pytest.raises(InvalidInputError) as err:
        quick_baseline(X, y, **kwargs)
    assert err.value.field == field and "must be one of" in err.value.rule


def test_quick_baseline_rejects_misaligned_or_missing_targets(loans):
    X, y = loans
    with pytest.raises(InvalidInputError, match="one per row of X") as err:
        quick_baseline(X, y[:-1])
    assert err.value.field == "y"
    with pytest.raises(InvalidInputError, match="needs a target"):
        quick_baseline(X, [None] + list(y[1:]))


# -- human-level performance --------------------------------------------------------------------
def test_course_inspection_example():
    hlp = human_level_performance([1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 1])
    assert hlp.overall == pytest.approx(4 / 6)
    assert f"{hlp.overall:.1%}" == "66.7%"
    score = hlp.labeler("labeler")
    assert (score.correct, score.count) == (4, 6)
    assert score.interval == pytest.approx(wilson(4, 6))
    assert hlp.as_baseline() == {"overall": pytest.approx(0.6667, abs=1e-4)}
    assert "66.7%" in str(hlp)


def test_wilson_interval_against_statsmodels_formula():
    # Wilson (1927) by hand: p=0.3, n=50
    low, high = wilson(15, 50)
    assert (low, high) == pytest.approx((0.1910, 0.4375), abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_several_labelers_with_gaps_overall_and_per_slice():
    truth = ["cat", "dog", "dog", "cat", "cat", "dog"]
    labels = pd.DataFrame({
        "ann": ["cat", "dog", "cat", "cat", "dog", "dog"],   # 4/6, blurry rows 2,3: 1/2
        "bob": ["cat", "dog", "dog", None, "cat", "dog"]})   # 5/5, blurry: 1/1
    slices = {"blurry": [False, False, True, True, False, False],
              "camera": ["a", "a", "a", "b", "b", "b"]}
    mean = human_level_performance(truth, labels, slices=slices)
    assert mean.labeler("ann").accuracy == pytest.approx(4 / 6)
    assert mean.labeler("bob").count == 5 and mean.labeler("bob").accuracy == 1.0
    assert mean.overall == pytest.approx((4 / 6 + 1) / 2)
    assert mean.slices["blurry"] == pytest.approx((1 / 2 + 1) / 2)
    assert mean.slices["camera=b"] == pytest.approx((2 / 3 + 1) / 2)  # ann 2/3, bob 2/2
    assert mean.slice_items == {"blurry": 2, "camera=a": 3, "camera=b": 3}
    best = human_level_performance(truth, labels, slices=slices, aggregate="best")
    pooled = human_level_performance(truth, labels, slices=slices, aggregate="pooled")
    assert best.overall == 1.0 and pooled.overall == pytest.approx(9 / 11)
    assert set(mean.as_baseline()) == {"overall", "blurry", "camera=a", "camera=b"}
    restored = mean.to_dict()
    assert restored["labelers"] == ["ann", "bob"] and len(restored["scores"]) == 8


def test_labelers_from_dict_polars_and_numeric_missing():
    truth = np.array([1, 0, 1, 1])
    from_dict = human_level_performance(truth, {"a": [1, 0, 0, np.nan], "b": [1, 1, 1, 1]})
    assert from_dict.labeler("a").accuracy == pytest.approx(2 / 3)
    from_polars = human_level_performance(
        pl.Series(truth), pl.DataFrame({"a": [1, 0, 0, None], "b": [1, 1, 1, 1]}))
    assert from_polars.to_dict() == from_dict.to_dict()


@pytest.mark.parametrize("truth, labels, field, rule", [
    ([1, 0, 1], [1, 0], "labels['labeler']", "one per item"),
    ([1, 0, None], [1, 0, 1], "truth", "ground truth"),
    ([1, 0, 1], ["1", "0", "1"], "labels['labeler']", "like with like"),
    ([1, 0, 1], [1, "b", 0], "labels", "all text or all numbers"),
])
def test_hlp_rejects_bad_labels(truth, labels, field, rule):
    with pytest.raises(InvalidInputError, match=rule) as err:
        human_level_performance(truth, labels)
    assert err.value.field == field


def test_hlp_rejects_misaligned_slices_and_unknown_aggregate():
    with pytest.raises(InvalidInputError, match="one row per item"):
        human_level_performance([1, 0], [1, 0], slices={"tag": [True, False, True]})
    with pytest.raises(InvalidInputError) as err:
        human_level_performance([1, 0], [1, 0], aggregate="median")
    assert err.value.field == "aggregate"


def test_hlp_is_a_baseline_evaluate_accepts():
    from prodml.evaluation.evaluate import evaluate

    rng = np.random.default_rng(4)
    n = 600
    frame = pl.DataFrame({"y": rng.integers(0, 2, n), "line": rng.choice(["a", "b"], n)})
    frame = frame.with_columns(pred=pl.Series(rng.integers(0, 2, n)),
                               blurry=pl.Series(rng.random(n) < 0.2))
    inspector = np.where(rng.random(n) < 0.1, 1 - frame["y"].to_numpy(), frame["y"].to_numpy())
    hlp = human_level_performance(frame["y"], {"inspector": inspector},
                                  slices=frame.select("line", "blurry"))
    result = evaluate("pred", frame, label="y", bootstrap=0,
                      slices=["line", {"blurry": "blurry"}],
                      baselines={"hlp": hlp.as_baseline()})
    for name in ("overall", "line=a", "line=b", "blurry"):
        assert result.baseline("hlp", slice=name) == pytest.approx(hlp.as_baseline()[name])
