"""Permutation importance and learning curves, checked against scikit-learn's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.inspection import permutation_importance as sklearn_importance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.model_selection import learning_curve as sklearn_curve
from sklearn.tree import DecisionTreeClassifier

from prodml.errors import InvalidInputError
from prodml.evaluation.baselines import quick_baseline
from prodml.evaluation.importance import learning_curve, permutation_importance


@pytest.fixture(scope="module")
def shops() -> pd.DataFrame:
    """In region a the label follows x1, in region b it follows x2; x3 is noise."""
    rng = np.random.default_rng(5)
    n = 1000
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "x3": rng.normal(size=n), "region": rng.choice(["a", "b"], n)})
    df["is_b"] = (df["region"] == "b").astype(int)
    df["y"] = np.where(df["region"] == "a", df["x1"] > 0, df["x2"] > 0).astype(int)
    return df


@pytest.fixture(scope="module")
def tree(shops) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=6, random_state=0).fit(
        shops[["x1", "x2", "x3", "is_b"]], shops["y"])


def test_overall_equals_sklearn(shops, tree):
    report = permutation_importance(tree, shops, "y", repeats=4, seed=42)
    reference = sklearn_importance(tree, shops[["x1", "x2", "x3", "is_b"]], shops["y"],
                                   scoring="accuracy", n_repeats=4, random_state=42)
    ranked = {r.feature: r for r in report.rows if r.slice == "overall"}
    assert list(ranked) == ["x1", "x2", "x3", "is_b"]  # the model's own feature order
    np.testing.assert_allclose([ranked[f].mean for f in ranked], reference.importances_mean)
    np.testing.assert_allclose([ranked[f].std for f in ranked], reference.importances_std)
    assert ranked["x1"].score == pytest.approx(tree.score(shops[list(ranked)], shops["y"]))


def test_roc_auc_on_a_pipeline_from_polars_equals_sklearn(shops):
    X = shops[["x1", "x2", "x3", "region"]]
    model = quick_baseline(X, shops["y"])
    report = permutation_importance(model, pl.from_pandas(shops), "y", metric="roc_auc",
                                    repeats=3, features=["x1", "x2", "x3", "region"])
    reference = sklearn_importance(model, X, shops["y"], scoring="roc_auc", n_repeats=3,
                                   random_state=0)
    got = [report.importance(f) for f in ["x1", "x2", "x3", "region"]]
    np.testing.assert_allclose(got, reference.importances_mean)


def test_per_slice_importance_finds_what_each_slice_relies_on(shops, tree):
    report = permutation_importance(tree, shops, "y", slices=["region"], repeats=3)
    assert report.slices == ["overall", "region=a", "region=b"]
    assert report.top(1, slice="region=a") == ["x1"]
    assert report.top(1, slice="region=b") == ["x2"]
    assert report.importance("x2", slice="region=a") < 0.02  # shuffled within a: unused there
    assert report.importance("x3") < 0.02
    b = shops[shops.region == "b"].reset_index(drop=True)
    reference = sklearn_importance(tree, b[["x1", "x2", "x3", "is_b"]], b["y"], n_repeats=3,
                                   random_state=0)
    assert report.importance("x2", slice="region=b") == pytest.approx(
        reference.importances_mean[1])
    assert "region=b" in str(report)


def test_versions_compare_and_tags_as_slices(shops, tree):
    only_x1 = LogisticRegression().fit(shops[["x1"]], shops["y"])
    tags = pl.DataFrame({"positive x3": shops["x3"].to_numpy() > 0})
    report = permutation_importance({"v1": only_x1, "v2": tree}, shops, "y", slices=tags,
                                    repeats=2)
    assert report.versions == ["v1", "v2"]
    assert [r.feature for r in report.ranking("v1")] == ["x1"]  # v1 only sees x1
    assert report.importance("x2", version="v2") > 0.2
    assert report.slices == ["overall", "positive x3"]
    assert len(report.to_dict()["rows"]) == 2 * (1 + 4)


def test_sampling_and_small_slices(shops, tree):
    tiny = pd.Series(np.arange(len(shops)) < 10)
    report = permutation_importance(tree, shops, "y", slices={"first ten": tiny},
                                    max_rows=500, repeats=2)
    assert report.sampled_from == 1000 and report.ranking()[0].rows == 500
    assert "first ten" in report.skipped and report.slices == ["overall"]
    again = permutation_importance(tree, shops, "y", max_rows=500, repeats=2)
    assert again.to_dict()["rows"] == report.to_dict()["rows"]  # seeded: same sample


@pytest.mark.parametrize("kwargs, field", [
    ({"metric": "brilliance"}, "metric"), ({"repeats": 0}, "repeats"),
    ({"max_rows": -1}, "max_rows"), ({"slices": ["country"]}, "slices"),
    ({"features": ["x9"]}, "features")])
def test_importance_rejects_bad_input(shops, tree, kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        permutation_importance(tree, shops, "y", **kwargs)
    assert err.value.field == field


def test_importance_needs_the_label(shops, tree):
    with pytest.raises(InvalidInputError, match="not a column") as err:
        permutation_importance(tree, shops, "target")
    assert err.value.field == "label"


# -- learning curve -------------------------------------------------------------------------------
def _high_dimensional(n: int = 1000, d: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(d)])
    df["y"] = (X @ rng.normal(size=d) > 0).astype(int)
    return df


def test_still_rising_curve_says_more_data_helps():
    curve = learning_curve(lambda: LogisticRegression(C=100, max_iter=2000),
                           _high_dimensional(), "y", cv=3)
    assert curve.more_data_helps and curve.verdict == "more data likely helps"
    assert curve.validation_scores[-1] > curve.validation_scores[0] + 0.1
    assert curve.gain_per_doubling > 0.02 and curve.splits == 3
    assert curve.to_dict()["verdict"] == "more data likely helps"


def test_flat_curve_says_more_data_will_not_help():
    rng = np.random.default_rng(1)  # one feature, noisy labels: ~75 % is all there is
    df = pd.DataFrame({"x": rng.normal(size=2000)})
    df["y"] = (df["x"] + rng.normal(size=2000) > 0).astype(int)
    curve = learning_curve(LogisticRegression, df, "y", cv=3)
    assert not curve.more_data_helps and "flattened" in curve.verdict
    assert abs(curve.gain_per_doubling) < 0.005 and abs(curve.gap) < 0.05
    assert max(curve.validation_scores) - min(curve.validation_scores) < 0.02


def test_curve_equals_sklearns_learning_curve():
    df = _high_dimensional(n=400, d=10, seed=2)
    curve = learning_curve(LogisticRegression(max_iter=500), df, "y", seed=7,
                           fractions=(0.2, 0.6, 1.0))
    sizes, train, test = sklearn_curve(
        LogisticRegression(max_iter=500), df.drop(columns="y"), df["y"],
        train_sizes=[0.2, 0.6, 1.0], shuffle=True, random_state=7, scoring="accuracy",
        cv=StratifiedShuffleSplit(n_splits=1, test_size=0.25, random_state=7))
    assert list(curve.train_rows) == sizes.tolist()
    np.testing.assert_allclose(curve.validation_scores, test[:, 0])
    np.testing.assert_allclose(curve.train_scores, train[:, 0])
    slope = np.polyfit(np.log2(sizes), test[:, 0], 1)[0]  # the documented rule
    assert curve.gain_per_doubling == pytest.approx(slope)
    assert "fraction" in str(curve)


@pytest.mark.parametrize("kwargs, field", [
    ({"fractions": (0.5, 0.2)}, "fractions"), ({"fractions": (0.0, 1.0)}, "fractions"),
    ({"cv": 1}, "cv"), ({"test_size": 1.5}, "test_size"), ({"metric": "nope"}, "metric")])
def test_learning_curve_rejects_bad_input(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        learning_curve(LogisticRegression, _high_dimensional(n=100, d=3), "y", **kwargs)
    assert err.value.field == field
