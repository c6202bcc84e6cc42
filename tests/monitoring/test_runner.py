"""The runner over a real store (SQLite and PostgreSQL): windows read incrementally from the
prediction log, series equal to the data issue's and scikit-learn's on the same rows, labels
that arrive late, time windows, skew after a deployment, one transaction per run.

The stream is the known-truth one of ``test_stream.py``: 20,000 predictions of an Agrawal
tree, ``loan`` and ``commission`` shifted from row 4,000, the concept changed at row
10,000; windows of 2,000 predictions; labels posted as feedback after each chunk.
"""

from __future__ import annotations

import math
import time

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

import prodml as pm
from prodml.monitoring.concept_drift import detection_delay
from prodml.monitoring.runner import _Run, run_monitor
from prodml.monitoring.store import get_monitor, list_alerts, monitor_series
from prodml.serving import endpoints as eps
from prodml.serving.log_reader import read_predictions
from prodml.store import now_ms
from prodml.store import tables as t
from tests.monitoring import logged
from tests.monitoring.logged import ENDPOINT, log_rows, post_labels, register_and_deploy
from tests.monitoring.streams import FEATURES, sudden_with_covariate_shift, train_model

WINDOW, SHIFT, CHANGE = 2_000, 4_000, 10_000
SHIFTED = {"loan", "commission"}
T0 = 1_700_000_000_000
STEP_MS = 10


@pytest.fixture(scope="module")
def model():
    return train_model()


@pytest.fixture(scope="module")
def stream(model) -> pl.DataFrame:
    return model.predict(sudden_with_covariate_shift(20_000, CHANGE, SHIFT), start_ms=T0,
                         step_ms=STEP_MS)


def spec(**changes):
    base = {"endpoint": ENDPOINT, "name": "agr", "window": {"predictions": WINDOW},
            "checks": {"performance": {"positive": 1, "score": "proba_1", "slices": ["elevel"],
                                       "min_coverage": 0.9},
                       "estimated_performance": {"probability": "proba_1"},
                       "concept_drift": {"detectors": ["adwin", "ddm"]}},
            "alerts": [*({"series": f"drifted[{f}]", "upper": 0.5} for f in FEATURES),
                       {"series": "accuracy", "adaptive": {"k": 3, "min_history": 4}},
                       {"series": "concept_drift[adwin]", "upper": 0.5}]}
    base.update(changes)
    return base


def replay(store, stream, chunk: int = 3_000, labels: bool = True):
    """Log the stream chunk by chunk, labels after each chunk, a run after each."""
    runs = []
    for start in range(0, stream.height, chunk):
        part = stream.slice(start, chunk)
        ids = log_rows(store, part)
        if labels:
            post_labels(store, ids, part["label"])
        runs.append(run_monitor("agr", store=store, now=int(part["time"][-1]) + 5_000))
    return runs


def fired(store) -> dict[str, int]:
    return {a.rule: a.window_index for a in list_alerts(monitor="agr", store=store)}


def test_known_truth_stream_incrementally(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(spec(), store=store)
    runs = replay(store, stream)
    assert sum(r.read for r in runs) == stream.height
    assert [w["index"] for r in runs for w in r.windows] == list(range(10))
    # drift on the shifted features only, from the first window after the shift
    alerts = fired(store)
    assert {rule: w for rule, w in alerts.items() if rule.startswith("drifted[")} == {
        f"drifted[{f}] <= 0.5": SHIFT // WINDOW for f in SHIFTED}
    # the concept change: after it, never before
    assert alerts["concept_drift[adwin] <= 0.5"] == CHANGE // WINDOW
    assert alerts["accuracy outside mean ± 3·std"] == CHANGE // WINDOW
    assert min(alerts.values()) == SHIFT // WINDOW
    accuracy = next(a for a in list_alerts(monitor="agr", store=store)
                    if a.series == "accuracy")
    assert accuracy.finding["kind"] == "sudden" and accuracy.finding["change_window"] == 5
    # the detection delay is reported, in labelled predictions (every row is labelled here)
    adwin = next(a for a in list_alerts(monitor="agr", store=store)
                 if a.series == "concept_drift[adwin]")
    detection = adwin.finding["detection"]
    delay = detection_delay([detection["position"]], CHANGE)
    assert adwin.finding["delay"]["predictions"] == delay.delay and 0 <= delay.delay < 500
    detections = [d for r in runs for d in r.detections]
    assert all(d["position"] >= CHANGE for d in detections), detections
    # the whole log in one run gives the same series
    incremental = monitor_series("agr", store=store)
    again = run_monitor("agr", store=store, full=True, now=int(stream["time"][-1]) + 5_000)
    assert again.read == stream.height and len(again.windows) == 10
    full = monitor_series("agr", store=store)
    joined = incremental.join(full, on=["window_index", "series"], suffix="_full")
    assert joined.height == incremental.height == full.height
    assert np.allclose(joined["value"], joined["value_full"], equal_nan=True, rtol=1e-9)


def test_series_equal_the_data_issues_and_scikit_learns_on_the_same_rows(store, model,
                                                                          stream):
    ref = register_and_deploy(store, model)
    pm.monitor(spec(), store=store)
    replay(store, stream.head(6_000), chunk=6_000)
    rows = read_predictions(ENDPOINT, store=store).sort("id")
    profile = pm.models.training_profile(ref, store=store)
    series = monitor_series("agr", store=store)
    for k in range(3):
        window = rows.slice(k * WINDOW, WINDOW)
        value = dict(series.filter(pl.col("window_index") == k)
                     .select("series", "value").iter_rows())
        direct = pm.drift(profile, window.select(FEATURES), columns=list(FEATURES))
        for column in direct.columns:
            assert value[f"drift_score[{column.name}]"] == column.score
            assert value[f"drifted[{column.name}]"] == float(column.drifted)
        assert value["drift_share"] == direct.share_drifted
        y, p = window["label"].to_numpy(), window["prediction"].to_numpy()
        assert value["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
        assert value["precision"] == pytest.approx(skm.precision_score(y, p), abs=1e-12)
        assert value["recall"] == pytest.approx(skm.recall_score(y, p), abs=1e-12)
        assert value["f1"] == pytest.approx(skm.f1_score(y, p), abs=1e-12)
        assert value["roc_auc"] == pytest.approx(
            skm.roc_auc_score(y, window["proba_1"].to_numpy()), abs=1e-12)
        for level in (0, 2):
            part = window.filter(pl.col("elevel") == level)
            assert value[f"f1[elevel={level}]"] == pytest.approx(
                skm.f1_score(part["label"], part["prediction"], zero_division=0), abs=1e-12)
        assert value["label_coverage"] == 1.0 and value["volume"] == WINDOW
        assert value["error_rate"] == pytest.approx(
            window["status"].is_in(["error", "timeout"]).mean())


def test_a_run_reads_only_new_rows_and_a_second_run_does_nothing(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(spec(), store=store)
    log_rows(store, stream.head(3_000))
    first = run_monitor("agr", store=store, lag_ms=0)
    assert (first.read, len(first.windows), first.pending_rows) == (3_000, 1, 1_000)
    stored = monitor_series("agr", store=store).height
    before = get_monitor("agr", store=store)
    second = run_monitor("agr", store=store, lag_ms=0)
    assert (second.read, second.windows, second.events) == (0, [], [])
    after = get_monitor("agr", store=store)
    assert monitor_series("agr", store=store).height == stored
    assert (after.cursor_id, after.windows, after.pending_rows) == (
        before.cursor_id, 1, 1_000)
    log_rows(store, stream.slice(3_000, 500))
    third = run_monitor("agr", store=store, lag_ms=0)
    assert (third.read, third.windows, third.pending_rows) == (500, [], 1_500)
    log_rows(store, stream.slice(3_500, 500))
    fourth = run_monitor("agr", store=store, lag_ms=0)
    assert fourth.read == 500 and [w["index"] for w in fourth.windows] == [1]
    assert fourth.windows[0]["first_id"] == read_predictions(
        ENDPOINT, store=store).sort("id")["id"][WINDOW]


def test_a_monitor_since_a_time_reads_only_what_was_logged_from_then(store, model, stream):
    register_and_deploy(store, model)
    log_rows(store, stream.head(3_000))  # older traffic (times T0 ... T0 + 29,990 ms)
    since = int(stream["time"][3_000])
    pm.monitor(spec(since=since), store=store)
    log_rows(store, stream.slice(3_000, 2_500))
    run = run_monitor("agr", store=store, lag_ms=0)
    assert (run.read, len(run.windows), run.pending_rows) == (2_500, 1, 500)
    assert run.windows[0]["first_id"] == read_predictions(
        ENDPOINT, store=store).sort("id")["id"][3_000]
    assert pm.MonitorSpec.load(spec(since="now")).since_ms >= now_ms() - 60_000


def test_windows_settle_once_their_labels_arrive_in_order(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(spec(), store=store)
    part = stream.head(6_000)
    ids = log_rows(store, part)
    first = run_monitor("agr", store=store, lag_ms=0)
    assert len(first.windows) == 3 and first.settled == []
    assert monitor_series("agr", "accuracy", store=store).height == 0
    post_labels(store, ids[WINDOW:], part["label"][WINDOW:])  # windows 1 and 2 only
    assert run_monitor("agr", store=store, lag_ms=0).settled == []  # window 0 goes first
    post_labels(store, ids[:WINDOW], part["label"][:WINDOW])
    late = run_monitor("agr", store=store, lag_ms=0)
    assert late.read == 0 and [s["index"] for s in late.settled] == [0, 1, 2]
    accuracy = monitor_series("agr", "accuracy", store=store)
    assert accuracy["window_index"].to_list() == [0, 1, 2]
    assert (accuracy["value"] > 0.9).all()


def test_time_windows_close_once_their_span_has_passed(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor({"endpoint": ENDPOINT, "name": "agr", "window": {"seconds": 5}}, store=store)
    log_rows(store, stream.head(1_200))  # 12 s of predictions, one every 10 ms
    early = run_monitor("agr", store=store, now=T0 + 11_000, lag_ms=0)
    assert [(w["start"] - T0, w["end"] - T0, w["rows"]) for w in early.windows] == [
        (0, 5_000, 500), (5_000, 10_000, 500)]
    assert early.pending_rows == 100
    assert early.windows[0]["values"]["throughput_per_s"] == 100.0
    late = run_monitor("agr", store=store, now=T0 + 16_000, lag_ms=0)
    assert [(w["start"] - T0, w["rows"]) for w in late.windows] == [(10_000, 200)]


def test_skew_on_the_first_window_after_a_deployment(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(spec(alerts=[]), store=store)
    first = now_ms() + 5  # after the deployment; 8 predictions a millisecond
    log_rows(store, stream.head(4_000).with_columns(time=first + pl.int_range(0, 4_000) // 8))
    run_monitor("agr", store=store, now=first + 1_000, lag_ms=0)
    while now_ms() <= first + 600:
        time.sleep(0.05)
    version = pm.models.register(ENDPOINT, model.tree, input_example=model.training.select(
        FEATURES).to_pandas(), training_data=model.training.to_pandas(), store=store)
    eps.deploy(ENDPOINT, version.ref, store=store, reason="a new version")
    second = now_ms() + 5
    log_rows(store, stream.slice(4_000, 4_000).with_columns(
        time=second + pl.int_range(0, 4_000) // 8), version=2)
    run_monitor("agr", store=store, now=second + 1_000, lag_ms=0)
    skewed = monitor_series("agr", "skew_share", store=store)
    assert skewed["window_index"].to_list() == [0, 2]  # after the first and second deploy
    assert monitor_series("agr", "skew_score[*]", store=store).height == 2 * len(FEATURES)


def test_a_failing_run_stores_nothing_and_the_next_one_starts_from_the_same_place(
        store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(spec(checks={"custom": {"rows": "tests.monitoring.logged:exploding_metric"}}),
               store=store)
    log_rows(store, stream.head(6_000))
    logged.BOOM_AFTER[0] = T0 + 2 * WINDOW * STEP_MS - 1  # the third window fails
    try:
        with pytest.raises(RuntimeError, match="the metric broke"):
            run_monitor("agr", store=store, lag_ms=0)
        info = get_monitor("agr", store=store)
        assert (info.cursor_id, info.windows) == (None, 0) and "broke" in info.last_error
        assert monitor_series("agr", store=store).height == 0
    finally:
        logged.BOOM_AFTER[0] = math.inf
    run = run_monitor("agr", store=store, lag_ms=0)
    assert run.read == 6_000 and len(run.windows) == 3
    assert get_monitor("agr", store=store).last_error is None


def test_two_runners_never_both_commit(store, model, stream):
    register_and_deploy(store, model)
    pm.monitor(spec(), store=store)
    log_rows(store, stream.head(2_000))
    with store.read() as conn:
        row = conn.execute(t.monitors.select().where(t.monitors.c.name == "agr")).first()
    slow = _Run(row, store, full=False, now=now_ms(), lag_ms=0, probe=None)
    fast = run_monitor("agr", store=store, lag_ms=0)
    assert len(fast.windows) == 1
    with pytest.raises(Exception, match="someone else"):
        slow.execute(0.0)
    assert monitor_series("agr", "volume", store=store)["window_index"].to_list() == [0]


def test_a_log_stretch_as_reference_learns_the_adaptive_bands(store, model, stream):
    register_and_deploy(store, model)
    reference = stream.head(6_000)
    ids = log_rows(store, reference)
    post_labels(store, ids, reference["label"])
    until = int(reference["time"][-1]) + 1
    pm.monitor(spec(reference={"since": T0, "until": until},
                    alerts=[{"series": "accuracy", "adaptive": {"k": 3, "min_history": 3}}]),
               store=store)
    info = get_monitor("agr", store=store)
    assert info.windows == 0
    later = stream.slice(6_000, 6_000)
    later_ids = log_rows(store, later)
    post_labels(store, later_ids, later["label"])
    run = run_monitor("agr", store=store, lag_ms=0)
    # the band was learnt from the reference's three windows before any window of the
    # monitor's own: the concept change fires in its window, nothing before it
    assert len(run.windows) == 6  # the reference stretch is in the log too
    assert [(e["series"], e["window_index"]) for e in run.events] == [
        ("accuracy", CHANGE // WINDOW)]
    estimated = monitor_series("agr", "estimated_accuracy", store=store)
    realised = monitor_series("agr", "accuracy", store=store)
    gap = (realised["value"] - estimated["value"]).to_numpy()
    assert np.abs(gap[:5]).max() < 0.03 and gap[5] < -0.3  # CBPE cannot see the change


def test_windows_without_labels_settle_after_waiting(store, model, stream):
    register_and_deploy(store, model)
    checks = spec()["checks"]
    checks["performance"] = {**checks["performance"], "label_wait_windows": 2}
    pm.monitor(spec(checks=checks), store=store)
    log_rows(store, stream.head(5 * WINDOW))
    run = run_monitor("agr", store=store, lag_ms=0)
    assert [s["index"] for s in run.settled] == [0, 1, 2]  # 2 newer windows closed since
    coverage = monitor_series("agr", "label_coverage", store=store)
    assert coverage["window_index"].to_list() == [0, 1, 2] and (coverage["value"] == 0).all()
    assert monitor_series("agr", "accuracy", store=store).height == 0
