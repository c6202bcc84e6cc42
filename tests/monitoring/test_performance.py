"""Realised performance equals scikit-learn's; CBPE's estimates fall within sampling error of
the realised metrics when labels are drawn from the calibrated probabilities."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from prodml.errors import InvalidInputError
from prodml.monitoring import Calibrator, estimate_performance, realised_performance

TOL = 1e-12


def labelled_window(seed: int, n: int = 3_000, classes: tuple = (0, 1),
                    coverage: float = 0.7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.choice(classes, n)
    wrong = rng.random(n) < 0.25
    pred = np.where(wrong, rng.choice(classes, n), truth)
    has_label = rng.random(n) < coverage
    time = np.arange(n, dtype=np.int64) * 1000
    return pl.DataFrame({
        "time": time,
        "label": pl.Series([t if h else None for t, h in zip(truth.tolist(), has_label)]),
        "label_time": pl.Series([int(t + d) if h else None for t, d, h in
                                 zip(time, rng.integers(1_000, 90_000, n), has_label)],
                                dtype=pl.Int64),
        "prediction": pred,
        "score": np.clip(np.where(truth == classes[-1], 0.65, 0.35) + rng.normal(0, 0.2, n),
                         0, 1),
        "region": rng.choice(["north", "south", "east"], n),
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_scikit_learn_overall_and_per_slice(seed):
    w = labelled_window(seed)
    r = realised_performance(w, positive=1, score="score", slices=["region"])
    done = w.filter(pl.col("label").is_not_null())
    y, p, s = done["label"].to_numpy(), done["prediction"].to_numpy(), done["score"].to_numpy()
    assert r.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=TOL)
    assert r.metrics["precision"] == pytest.approx(skm.precision_score(y, p), abs=TOL)
    assert r.metrics["recall"] == pytest.approx(skm.recall_score(y, p), abs=TOL)
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(y, p), abs=TOL)
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=TOL)
    for region, metrics in r.slices["region"].items():
        part = done.filter(pl.col("region") == region)
        yy, pp = part["label"].to_numpy(), part["prediction"].to_numpy()
        assert metrics["rows"] == part.height
        assert metrics["f1"] == pytest.approx(skm.f1_score(yy, pp), abs=TOL)
        assert metrics["roc_auc"] == pytest.approx(
            skm.roc_auc_score(yy, part["score"].to_numpy()), abs=TOL)


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_multiclass_averages_equal_scikit_learn(average):
    w = labelled_window(5, classes=("cat", "dog", "fish"))
    r = realised_performance(w, average=average, slices=["region"])
    done = w.filter(pl.col("label").is_not_null())
    y, p = done["label"].to_numpy(), done["prediction"].to_numpy()
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        assert r.metrics[name] == pytest.approx(fn(y, p, average=average), abs=TOL)
    for region, metrics in r.slices["region"].items():
        part = done.filter(pl.col("region") == region)
        assert metrics["f1"] == pytest.approx(
            skm.f1_score(part["label"], part["prediction"], average=average), abs=TOL)


def test_coverage_and_delay():
    w = labelled_window(7)
    r = realised_performance(w, positive=1)
    labelled = w.filter(pl.col("label").is_not_null())
    assert r.labelled == labelled.height
    assert r.label_coverage == labelled.height / w.height
    delays = (labelled["label_time"] - labelled["time"]).to_numpy() / 1000
    assert r.label_delay_s == np.median(delays)
    series = r.series()
    assert series["label_coverage"] == r.label_coverage
    assert series["label_delay_s"] == r.label_delay_s
    assert "f1[region=north]" not in series  # no slices asked for


def test_labels_and_json_answers_of_different_types_compare_as_text():
    w = pl.DataFrame({"label": [1, 0, 1, None], "prediction": ["1", "1", "1", "0"]})
    r = realised_performance(w, positive=1)
    assert r.metrics["accuracy"] == pytest.approx(2 / 3)
    assert r.evaluated == 3 and r.labelled == 3 and r.rows == 4


def test_an_error_without_an_answer_is_labelled_but_not_scored():
    w = pl.DataFrame({"label": [1, 0, 1], "prediction": [1, None, 1]})
    r = realised_performance(w, positive=1)
    assert (r.labelled, r.evaluated, r.metrics["accuracy"]) == (3, 2, 1.0)


def test_no_labels_yet_gives_nan():
    w = pl.DataFrame({"time": [1, 2], "label": pl.Series([None, None], dtype=pl.Int64),
                      "label_time": pl.Series([None, None], dtype=pl.Int64),
                      "prediction": [1, 0]})
    r = realised_performance(w, positive=1)
    assert r.label_coverage == 0.0 and math.isnan(r.label_delay_s)
    assert all(math.isnan(v) for v in r.metrics.values())
    assert r.to_dict()["metrics"]["accuracy"] is None


def test_realised_performance_errors_name_the_field():
    w = labelled_window(1, n=10)
    with pytest.raises(InvalidInputError, match="average='micro'"):
        realised_performance(w, average="micro")
    with pytest.raises(InvalidInputError, match="slices='city'"):
        realised_performance(w, slices=["city"])


# -- CBPE -------------------------------------------------------------------------------------
def calibrated(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-0.8, 1.6, n)))
    return p, (rng.random(n) < p).astype(int)


def realised(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    pred = (p >= threshold).astype(int)
    return {"accuracy": skm.accuracy_score(y, pred), "precision": skm.precision_score(y, pred),
            "recall": skm.recall_score(y, pred), "f1": skm.f1_score(y, pred),
            "roc_auc": skm.roc_auc_score(y, p)}


@pytest.mark.parametrize("seed", range(5))
def test_cbpe_is_within_sampling_error_of_realised(seed):
    p, y = calibrated(seed, 5_000)
    est = estimate_performance(p)
    for name, value in realised(y, p).items():
        assert abs(value - est.metrics[name]) < 3 * est.standard_errors[name], name
    assert not any(c["outside_band"] for c in est.compare(realised(y, p)).values())


def test_cbpe_standard_errors_match_the_spread_of_realised_metrics():
    # Over many windows, (realised - estimated) / standard error should be about N(0, 1).
    z = {name: [] for name in ("accuracy", "precision", "recall", "f1", "roc_auc")}
    for seed in range(150):
        p, y = calibrated(100 + seed, 2_000)
        est = estimate_performance(p)
        for name, value in realised(y, p).items():
            z[name].append((value - est.metrics[name]) / est.standard_errors[name])
    for name, values in z.items():
        values = np.asarray(values)
        assert abs(values.mean()) < 0.3, name
        assert 0.75 < values.std() < 1.25, (name, values.std())


def test_cbpe_from_raw_scores_with_a_calibrator():
    # The model's scores are p squared: not calibrated; isotonic regression on a labelled
    # reference maps them back.
    p_ref, y_ref = calibrated(11, 20_000)
    p, y = calibrated(12, 5_000)
    raw_ref, raw = p_ref ** 2, p ** 2
    calibrator = Calibrator.fit(raw_ref, y_ref)
    est = estimate_performance(raw, (p >= 0.5).astype(int), calibrator=calibrator)
    truth = realised(y, p)
    for name, value in truth.items():
        assert abs(value - est.metrics[name]) < 3.5 * est.standard_errors[name], name
    uncalibrated = estimate_performance(raw, (p >= 0.5).astype(int))
    assert abs(uncalibrated.metrics["accuracy"] - truth["accuracy"]) > \
        5 * uncalibrated.standard_errors["accuracy"]


def test_cbpe_follows_nannymls_definitions_on_a_small_case():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    pred = np.array([1, 1, 0, 1, 0])
    est = estimate_performance(p, pred)
    tp, fp = 0.9 + 0.8 + 0.6, 0.1 + 0.2 + 0.4
    fn, tn = 0.3 + 0.1, 0.7 + 0.9
    assert est.confusion == pytest.approx({"tp": tp, "fp": fp, "fn": fn, "tn": tn})
    assert est.metrics["accuracy"] == pytest.approx((tp + tn) / 5)
    assert est.metrics["precision"] == pytest.approx(tp / (tp + fp))
    assert est.metrics["recall"] == pytest.approx(tp / (tp + fn))
    assert est.metrics["f1"] == pytest.approx(tp / (tp + 0.5 * (fp + fn)))
    # the expected ROC curve: thresholds at each score, expected positives = sum of p
    order = np.argsort(-p)
    tps = np.concatenate([[0], np.cumsum(p[order])])
    fps = np.concatenate([[0], np.cumsum(1 - p[order])])
    assert est.metrics["roc_auc"] == pytest.approx(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def test_cbpe_errors_name_the_field():
    with pytest.raises(InvalidInputError, match="probabilities"):
        estimate_performance([0.2, 1.4])
    with pytest.raises(InvalidInputError, match="predictions"):
        estimate_performance([0.2, 0.4], [1])
    with pytest.raises(InvalidInputError, match="labels"):
        Calibrator.fit([0.1, 0.2], [1, 1])
