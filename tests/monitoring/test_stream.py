"""The monitors on streams where the truth is known (River's Agrawal generator).

The main stream has 20,000 served predictions in windows of 2,000: ``loan`` and
``commission`` move from row 4,000 (covariate shift on inputs neither concept nor the model
uses) and the concept changes at row 10,000 (window 5). The checks: data drift is flagged on
the shifted features only; River's detectors on the error stream fire after the change and
never before, with their delay; the alerts fire at the right windows and only there; CBPE
keeps estimating the old accuracy while the realised one falls (it cannot see a change of
P(y | x)); the change is classified sudden, and the gradual and recurrent streams as such.

Windows hold 2,000 rows because Evidently's rule (normed Wasserstein >= 0.1) flags sampling
noise on 1,000-row windows of this stream (``hyears`` reached 0.117 against the 3,000-row
reference); on 2,000 rows the largest score of an unshifted feature is 0.08.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

import prodml as pm
from prodml.monitoring import (AdaptiveThreshold, AlertRule, AlertState, ErrorStreamMonitor,
                               StaticThreshold, classify_change, confidence_shift,
                               detection_delay, drift_series, error_stream,
                               estimate_performance, feature_columns, measure_window,
                               prior_shift, realised_performance, update_alerts,
                               window_drift)
from tests.monitoring.streams import (FEATURES, mixed, sudden_with_covariate_shift,
                                      toward_thresholds, train_model, windows)

WINDOW = 2_000
SHIFT = 4_000
CHANGE = 10_000
SHIFTED = {"loan", "commission"}


@pytest.fixture(scope="module")
def model():
    return train_model()


@pytest.fixture(scope="module")
def log(model) -> pl.DataFrame:
    return model.predict(sudden_with_covariate_shift(20_000, CHANGE, SHIFT))


@pytest.fixture(scope="module")
def reference(model) -> pl.DataFrame:
    return model.training.select(FEATURES)


def run_monitor(model, log: pl.DataFrame, reference: pl.DataFrame) -> list[dict[str, float]]:
    """What a runner computes per window: every series, from the pure functions."""
    training_labels = model.training["label"].value_counts()
    prior = dict(zip(training_labels["label"].to_list(), training_labels["count"].to_list()))
    out = []
    for w in windows(log, WINDOW):
        values = measure_window(w, classes=[0, 1])
        values.update(drift_series(window_drift(reference, w),
                                   prior=prior_shift(w["prediction"], prior)))
        values.update(realised_performance(w, positive=1, score="proba_1").series())
        values.update(estimate_performance(w["proba_1"].to_numpy(),
                                           calibrator=model.calibrator).series())
        out.append(values)
    return out


@pytest.fixture(scope="module")
def series(model, log, reference) -> list[dict[str, float]]:
    return run_monitor(model, log, reference)


def test_the_features_are_the_logged_inputs(log):
    assert feature_columns(log) == list(FEATURES)


def test_data_drift_is_flagged_on_the_shifted_features_only(log, reference):
    for i, w in enumerate(windows(log, WINDOW)):
        report = window_drift(reference, w)
        expected = SHIFTED if i * WINDOW >= SHIFT else set()
        assert set(report.drifted_columns) == expected, (i, report.summary())


def test_drift_scores_equal_the_data_issues_functions(log, reference):
    w = windows(log, WINDOW)[3]
    ours = drift_series(window_drift(reference, w))
    direct = pm.drift(reference.to_pandas(), w.select(FEATURES).to_pandas())
    for column in direct.columns:
        assert ours[f"drift_score[{column.name}]"] == column.score
        assert ours[f"drifted[{column.name}]"] == float(column.drifted)
    assert ours["drift_share"] == direct.share_drifted


@pytest.mark.parametrize("detector", ["adwin", "ddm", "page_hinkley"])
def test_error_stream_detectors_fire_after_the_change_and_never_before(log, detector):
    monitor = ErrorStreamMonitor(detector)
    found = monitor.update_many(error_stream(log))
    delay = detection_delay(found, CHANGE)
    assert delay.false_alarms == 0, found
    assert delay.delay is not None and 0 <= delay.delay < 500, delay
    print(f"{detector}: first detection {delay.first_detection}, delay {delay.delay} "
          "predictions")


def test_incremental_runs_find_what_one_run_finds(log):
    errors = error_stream(log)
    whole = ErrorStreamMonitor("adwin")
    whole.update_many(errors)
    pieces = ErrorStreamMonitor("adwin")
    found = []
    for start in range(0, errors.size, 1_337):  # runs that read only what is new
        found += pieces.update_many(errors[start:start + 1_337])
    assert found == whole.detections and pieces.n == whole.n == errors.size


def test_mean_confidence_does_not_move_when_only_the_concept_does(log):
    # The model's confidence depends on the inputs only; the covariate shift is on inputs
    # the model ignores and the concept change leaves the inputs alone, so the test must
    # stay quiet (no false alarm before the change, and nothing to see after it either).
    parts = windows(log, WINDOW)
    for previous, current in itertools.pairwise(parts):
        assert not confidence_shift(previous["confidence"], current["confidence"]).significant


def test_confidence_test_flags_inputs_moving_to_where_the_model_is_unsure(model):
    stream = model.predict(toward_thresholds(6_000, 4_000))
    parts = windows(stream, WINDOW)
    flagged = [i for i in range(1, len(parts))
               if confidence_shift(parts[i - 1]["confidence"],
                                   parts[i]["confidence"]).significant]
    assert flagged == [3]  # the first window after row 6,000, and no other
    means = [p["confidence"].mean() for p in parts]
    noise = parts[0]["confidence"].std() / math.sqrt(WINDOW)  # one window's mean's std
    finding = classify_change(means, scale=noise)
    assert (finding.kind, finding.window) == ("sudden", 3)


def test_alerts_fire_at_the_right_windows_only(series):
    rules = [AlertRule("accuracy", AdaptiveThreshold(k=3, min_history=4), name="accuracy"),
             AlertRule("error_rate", StaticThreshold(upper=0.05), name="errors"),
             AlertRule("prior_shift", StaticThreshold(upper=0.5), name="prior shift"),
             *(AlertRule(f"drifted[{f}]", StaticThreshold(upper=0.5), name=f"drift {f}")
               for f in FEATURES)]
    states = [AlertState(rule) for rule in rules]
    events = []
    for i, values in enumerate(series):
        events += update_alerts(states, values, at=i)
    fired = {(e.rule, e.at) for e in events if e.status == "firing"}
    shift_window, change_window = SHIFT // WINDOW, CHANGE // WINDOW
    assert fired == {("drift loan", shift_window), ("drift commission", shift_window),
                     ("accuracy", change_window)}
    # deduplicated: each stays one open alert through the windows that keep breaching
    assert not [e for e in events if e.status == "resolved"]
    by_rule = {s.rule.name: s for s in states}
    assert by_rule["drift loan"].episode["breaches"] == len(series) - shift_window
    assert by_rule["accuracy"].alerts_fired == 1


def test_performance_equals_scikit_learn_per_window(log):
    for w in windows(log, WINDOW):
        r = realised_performance(w, positive=1, score="proba_1", slices=["elevel"])
        y, p = w["label"].to_numpy(), w["prediction"].to_numpy()
        assert r.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
        assert r.metrics["precision"] == pytest.approx(skm.precision_score(y, p), abs=1e-12)
        assert r.metrics["recall"] == pytest.approx(skm.recall_score(y, p), abs=1e-12)
        assert r.metrics["f1"] == pytest.approx(skm.f1_score(y, p), abs=1e-12)
        assert r.metrics["roc_auc"] == pytest.approx(
            skm.roc_auc_score(y, w["proba_1"].to_numpy()), abs=1e-12)
        for level, metrics in r.slices["elevel"].items():
            part = w.filter(pl.col("elevel") == int(level))
            assert metrics["f1"] == pytest.approx(
                skm.f1_score(part["label"], part["prediction"], zero_division=0), abs=1e-12)


def test_estimated_performance_tracks_realised_until_the_concept_changes(series, log, model):
    # The standard errors cover the labels' sampling only, not the calibrator's own error
    # (fitted on 10,000 rows): each window within 4 of them, the pooled stretch within 3.
    change_window = CHANGE // WINDOW
    for i, values in enumerate(series):
        for metric in ("accuracy", "f1", "roc_auc"):
            gap = values[metric] - values[f"estimated_{metric}"]
            z = gap / values[f"estimated_{metric}_se"]
            if i < change_window:
                assert abs(z) < 4, (i, metric, z)
            else:
                assert z < -10, (i, metric, z)  # CBPE cannot see P(y | x) change
    before = log.head(CHANGE)
    estimated = estimate_performance(before["proba_1"].to_numpy(), calibrator=model.calibrator)
    realised = realised_performance(before, positive=1, score="proba_1").metrics
    assert not any(c["outside_band"] for c in estimated.compare(realised, z=3).values())
    after = log.slice(CHANGE)
    estimated = estimate_performance(after["proba_1"].to_numpy(), calibrator=model.calibrator)
    realised = realised_performance(after, positive=1, score="proba_1").metrics
    assert all(c["outside_band"] for c in estimated.compare(realised, z=3).values())


def test_the_change_is_sudden_gradual_or_recurrent(model, series):
    errors = [1 - values["accuracy"] for values in series]
    finding = classify_change(errors)
    assert (finding.kind, finding.window) == ("sudden", CHANGE // WINDOW)
    assert [classify_change(errors[:i]).kind for i in range(6, CHANGE // WINDOW + 1)] == \
        ["none"] * (CHANGE // WINDOW - 5)  # nothing before the change

    n = 20_000
    ramp = np.clip((np.arange(n) - 6_000) / 8_000, 0, 1)  # second concept from 0 % to 100 %
    gradual = [1 - realised_performance(w, positive=1).metrics["accuracy"]
               for w in windows(model.predict(mixed(ramp, 11)), WINDOW)]
    assert classify_change(gradual[:6]).kind == "gradual"  # mid-way up the ramp
    assert [classify_change(gradual[:i]).kind for i in range(6, 10)] == ["gradual"] * 4

    back = ((np.arange(n) >= 8_000) & (np.arange(n) < 14_000)).astype(float)
    log = model.predict(mixed(back, 21))
    parts = windows(log, WINDOW)
    recurrent = [1 - realised_performance(w, positive=1).metrics["accuracy"] for w in parts]
    cells = [[w.filter((pl.col("label") == a) & (pl.col("prediction") == b)).height
              for a in (0, 1) for b in (0, 1)] for w in parts]
    back_at = 14_000 // WINDOW
    for found in (classify_change(recurrent[:back_at + 1]),
                  classify_change(recurrent[:back_at + 1], distributions=cells[:back_at + 1])):
        assert found.kind == "recurrent" and found.evidence["matches_window"] < 4, found
    assert classify_change(recurrent[:back_at]).kind == "sudden"  # the way there: a step
