"""Fairness: the same numbers as Fairlearn's MetricFrame and disparity functions, and
Aequitas-style parity verdicts."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (MetricFrame, demographic_parity_difference,
                               demographic_parity_ratio, equalized_odds_difference,
                               equalized_odds_ratio, false_positive_rate, selection_rate,
                               true_positive_rate)
from sklearn.metrics import accuracy_score

from prodml.errors import InvalidInputError
from prodml.evaluation import FairnessReport, evaluate, fairness_report

TOL = 1e-12


@pytest.fixture(scope="module")
def decisions() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 3000
    df = pd.DataFrame({"sex": rng.choice(["f", "m", "x"], n, p=[.5, .45, .05]),
                       "race": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})
    bias = np.where(df.sex == "m", 0.15, 0.0)
    df["p"] = np.clip(df.y * 0.3 + rng.random(n) * 0.7 + bias, 0, 1)
    df["pred"] = (df.p >= 0.5).astype(int)
    # a group without positives: its TPR is 0 in Fairlearn (and here)
    df.loc[df.sex == "x", "y"] = 0
    return df


def fairlearn_frame(df: pd.DataFrame, sensitive) -> MetricFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                    "fpr": false_positive_rate, "accuracy": accuracy_score},
                           y_true=df.y, y_pred=df.pred, sensitive_features=sensitive)


def test_equals_fairlearn(decisions: pd.DataFrame) -> None:
    df = decisions
    r = fairness_report(df.y.to_numpy(), df.pred.to_numpy(), {"sex": df.sex.to_numpy()})
    mf = fairlearn_frame(df, df.sex)
    for group, row in mf.by_group.iterrows():
        for metric in ("selection_rate", "tpr", "fpr", "accuracy"):
            assert abs(r.by_group[group][metric] - row[metric]) <= TOL, (group, metric)
        assert r.by_group[group]["count"] == (df.sex == group).sum()
    kw = dict(sensitive_features=df.sex)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(r.demographic_parity_difference
                   - demographic_parity_difference(df.y, df.pred, **kw)) <= TOL
        assert abs(r.demographic_parity_ratio - demographic_parity_ratio(df.y, df.pred, **kw)) \
            <= TOL
        assert abs(r.equalized_odds_difference
                   - equalized_odds_difference(df.y, df.pred, **kw)) <= TOL
        assert abs(r.equalized_odds_ratio - equalized_odds_ratio(df.y, df.pred, **kw)) <= TOL
    assert r.by_group["x"]["tpr"] == 0.0


def test_crossed_attributes_equal_fairlearn(decisions: pd.DataFrame) -> None:
    df = decisions
    r = fairness_report(df.y, df.pred, df[["sex", "race"]])
    assert r.attribute == "sex x race"
    mf = fairlearn_frame(df, df[["sex", "race"]])
    for (sex, race), row in mf.by_group.iterrows():
        assert abs(r.by_group[f"{sex} & {race}"]["selection_rate"] - row["selection_rate"]) \
            <= TOL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(r.equalized_odds_difference - equalized_odds_difference(
            df.y, df.pred, sensitive_features=df[["sex", "race"]])) <= TOL


def test_parity_against_reference(decisions: pd.DataFrame) -> None:
    df = decisions
    r = fairness_report(df.y, df.pred, {"sex": df.sex})
    assert r.reference == "f"  # the largest group
    for group, verdicts in r.parity.items():
        for metric, v in verdicts.items():
            ref = r.by_group["f"][metric]
            own = r.by_group[group][metric]
            ratio = own / ref if ref else (1.0 if own == 0 else math.inf)
            assert v["ratio"] == pytest.approx(ratio)
            assert v["ok"] == (0.8 <= ratio <= 1.25)
    assert not r.ok and ("x", "tpr", 0.0) in r.violations  # x has no positives: TPR 0
    other = fairness_report(df.y, df.pred, {"sex": df.sex}, reference="m",
                            parity_bounds=(0.5, 2.0))
    assert other.reference == "m" and other.parity["m"]["selection_rate"]["ratio"] == 1.0


def test_round_trip_summary_and_labels() -> None:
    y = np.array(["good", "bad", "good", "good", "bad", "bad"])
    pred = np.array(["good", "good", "good", "bad", "bad", "good"])
    r = fairness_report(y, pred, np.array(list("aabbbb")), pos_label="good")
    assert r.attribute == "group" and r.by_group["a"]["selection_rate"] == 1.0
    again = FairnessReport.from_dict(r.to_dict())
    assert again.to_dict() == r.to_dict() and again.ok == r.ok
    assert "reference b" in r.summary()


def test_evaluate_protected_matches_fairness_report(decisions: pd.DataFrame) -> None:
    df = decisions
    result = evaluate("p", df, label="y", protected=["sex", ("sex", "race")], bootstrap=0)
    direct = fairness_report(df.y, df.pred, {"sex": df.sex})
    assert result.fairness["sex"].to_dict() == direct.to_dict()
    assert set(result.fairness) == {"sex", "sex x race"}


def test_errors() -> None:
    with pytest.raises(InvalidInputError, match="pos_label"):
        fairness_report(np.array(["a", "b"]), np.array(["a", "a"]), np.array([1, 2]))
    with pytest.raises(InvalidInputError) as err:
        fairness_report(np.array([0, 1]), np.array([0, 1, 1]), np.array([1, 2]))
    assert err.value.field == "y_pred"
    with pytest.raises(InvalidInputError) as err:
        fairness_report(np.array([0, 1]), np.array([0, 1]), np.array([1, 2]), reference="z")
    assert err.value.field == "reference"
    df = pd.DataFrame({"y": [0, 1, 2, 1] * 10, "g": list("ab") * 20})
    with pytest.raises(InvalidInputError, match="positive_label"):
        evaluate(np.array([0, 1, 2, 2] * 10), df, label="y", protected="g", bootstrap=0)
    r = evaluate(np.array([0, 1, 2, 2] * 10), df, label="y", protected="g", positive_label=2,
                 bootstrap=0)
    assert r.fairness["g"].positive_label == 2
