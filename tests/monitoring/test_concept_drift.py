"""The confidence test equals SciPy's; the error-stream monitor is River's detector, batched
and picklable; sudden, gradual and recurrent changes are told apart on constructed series."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from river import drift
from scipy import stats

from prodml.errors import InvalidInputError
from prodml.monitoring import (ErrorStreamMonitor, classify_change, confidence_shift,
                               detection_delay, error_stream)
from prodml.monitoring.concept_drift import DETECTORS


def test_welch_and_mann_whitney_equal_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.beta(8, 2, 3000), rng.beta(7.5, 2, 2500)
    welch = confidence_shift(a, b, method="welch", alpha=0.05)
    expected = stats.ttest_ind(b, a, equal_var=False)
    assert (welch.statistic, welch.p_value) == (expected.statistic, expected.pvalue)
    assert welch.effect == pytest.approx(b.mean() - a.mean())
    assert welch.significant == (expected.pvalue < 0.05)
    mw = confidence_shift(a, b, method="mannwhitney")
    expected = stats.mannwhitneyu(b, a, alternative="two-sided")
    assert (mw.statistic, mw.p_value) == (expected.statistic, expected.pvalue)
    assert mw.standardized == pytest.approx(2 * expected.statistic / (a.size * b.size) - 1)


def test_confidence_shift_needs_the_effect_to_matter():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.80, 0.05, 50_000), rng.normal(0.801, 0.05, 50_000)
    assert confidence_shift(a, b, alpha=0.05).significant  # large windows: tiny moves test
    assert not confidence_shift(a, b, alpha=0.05, min_effect=0.01).significant


def test_confidence_shift_drops_missing_values_and_rejects_too_few():
    shift = confidence_shift([0.9, np.nan, 0.8, 0.85], [0.6, 0.7, None, 0.65])
    assert (shift.n_previous, shift.n_current) == (3, 3)
    with pytest.raises(InvalidInputError, match="current"):
        confidence_shift([0.9, 0.8], [0.7])
    with pytest.raises(InvalidInputError, match="method"):
        confidence_shift([0.9, 0.8], [0.7, 0.6], method="ks")


def test_constant_equal_windows_are_no_change():
    shift = confidence_shift([0.9] * 10, [0.9] * 10)
    assert shift.p_value == 1.0 and not shift.significant


@pytest.mark.parametrize("name", DETECTORS)
def test_update_many_is_update_one_by_one(name):
    rng = np.random.default_rng(4)
    stream = np.concatenate([rng.random(1500) < 0.05, rng.random(1500) < 0.5]).astype(int)
    params = {"seed": 1} if name == "kswin" else {}
    one = ErrorStreamMonitor(name, **params)
    fired = [i for i, e in enumerate(stream) if one.update(e)]
    many = ErrorStreamMonitor(name, **params)
    assert many.update_many(stream) == fired == one.detections
    assert many.warnings == one.warnings and many.n == one.n == stream.size


def test_adwin_positions_equal_rivers_own():
    rng = np.random.default_rng(5)
    stream = np.concatenate([rng.random(3000) < 0.1, rng.random(3000) < 0.3]).astype(int)
    detector, expected = drift.ADWIN(), []
    for i, value in enumerate(stream):
        detector.update(value)
        if detector.drift_detected:
            expected.append(i)
    assert ErrorStreamMonitor("adwin").update_many(stream) == expected
    assert ErrorStreamMonitor(drift.ADWIN(delta=0.002)).update_many(stream) == expected


def test_the_monitor_pickles_with_its_state():
    rng = np.random.default_rng(6)
    stream = np.concatenate([rng.random(3000) < 0.1, rng.random(3000) < 0.4]).astype(int)
    whole = ErrorStreamMonitor("page_hinkley")
    whole.update_many(stream)
    first = ErrorStreamMonitor("page_hinkley")
    first.update_many(stream[:3500])
    resumed = pickle.loads(pickle.dumps(first))  # a runner stores it between runs
    resumed.update_many(stream[3500:])
    assert resumed.detections == whole.detections
    summary = resumed.to_dict()
    assert summary["detector"] == "page_hinkley" and summary["seen"] == stream.size
    assert summary["params"]["threshold"] == 50.0


def test_detector_errors_name_the_field():
    with pytest.raises(InvalidInputError, match="detector='cusum'"):
        ErrorStreamMonitor("cusum")
    with pytest.raises(InvalidInputError, match="adwin parameters"):
        ErrorStreamMonitor("adwin", window=3)
    with pytest.raises(InvalidInputError, match="River drift detector"):
        ErrorStreamMonitor(object())


def test_detection_delay():
    d = detection_delay([10, 990, 1040, 2000], 1000)
    assert (d.first_detection, d.delay, d.false_alarms) == (1040, 40, 2)
    assert detection_delay([], 5).delay is None


def test_error_stream_orders_by_time_and_counts_unanswered_as_errors():
    import polars as pl

    w = pl.DataFrame({"time": [3, 1, 2, 4], "label": ["a", "b", "a", None],
                      "prediction": ["a", "a", None, "b"]})
    assert error_stream(w).tolist() == [1, 1, 0]


# -- sudden, gradual, recurrent -------------------------------------------------------------
def noisy(levels: list[float], seed: int, noise: float = 0.01) -> np.ndarray:
    return np.asarray(levels) + np.random.default_rng(seed).normal(0, noise, len(levels))


@pytest.mark.parametrize("seed", range(10))
def test_a_step_is_sudden(seed):
    values = noisy([0.1] * 8 + [0.3] * 3, seed)
    found = classify_change(values)
    assert (found.kind, found.window) == ("sudden", 8)
    assert found.evidence["jump"] == pytest.approx(values[8] - values[7])


@pytest.mark.parametrize("seed", range(10))
def test_a_trend_is_gradual(seed):
    values = noisy([0.1] * 6 + [0.1 + 0.04 * i for i in range(1, 7)], seed)
    found = classify_change(values)
    assert found.kind == "gradual", found
    assert found.evidence["slope"] == pytest.approx(0.04, abs=0.015)


@pytest.mark.parametrize("seed", range(10))
def test_a_return_to_an_earlier_level_is_recurrent(seed):
    values = noisy([0.1] * 6 + [0.3] * 4 + [0.1], seed)
    found = classify_change(values)
    assert found.kind == "recurrent" and found.evidence["matches_window"] < 6, found


def test_a_return_to_an_earlier_distribution_is_recurrent():
    a, b = [70, 20, 10], [30, 30, 40]
    found = classify_change([0.1] * 9, distributions=[a, a, a, a, b, b, b, b, a])
    assert found.kind == "recurrent" and found.evidence["matches_window"] == 0
    assert found.evidence["distance_to_previous"] > 0.1
    # the first move to b is no recurrence: nothing before looks like b
    assert classify_change([0.1] * 5, distributions=[a, a, a, a, b]).kind != "recurrent"


@pytest.mark.parametrize("seed", range(20))
def test_noise_is_no_change(seed):
    found = classify_change(noisy([0.1] * 12, seed), scale=0.01)
    assert found.kind == "none", found


def test_too_few_windows_say_so():
    assert classify_change([0.1, 0.1, 0.3]).kind == "none"
    assert classify_change([0.1, 0.1, 0.1, 0.3], scale=0.01).kind == "sudden"
    assert "fewer than" in classify_change([0.1, 0.2]).evidence["reason"]


def test_classify_change_errors_name_the_field():
    with pytest.raises(InvalidInputError, match="values"):
        classify_change([0.1, math.nan, 0.2])
    with pytest.raises(InvalidInputError, match="distributions"):
        classify_change([0.1] * 6, distributions=[[1, 2]] * 5)
    with pytest.raises(InvalidInputError, match=r"distributions\[1\]"):
        classify_change([0.1] * 3, distributions=[[1, 2], [0, 0], [1, 1]])
