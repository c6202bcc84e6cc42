"""Thresholds equal their NumPy definitions; the alert state machine moves ok → firing →
resolved after the declared numbers of windows, once per episode, and survives a round trip
through its dict in the middle of one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prodml.errors import InvalidInputError
from prodml.monitoring import (AdaptiveThreshold, AlertRule, AlertState, StaticThreshold,
                               threshold_from_dict, update_alerts)


# -- thresholds --------------------------------------------------------------------------------
def test_static_bounds_are_inclusive():
    t = StaticThreshold(lower=0.1, upper=0.5)
    assert [t.update(v) for v in (0.1, 0.5, 0.3, 0.09, 0.51, math.nan)] == \
        [False, False, False, True, True, False]


@pytest.mark.parametrize("k,window,ddof", [(3, 10, 0), (2, 5, 1), (3, None, 0)])
def test_adaptive_band_is_numpys_mean_plus_minus_k_std_of_the_trailing_values(k, window, ddof):
    rng = np.random.default_rng(0)
    values = rng.normal(10, 2, 60)
    t = AdaptiveThreshold(k=k, window=window, min_history=5, ddof=ddof, learn_breaches=True)
    for i, v in enumerate(values):
        known = values[:i] if window is None else values[max(0, i - window):i]
        lower, upper = t.bounds
        if known.size < 5:
            assert (lower, upper) == (None, None)
        else:
            mean, std = np.mean(known), np.std(known, ddof=ddof)
            assert (lower, upper) == (mean - k * std, mean + k * std)
        assert t.update(v) == (lower is not None and not lower <= v <= upper)


def test_adaptive_band_is_relearnt_on_its_schedule():
    values = np.arange(1.0, 31.0)
    t = AdaptiveThreshold(k=3, window=None, min_history=5, relearn_every=10,
                          learn_breaches=True)
    seen = []
    for v in values:
        seen.append(t.bounds)
        t.update(v)
    # learnt after the 10th and 20th updates only, from everything seen by then
    for i, bounds in enumerate(seen):
        learnt = values[: (i // 10) * 10]
        if learnt.size == 0:
            assert bounds == (None, None)
        else:
            assert bounds == (learnt.mean() - 3 * learnt.std(), learnt.mean() + 3 * learnt.std())


def test_breaches_are_not_learnt_unless_asked():
    quiet = AdaptiveThreshold(k=3, min_history=5, reference=[1.0, 1.1, 0.9, 1.0, 1.05])
    learning = AdaptiveThreshold(k=3, min_history=5, learn_breaches=True,
                                 reference=[1.0, 1.1, 0.9, 1.0, 1.05])
    shifted = [5.0] * 5
    assert [quiet.update(v) for v in shifted] == [True] * 5  # the level shift keeps breaching
    assert [learning.update(v) for v in shifted][-1] is False  # the band widened to hide it


def test_a_reference_band_stays_put():
    reference = [0.2, 0.25, 0.22, 0.21, 0.24, 0.23]
    t = AdaptiveThreshold(k=3, relearn_every=None, reference=reference)
    bounds = t.bounds
    for v in (0.22, 0.5, 0.1, 0.23):
        t.update(v)
    assert t.bounds == bounds == (np.mean(reference) - 3 * np.std(reference),
                                  np.mean(reference) + 3 * np.std(reference))


def test_one_sided_band():
    t = AdaptiveThreshold(k=2, direction="upper", reference=[1.0, 2.0, 3.0, 2.0, 2.0])
    assert t.bounds[0] is None and t.update(-100.0) is False and t.update(100.0) is True


def test_thresholds_round_trip_through_json():
    t = AdaptiveThreshold(k=2.5, window=8, min_history=3, relearn_every=2)
    for v in (1.0, 2.0, 1.5, 1.7, 1.6):
        t.update(v)
    copy = threshold_from_dict(json.loads(json.dumps(t.to_dict())))
    assert copy.bounds == t.bounds and list(copy.history) == list(t.history)
    for v in (1.8, 9.0, 1.4):
        assert copy.update(v) == t.update(v)
    assert copy.bounds == t.bounds
    s = StaticThreshold(upper=3.0)
    assert threshold_from_dict(s.to_dict()).bounds == (None, 3.0)


@pytest.mark.parametrize("kwargs,field", [({}, "threshold"), ({"lower": 2, "upper": 1}, "upper"),
                                          ({"upper": math.inf}, "upper")])
def test_static_threshold_errors(kwargs, field):
    with pytest.raises(InvalidInputError, match=f"^{field}="):
        StaticThreshold(**kwargs)


@pytest.mark.parametrize("kwargs,field", [({"k": 0}, "k"), ({"window": 3}, "window"),
                                          ({"min_history": 1}, "min_history"),
                                          ({"relearn_every": 0}, "relearn_every"),
                                          ({"direction": "up"}, "direction")])
def test_adaptive_threshold_errors(kwargs, field):
    with pytest.raises(InvalidInputError, match=f"^{field}="):
        AdaptiveThreshold(**kwargs)


# -- the state machine -------------------------------------------------------------------------
def run(state: AlertState, values: list[float]) -> list[tuple[int, str]]:
    return [(i, e.status) for i, v in enumerate(values)
            if (e := state.update(v, at=i)) is not None]


def test_min_consecutive_breaches_before_firing():
    state = AlertState(AlertRule("x", StaticThreshold(upper=1), min_consecutive=3))
    values = [0, 2, 2, 0, 2, 2, 2, 2, 0]
    assert run(state, values) == [(6, "firing"), (8, "resolved")]


def test_firing_is_one_alert_until_resolved():
    state = AlertState(AlertRule("x", StaticThreshold(upper=1)))
    values = [2, 3, 5, 4, 0, 0, 6, 0]
    events = [state.update(v, at=i) for i, v in enumerate(values)]
    kept = [e for e in events if e is not None]
    assert [(e.at, e.status, e.alert_id) for e in kept] == [
        (0, "firing", "x <= 1#1"), (4, "resolved", "x <= 1#1"),
        (6, "firing", "x <= 1#2"), (7, "resolved", "x <= 1#2")]
    first_resolved = kept[1]
    assert (first_resolved.breaches, first_resolved.peak, first_resolved.started_at) == (4, 5, 0)
    assert state.status == "resolved" and state.alerts_fired == 2


def test_min_consecutive_ok_before_resolving():
    state = AlertState(AlertRule("x", StaticThreshold(lower=0), min_consecutive_ok=2))
    assert run(state, [-1, 1, -1, 1, 1, 1]) == [(0, "firing"), (4, "resolved")]


def test_started_at_is_the_first_breach_of_the_run():
    state = AlertState(AlertRule("x", StaticThreshold(upper=1), min_consecutive=2))
    events = [state.update(v, at=t) for t, v in ((10, 2), (20, 3))]
    assert events[1].started_at == 10 and events[1].at == 20 and events[1].breaches == 2


def test_missing_values_change_nothing():
    state = AlertState(AlertRule("x", StaticThreshold(upper=1), min_consecutive=2))
    assert run(state, [2, math.nan, 2]) == [(2, "firing")]
    assert state.update(None) is None and state.status == "firing"


def test_adaptive_rule_fires_on_a_level_shift_and_resolves_when_it_comes_back():
    rng = np.random.default_rng(2)
    values = list(rng.normal(0.05, 0.005, 20)) + [0.2] * 5 + list(rng.normal(0.05, 0.005, 5))
    state = AlertState(AlertRule("error_rate", AdaptiveThreshold(k=3, window=20),
                                 min_consecutive=2))
    assert run(state, values) == [(21, "firing"), (25, "resolved")]


def test_state_round_trips_mid_episode():
    rule = AlertRule("drift_score[age]", AdaptiveThreshold(k=3, min_history=3),
                     min_consecutive=2, severity="critical")
    values = [0.02, 0.03, 0.025, 0.028, 0.5, 0.6, 0.7, 0.03, 0.02]
    whole = AlertState(rule)
    expected = run(whole, values)
    first = AlertState(rule)
    run(first, values[:6])  # firing by now
    assert first.status == "firing"
    resumed = AlertState.from_dict(json.loads(json.dumps(first.to_dict())))
    later = [(i + 6, e.status) for i, v in enumerate(values[6:])
             if (e := resumed.update(v, at=i + 6)) is not None]
    assert [e for e in expected if e[0] >= 6] == later
    assert resumed.to_dict() == whole.to_dict()


def test_each_state_learns_on_its_own_copy_of_the_threshold():
    rule = AlertRule("x", AdaptiveThreshold(min_history=2))
    a, b = AlertState(rule), AlertState(rule)
    for v in (1.0, 2.0, 3.0):
        a.update(v)
    assert b.threshold.bounds == (None, None) and rule.threshold.bounds == (None, None)


def test_update_alerts_feeds_the_series_each_rule_watches():
    states = [AlertState(AlertRule("error_rate", StaticThreshold(upper=0.1))),
              AlertState(AlertRule("latency_p99_ms", StaticThreshold(upper=250)))]
    events = update_alerts(states, {"error_rate": 0.01, "latency_p99_ms": 400.0}, at="w1")
    assert [(e.series, e.status, e.at) for e in events] == [("latency_p99_ms", "firing", "w1")]
    assert "latency_p99_ms = 400, expected <= 250" in events[0].message()
    assert update_alerts(states, {"volume": 10.0}) == []  # no watched series: no change
    assert json.loads(json.dumps(events[0].to_dict()))["status"] == "firing"


@pytest.mark.parametrize("kwargs,field", [({"series": ""}, "series"),
                                          ({"min_consecutive": 0}, "min_consecutive"),
                                          ({"severity": "high"}, "severity"),
                                          ({"threshold": 0.5}, "threshold")])
def test_rule_errors_name_the_field(kwargs, field):
    args = {"series": "x", "threshold": StaticThreshold(upper=1), **kwargs}
    with pytest.raises(InvalidInputError, match=f"^{field}="):
        AlertRule(**args)
