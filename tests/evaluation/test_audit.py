"""Audit: named checks on a frame of outputs, checked against scikit-learn and hand counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn import metrics as skm

from prodml.errors import InvalidInputError
from prodml.evaluation.audit import Check, audit, frame_metric, load_checks


@pytest.fixture(scope="module")
def outputs() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 1200
    gender = rng.choice(["f", "m", "x"], n, p=[0.49, 0.49, 0.02])
    age = rng.integers(18, 90, n)
    label = rng.integers(0, 2, n)
    wrong = rng.random(n) < np.where(gender == "f", 0.10, 0.16)  # m is 6 points worse
    prediction = np.where(wrong, 1 - label, label)
    rude = rng.random(n) < 0.004
    return pd.DataFrame({"gender": gender, "age": age, "seniors": age >= 65,
                         "label": label, "prediction": prediction,
                         "score": np.clip(prediction * 0.7 + rng.random(n) * 0.3, 0, 1),
                         "transcript": np.where(rude, "gun", "gan")})


def _accuracy(df: pd.DataFrame) -> float:
    return float((df["label"] == df["prediction"]).mean())


def test_gap_across_groups_matches_hand_count(outputs):
    report = audit(outputs, [Check("accuracy per gender within 2 points", metric="accuracy",
                                   across="gender", max_gap=0.02)],
                   label="label", prediction="prediction")
    result = report["accuracy per gender within 2 points"]
    by_hand = {g: _accuracy(outputs[outputs.gender == g]) for g in ("f", "m")}
    assert result.evidence["groups"] == pytest.approx({f"gender={g}": v
                                                       for g, v in by_hand.items()})
    assert result.observed == pytest.approx(abs(by_hand["f"] - by_hand["m"]))
    assert result.observed > 0.02 and not result.passed and not report.ok
    assert "gender=x" in result.evidence["left_out"]  # 2 % of 1200 rows: too few to judge
    assert result.evidence["lowest"] == "gender=m"
    assert "FAIL accuracy per gender within 2 points" in str(report)


def test_small_groups_join_when_asked(outputs):
    check = Check("every gender above 70 %", metric="accuracy", across="gender", min=0.7,
                  include_small=True)
    result = audit(outputs, [check], label="label", prediction="prediction").results[0]
    assert set(result.evidence["groups"]) == {"gender=f", "gender=m", "gender=x"}
    assert result.observed == pytest.approx(min(result.evidence["groups"].values()))
    assert result.passed == (result.observed >= 0.7)


def test_slice_metric_equals_sklearn(outputs):
    seniors = outputs[outputs.seniors]
    report = audit(outputs, [
        Check("f1 on seniors >= 0.8", slice="seniors", metric="f1", min=0.8),
        Check("recall for women >= 0.99", slice="gender=f", metric="recall", min=0.99),
        Check("roc auc overall >= 0.8", metric="roc_auc", min=0.8)],
        label="label", prediction="prediction", score="score")
    f1 = report["f1 on seniors >= 0.8"]
    assert f1.observed == pytest.approx(skm.f1_score(seniors.label, seniors.prediction))
    assert f1.evidence["count"] == len(seniors) and f1.passed
    women = outputs[outputs.gender == "f"]
    recall = report["recall for women >= 0.99"]
    assert recall.observed == pytest.approx(skm.recall_score(women.label, women.prediction))
    assert not recall.passed
    auc = report["roc auc overall >= 0.8"]
    assert auc.observed == pytest.approx(skm.roc_auc_score(outputs.label, outputs.score))
    assert [r.name for r in report.failures] == ["recall for women >= 0.99"]


def test_predicates_as_function_sql_and_expression(outputs):
    share = float((outputs.transcript == "gun").mean())
    assert 0 < share < 0.01
    report = audit(outputs, [
        Check("rude words below 0.1 %", predicate=lambda df: df["transcript"] == "gun",
              max=0.001),
        Check("rude words below 1 % (sql)", predicate="transcript = 'gun'", max=0.01),
        Check("rude words below 1 % (expr)", predicate=pl.col("transcript") == "gun",
              max=0.01),
        Check("rude share as a number", predicate=lambda df: share, max=0.01)])
    observed = [r.observed for r in report.results]
    assert observed == pytest.approx([share] * 4)
    assert [r.passed for r in report.results] == [False, True, True, True]
    assert report.results[1].evidence == {"flagged": round(share * len(outputs)),
                                          "rows": len(outputs)}
    as_dict = report.to_dict()
    assert as_dict["ok"] is False and as_dict["failed"] == 1


def test_checks_from_yaml_and_dicts(outputs, tmp_path):
    text = """
checks:
  - name: accuracy per gender within 10 points
    metric: accuracy
    across: gender
    max_gap: 0.10
  - name: rude words below 1 %
    predicate: "transcript = 'gun'"
    max: 0.01
"""
    path = tmp_path / "audit.yaml"
    path.write_text(text)
    for spec in (text, path, str(path)):
        checks = load_checks(spec)
        assert [c.name for c in checks] == ["accuracy per gender within 10 points",
                                            "rude words below 1 %"]
    report = audit(outputs, path, label="label", prediction="prediction")
    assert report.ok, str(report)
    assert load_checks(checks[0].to_dict()) == [checks[0]]


@pytest.mark.parametrize("spec, field, rule", [
    ({"name": "x", "metric": "accuracy"}, "check 'x'", "needs a bound"),
    ({"name": "x", "metric": "accuracy", "predicate": "a > 1", "max": 1}, "check 'x'",
     "exactly one of metric or predicate"),
    ({"name": "x", "metric": "accuracy", "max_gap": 0.1}, "check 'x'.max_gap", "across"),
    ({"name": "x", "metric": "accuracy", "min": "high"}, "check 'x'.min", "finite number"),
    ({"name": "x", "metric": "accuracy", "min": 0.9, "max": 0.1}, "check 'x'", "min must be"),
    ({"name": "x", "metric": "accuracy", "min": 0.5, "treshold": 1}, "checks[0].treshold",
     "unknown field"),
    ({"name": "", "metric": "accuracy", "min": 0.5}, "check.name", "needs a name"),
])
def test_bad_checks_name_field_and_rule(spec, field, rule):
    with pytest.raises(InvalidInputError, match=rule) as err:
        load_checks([spec])
    assert err.value.field == field


def test_bad_audits_name_field_and_rule(outputs):
    cases = [
        (Check("a", metric="accuracy", slice="retirees", min=0.5), {}, "slice"),
        (Check("a", metric="accuracy", across="country", max_gap=0.1), {}, "across"),
        (Check("a", metric="accuracy", min=0.5), {"label": "truth"}, "label"),
        (Check("a", metric="brilliance", min=0.5), {}, "metric"),
        (Check("a", predicate=lambda df: df["nope"], max=0.1), {}, "check 'a'.predicate"),
    ]
    for check, kwargs, field in cases:
        args = {"label": "label", "prediction": "prediction", **kwargs}
        with pytest.raises(InvalidInputError) as err:
            audit(outputs, [check], **args)
        assert err.value.field == field, (check, err.value)


def test_a_check_that_cannot_be_measured_fails():
    frame = pd.DataFrame({"label": [0, 0], "prediction": [0, 0], "score": [0.1, 0.2]})
    report = audit(frame, [Check("auc", metric="roc_auc", min=0.5)], label="label",
                   prediction="prediction", score="score")
    assert not report.ok and math.isnan(report.results[0].observed)
    assert report.results[0].detail == "not available"
    assert report.to_dict()["results"][0]["observed"] is None


@pytest.mark.parametrize("metric, reference", [
    ("accuracy", skm.accuracy_score), ("balanced_accuracy", skm.balanced_accuracy_score),
    ("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)])
def test_frame_metrics_equal_sklearn_binary(metric, reference):
    rng = np.random.default_rng(11)
    y, pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    assert frame_metric(metric, y, pred) == pytest.approx(reference(y, pred))


def test_frame_metrics_multiclass_regression_and_rates():
    rng = np.random.default_rng(12)
    y, pred = rng.choice(["a", "b", "c"], 300), rng.choice(["a", "b", "c"], 300)
    assert frame_metric("f1", y, pred) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    t, p = rng.normal(size=100), rng.normal(size=100)
    assert frame_metric("rmse", t, p) == pytest.approx(skm.root_mean_squared_error(t, p))
    assert frame_metric("mae", t, p) == pytest.approx(skm.mean_absolute_error(t, p))
    assert frame_metric("r2", t, p) == pytest.approx(skm.r2_score(t, p))
    tn, fp, fn, tp = skm.confusion_matrix([0, 0, 1, 1, 1], [1, 0, 0, 1, 1]).ravel()
    assert frame_metric("fpr", [0, 0, 1, 1, 1], [1, 0, 0, 1, 1]) == fp / (fp + tn)
    assert frame_metric("fnr", [0, 0, 1, 1, 1], [1, 0, 0, 1, 1]) == fn / (fn + tp)
    with pytest.raises(InvalidInputError, match="0/1"):
        frame_metric("fpr", y, pred)


# -- from an EvaluationResult -------------------------------------------------------------------
def test_audit_of_an_evaluation_matches_the_frame_audit(outputs):
    from prodml.evaluation.evaluate import evaluate

    result = evaluate("prediction", outputs, label="label", bootstrap=0, min_slice_size=30,
                      slices=["gender", "seniors", {"women": "gender = 'f'"}])
    checks = [
        Check("accuracy per gender within 2 points", metric="accuracy", across="gender",
              max_gap=0.02),
        Check("f1 on seniors >= 0.8", slice="seniors", metric="f1", min=0.8),  # seniors=True
        Check("recall for women >= 0.8", slice="women", metric="recall", min=0.8),
        Check("accuracy >= 0.8", metric="accuracy", min=0.8),
        Check("rude words below 0.1 %", predicate="transcript = 'gun'", max=0.001)]
    from_result = audit(result, checks, data=outputs)
    checks[2] = Check("recall for women >= 0.8", slice="gender = 'f'", metric="recall",
                      min=0.8)  # the frame has no slice named women: SQL says who they are
    from_frame = audit(outputs, checks, label="label", prediction="prediction")
    for a, b in zip(from_result.results, from_frame.results):
        assert a.passed == b.passed, a.name
        assert a.observed == pytest.approx(b.observed), a.name
    gap = from_result["accuracy per gender within 2 points"]
    assert set(gap.evidence["groups"]) == {"gender=f", "gender=m"}
    assert gap.evidence["left_out"] == {"gender=x": f"small ({(outputs.gender == 'x').sum()} "
                                                    "rows)"}
    assert from_result["f1 on seniors >= 0.8"].evidence["slice"] == "seniors=True"
    assert not from_result.ok


def test_audit_of_an_evaluation_names_what_is_missing(outputs):
    from prodml.evaluation.evaluate import evaluate

    result = evaluate("prediction", outputs, label="label", bootstrap=0, slices=["gender"])
    cases = [(Check("a", metric="accuracy", slice="retirees", min=0.5), "slice"),
             (Check("a", metric="accuracy", across="region", max_gap=0.1), "across"),
             (Check("a", metric="bleu", min=0.5), "metric"),
             (Check("a", predicate="transcript = 'gun'", max=0.1), "data")]
    for check, field in cases:
        with pytest.raises(InvalidInputError) as err:
            audit(result, [check])
        assert err.value.field == field, (check, err.value)
