"""The closed loop on a real store (SQLite and PostgreSQL): predictions logged with their
labels, a monitor over the log fires a drift alert, the alert's action starts a retraining
pipeline (recent traffic only → train → gate against the champion → register → canary), and
the store holds the whole chain: alert → pipeline run → executions → model version →
deployment event."""

from __future__ import annotations

import re
import textwrap

import pandas as pd
import polars as pl
import pytest
from sklearn.tree import DecisionTreeClassifier
from sqlalchemy import select

import prodml as pm
from prodml.monitoring.runner import run_monitor
from prodml.monitoring.sinks import unregister_action
from prodml.monitoring.store import list_alerts
from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.monitoring.logged import ENDPOINT, log_rows, post_labels, register_and_deploy
from tests.monitoring.streams import FEATURES, sudden_with_covariate_shift, train_model

# the streams' champion was fitted on arrays; the gate evaluates it on named columns
pytestmark = pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")

N, SHIFT, CHANGE, RECENT = 6_000, 2_000, 3_000, 2_000
T0 = 1_700_000_000_000
GATE = {"name": "retrain", "conditions": [
    {"metric": "accuracy", "min": 0.8},
    {"metric": "accuracy", "change": {"baseline": "baseline", "min_absolute": 0.02}}]}


@pytest.fixture(scope="module")
def model():
    return train_model()


@pytest.fixture(scope="module")
def stream(model) -> pl.DataFrame:
    # one prediction a second; inputs shift at SHIFT, the concept changes at CHANGE
    return model.predict(sudden_with_covariate_shift(N, CHANGE, SHIFT), start_ms=T0,
                         step_ms=1000)


def fit_tree(X, y, sample_weight=None):
    tree = DecisionTreeClassifier(max_depth=5, min_samples_leaf=50, random_state=0)
    return tree.fit(X, y, sample_weight=sample_weight)


@pm.step(cache=False)  # the log grows: the same parameters read new rows
def labelled_traffic(endpoint: str) -> pd.DataFrame:
    """The endpoint's logged answers whose label has arrived, as training rows."""
    from prodml.serving.log_reader import read_predictions

    context = pm.pipelines.current()
    frame = read_predictions(endpoint, store=context.store if context else None)
    frame = frame.filter(pl.col("label").is_not_null())
    out = frame.select(["time", *FEATURES, "label"]).to_pandas()
    out["label"] = out["label"].astype(int)
    out["time"] = pd.to_datetime(out["time"], unit="ms")
    return out


@pm.pipeline(name="retrain-agr")
def retrain(endpoint: str = ENDPOINT, alert_id: int = 0, window: int = RECENT):
    traffic = labelled_traffic(endpoint)
    recent = pm.steps.training_data(traffic, strategy="recent", time_column="time",
                                    window=window)
    train, holdout = pm.steps.split_train_test(recent, label="label", test_size=0.25)
    model = pm.steps.train(train, fit_tree, label="label", features=list(FEATURES))
    verdict = pm.steps.evaluate_gate(model, holdout, GATE, label="label",
                                     baseline=f"{endpoint}@champion", features=list(FEATURES))
    version = pm.steps.register(model, endpoint, blessing=verdict, aliases=["challenger"])
    return pm.steps.deploy(version, endpoint, strategy="canary", steps=[10, 50, 100],
                           guards={"max_error_rate": 0.05, "max_accuracy_drop": 0.05,
                                   "min_requests": 50})


def monitor(actions: list[str]) -> dict:
    return {"endpoint": ENDPOINT, "name": "agr-loop", "window": {"predictions": 1000},
            "checks": {"drift": True},
            "alerts": [{"series": "drifted[loan]", "upper": 0.5, "actions": actions}]}


@pytest.fixture
def served(store, model, stream):
    """agr/1 serving as champion; the whole stream logged with its labels."""
    ref = register_and_deploy(store, model)
    pm.models.set_alias(ENDPOINT, "champion", 1, store=store)
    ids = log_rows(store, stream)
    post_labels(store, ids, stream["label"])
    return ref


def fired(store) -> pm.monitoring.store.Alert:
    alerts = [a for a in list_alerts(monitor="agr-loop", store=store)
              if a.rule == "drifted[loan] <= 0.5"]
    assert len(alerts) == 1, [a.rule for a in list_alerts(monitor="agr-loop", store=store)]
    return alerts[0]


def test_drift_alert_retrains_gates_registers_and_canaries(store, served, stream):
    pm.pipelines.on_alert("retrain-agr", retrain,
                          params=lambda alert: {"window": RECENT})
    try:
        pm.monitor(monitor(["retrain-agr"]), store=store)
        run_monitor("agr-loop", store=store, now=int(stream["time"][-1]) + 5_000)
    finally:
        unregister_action("retrain-agr")

    # the alert fired on the shifted inputs and says which pipeline run it started
    alert = fired(store)
    assert alert.window_start >= T0 + SHIFT * 1000 - 1000 * 1000
    [report] = [a for a in alert.actions if a.get("action") == "retrain-agr"]
    assert report["ok"], report
    run_id = re.search(r"run ([0-9a-f]{32}): succeeded", report["detail"]).group(1)

    # the pipeline run: triggered by the alert, every step succeeded
    run = pm.pipelines.get_run(run_id, store=store)
    assert run.triggered_by == f"alert:{alert.id}" and run.status == "succeeded"
    assert run.params["alert_id"] == alert.id and run.params["endpoint"] == ENDPOINT
    assert [(e.step, e.status) for e in run.executions] == [
        (step, "succeeded") for step in ("labelled_traffic", "training_data",
                                         "split_train_test", "train", "evaluate_gate",
                                         "register", "deploy")]

    # "recent" dropped the past: only the last RECENT rows, all after the concept change
    window = run.step("training_data").output().properties["retraining"]
    assert window["rows_kept"] == RECENT and window["rows_dropped"] == N - RECENT
    recent = run.output("training_data")
    assert recent["time"].min() >= pd.to_datetime(T0 + CHANGE * 1000, unit="ms")

    # the new model beats the champion on recent traffic it did not train on
    verdict = run.output("evaluate_gate")
    assert verdict.baseline_ref == f"{ENDPOINT}/1" and verdict.blessed
    assert verdict.evaluation.metric("accuracy") >= verdict.baseline.metric("accuracy") + 0.02

    # executions → tracked run → model version → deployment event, all in the store
    train = run.step("train")
    version = pm.models.get(f"{ENDPOINT}/2", store=store)
    assert version.run_id == train.run_id and version.aliases == ("challenger",)
    assert pm.models.blessing(version.ref, store=store).blessed
    assert pm.runs.get(train.run_id, store=store).tags["prodml.pipeline_run"] == run.id
    assert run.output("register") == {"model": ENDPOINT, "version": 2, "ref": version.ref}
    spec = eps.get_endpoint(ENDPOINT, store=store).spec
    assert isinstance(spec, d.Canary) and spec.primary.model == f"{ENDPOINT}/1"
    assert spec.candidate.model == version.ref and spec.steps == (10.0, 50.0, 100.0)
    assert spec.guards.max_accuracy_drop == 0.05
    event = eps.history(ENDPOINT, store=store)[0]
    assert event.actor == "pipeline:retrain-agr" and run.id in event.reason
    deployed = run.step("deploy").output()
    assert deployed.type == "Deployment" and deployed.properties["revision"] == event.revision

    # one chain of records, joined in SQL: alert → run → execution → version → event
    with store.read() as conn:
        chain = conn.execute(
            select(t.alerts.c.id, t.pipeline_contexts.c.id, t.executions.c.run_id,
                   t.model_versions.c.version)
            .join(t.pipeline_contexts, t.pipeline_contexts.c.triggered_by
                  == "alert:" + t.alerts.c.id.cast(t.pipeline_contexts.c.triggered_by.type))
            .join(t.executions, (t.executions.c.context_id == t.pipeline_contexts.c.id)
                  & (t.executions.c.step == "train"))
            .join(t.model_versions, t.model_versions.c.run_id == t.executions.c.run_id)
        ).all()
    assert chain == [(alert.id, run.id, train.run_id, 2)]

    # lineage from the new version reaches its pipeline run and the exact recent rows
    graph = pm.lineage(version.ref, "up", store=store)
    assert run.id in graph.pipeline_runs()
    digest = run.step("training_data").output().properties["dataset_digest"]
    assert f"dataset:{digest}" in graph
    trained_on = run.step("split_train_test").output("train").properties["dataset_digest"]
    assert [x.digest for x in pm.runs.get(train.run_id, store=store).datasets] == [trained_on]
    assert f"dataset:{trained_on}" in graph


def test_a_pipeline_target_action_and_a_failed_gate_are_reported(store, served, stream,
                                                                  tmp_path):
    # the champion is pinned as a model that already knows the new concept, so the gate
    # (must beat it by 2 points) says no: the run fails, the alert's report says so
    trained = fit_tree(stream.select(FEATURES).to_pandas().iloc[CHANGE:],
                       stream["label"].to_numpy()[CHANGE:])
    better = pm.models.register(ENDPOINT, trained, store=store)
    pm.models.set_alias(ENDPOINT, "champion", better.version, store=store)
    target = tmp_path / "loop.py"
    target.write_text(textwrap.dedent("""
        from tests.pipelines.test_closed_loop import retrain
    """))
    pm.monitor(monitor([f"pipeline:{target}:retrain-agr"]), store=store)
    run_monitor("agr-loop", store=store, now=int(stream["time"][-1]) + 5_000)

    alert = fired(store)
    [report] = [a for a in alert.actions if a.get("action", "").startswith("pipeline:")]
    assert not report["ok"]
    assert "evaluate_gate failed" in report["detail"] and "NOT BLESSED" in report["detail"]
    run_id = re.search(r"run ([0-9a-f]{32}) failed", report["detail"]).group(1)
    run = pm.pipelines.get_run(run_id, store=store)
    assert run.triggered_by == f"alert:{alert.id}" and run.status == "failed"
    assert run.step("register").status == run.step("deploy").status == "skipped"
    assert run.step("evaluate_gate").output("blessing").properties["blessed"] is False
    assert eps.get_endpoint(ENDPOINT, store=store).describe() == f"{ENDPOINT}/1"
    assert sorted(v.version for v in pm.models.search(name=ENDPOINT, store=store)) == [1, 2]


def test_bad_pipeline_actions_are_refused_or_reported(store):
    with pytest.raises(pm.InvalidInputError, match="pipeline:file.py:name"):
        pm.MonitorSpec.load(monitor(["pipeline:"]))
    with pytest.raises(pm.InvalidInputError, match="must be a @pm.pipeline"):
        pm.pipelines.on_alert("nothing", object())
