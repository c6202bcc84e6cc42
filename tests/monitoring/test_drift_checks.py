"""Window drift is prodml.drift's, against a frame or a training profile; prior shift uses the
data issue's methods and equals SciPy's and Evidently's formulas."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial import distance

import prodml as pm
from prodml.errors import InvalidInputError
from prodml.monitoring import drift_series, prior_shift, window_drift


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"age": rng.normal(40, 10, 5000),
                         "city": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])})


@pytest.fixture(scope="module")
def window() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    n = 2000
    return pl.DataFrame({"id": [str(i) for i in range(n)], "time": np.arange(n),
                         "age": rng.normal(46, 10, n),
                         "city": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
                         "prediction": rng.choice(["yes", "no"], n, p=[0.7, 0.3]),
                         "proba_yes": rng.random(n)})


def test_against_a_frame_is_prodml_drift_on_the_features(reference, window):
    report = window_drift(reference, window)
    direct = pm.drift(reference, window.select("age", "city"))
    assert report.to_dict() == direct.to_dict()
    assert report.drifted_columns == ["age"]


def test_against_a_training_profile_and_as_skew(reference, window):
    profile = pm.profile(reference)
    report = window_drift(profile, window, kind="skew")
    assert report.from_profiles and report.title == "Training-serving skew"
    assert report.drifted_columns == ["age"]
    series = drift_series(report)
    assert series["drifted[age]"] == 1.0 and series["drift_share"] == 0.5


def test_no_feature_to_compare(reference):
    with pytest.raises(InvalidInputError, match="features"):
        window_drift(reference, pl.DataFrame({"time": [1], "prediction": [1]}))


def test_prior_shift_jensen_shannon_and_chi_square(window):
    reference = {"yes": 0.5, "no": 0.5}
    counts = window["prediction"].value_counts()
    observed = dict(zip(counts["prediction"].to_list(), counts["count"].to_list()))
    js = prior_shift(window["prediction"], reference)
    assert js.method == "jensenshannon"
    assert js.score == pytest.approx(distance.jensenshannon(
        [0.5, 0.5], [observed["yes"] / 2000, observed["no"] / 2000]))
    assert js.drifted == (js.score >= 0.1)
    chi = prior_shift(window["prediction"], reference, method="chisquare")
    expected = stats.chisquare([observed["yes"], observed["no"]], [1000, 1000])
    assert chi.score == pytest.approx(expected.pvalue) and chi.drifted
    assert chi.current == pytest.approx({"yes": observed["yes"] / 2000,
                                         "no": observed["no"] / 2000})
    assert drift_series(prior=chi) == {"prior_shift_score": chi.score, "prior_shift": 1.0}


def test_prior_shift_sides_may_be_labels_counts_or_shares():
    labels = ["a"] * 60 + ["b"] * 40
    by_labels = prior_shift(labels, ["a"] * 50 + ["b"] * 50, method="psi")
    by_counts = prior_shift({"a": 60, "b": 40}, {"a": 5, "b": 5}, method="psi")
    by_series = prior_shift(pl.Series(labels), {"a": 0.5, "b": 0.5}, method="psi")
    assert by_labels.score == pytest.approx(by_counts.score) == pytest.approx(by_series.score)
    ints = prior_shift(np.array([1, 1, 0, 1]), {1: 0.5, 0: 0.5}, method="l_infinity")
    assert ints.score == pytest.approx(0.25)
    unseen = prior_shift(["a", "c"], {"a": 1.0}, method="chisquare")
    assert unseen.drifted  # a class the reference never predicted


def test_prior_shift_errors_name_the_field():
    with pytest.raises(InvalidInputError, match="reference"):
        prior_shift(["a"], {"a": -1})
    with pytest.raises(InvalidInputError, match="current"):
        prior_shift([None, None], {"a": 1})
    with pytest.raises(InvalidInputError, match="method"):
        prior_shift(["a"], {"a": 1}, method="wasserstein")
