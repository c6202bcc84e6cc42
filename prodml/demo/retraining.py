"""The demo's retraining act: from a production alert to a new champion, through a pipeline.

When the monitor's accuracy rule fires (the approval rule changed), its action starts the
``loan-retrain`` pipeline: it reads the labelled traffic from the prediction log, keeps the
rows the retraining strategy chooses (``recent``: only those after the change), trains,
gates the new model against the champion on held-out recent traffic, registers it, shadows
it on the live endpoint, and waits for a person to approve the canary. The demo plays that
person: once the shadow has seen traffic it approves, the run resumes (the steps already
done come from the cache) and the canary's guards decide on promotion.

Every step is an execution in the store with its inputs and outputs, so ``prodml lineage``
walks from a prediction of the new version back to the log rows it learnt from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

import prodml as pm
from prodml.demo.data import FEATURES, LABEL
from prodml.store import Store, get_store

PIPELINE = "loan-retrain"
ACTION = "retrain-loan"
MODEL_NAME = "loan"
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# The candidate must be accurate on recent traffic and beat the champion there.
RETRAIN_GATE = {"name": "loan-retrain", "conditions": [
    {"metric": "accuracy", "min": 0.85},
    {"metric": "accuracy", "change": {"baseline": "baseline", "min_absolute": 0.0}},
]}


def _store() -> Store:
    context = pm.pipelines.current()
    return context.store if context is not None else get_store()


@pm.step
def labelled_traffic(traffic: pm.pipelines.LoggedPredictions) -> pd.DataFrame:
    """The served answers in the log window whose true outcome has arrived.

    The window is a Source digested by its rows' ids and labels, so the step runs again
    when the log has new labelled rows, and lineage upstream of the retrained model ends at
    this window of the endpoint's log."""
    endpoint = traffic.endpoint
    frame = traffic.read(_store())
    out = frame.select(["id", "time", *FEATURES, "label"]).to_pandas()
    out[LABEL] = out.pop("label").astype(int)
    out["time"] = pd.to_datetime(out["time"], unit="ms", utc=True)
    context = pm.pipelines.current()
    if context is not None:
        context.annotate_output(type="Dataset", name=f"{endpoint} labelled traffic",
                                properties={"rows": len(out), "source": f"log:{endpoint}"})
    return out


def fit_gbm(X: pd.DataFrame, y: pd.Series, *, sample_weight: Any = None, max_iter: int = 150,
            learning_rate: float = 0.1, seed: int = 42) -> tuple[Any, dict[str, float]]:
    """The demo's training function (the ``train`` step calls it inside a tracked run)."""
    model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                           random_state=seed)
    model.fit(X, y.to_numpy(), sample_weight=sample_weight)
    return model, {"train_accuracy": float(model.score(X, y.to_numpy()))}


# The built-in deploy step, twice: a shadow first, then a canary a person must approve.
shadow = pm.step(pm.steps.deploy.function, name="shadow")
canary = pm.step(pm.steps.deploy.function, name="canary", approval=True)


@pm.pipeline(name=PIPELINE)
def loan_retrain(endpoint: str = "loan", since: int = 0, strategy: str = "recent",
                 window: int = 2000, seed: int = 42, champion: str = "loan@champion",
                 step_requests: int = 30) -> Any:
    traffic = labelled_traffic(pm.pipelines.LoggedPredictions(
        endpoint=endpoint, since=since, routes=("primary", "canary")))
    rows = pm.steps.training_data(traffic, strategy=strategy, time_column="time",
                                  window=window if strategy != "all" else None,
                                  half_life="120s" if strategy == "weighted" else None)
    fit_rows, holdout = pm.steps.split_train_test(rows, label=LABEL, test_size=0.25, seed=seed)
    model = pm.steps.train(fit_rows, "prodml.demo.retraining:fit_gbm", label=LABEL,
                           features=FEATURES, params={"seed": seed},
                           experiment="loan-approval")
    verdict = pm.steps.evaluate_gate(model, holdout, RETRAIN_GATE, label=LABEL,
                                     baseline=champion, features=FEATURES)
    version = pm.steps.register(model, MODEL_NAME, blessing=verdict, tags={"retrained": True},
                                description="Loan approval, retrained on recent traffic "
                                            "after the concept change")
    shadow(version, endpoint, strategy="shadow", percent=100,
           reason="shadow the retrained model on live traffic")
    return canary(version, endpoint, strategy="canary", steps=[10, 50, 100],
                  step_every_requests=step_requests,
                  guards={"max_error_rate": 0.01, "max_latency_p99_ms": 1000,
                          "max_accuracy_drop": 0.05, "min_requests": step_requests},
                  reason="canary the retrained model: 10%, 50%, 100%")


def arm(*, since: int, window: int, strategy: str = "recent", step_requests: int = 30) -> None:
    """Make ``retrain-loan`` an alert action that starts the pipeline with these parameters
    (a rule lists it under ``actions``; the run is recorded as triggered by the alert)."""
    pm.pipelines.on_alert(ACTION, loan_retrain, params={
        "since": since, "window": window, "strategy": strategy,
        "step_requests": step_requests})


def started_by_alert(store: Store, since: int) -> dict[str, Any]:
    """The retraining run an alert started after ``since`` (ms), if any, and that alert."""
    from prodml.monitoring.store import get_alert

    runs = [r for r in pm.pipelines.runs(PIPELINE, store=store)
            if (r.triggered_by or "").startswith("alert:") and r.created_at >= since]
    if not runs:
        return {}
    first = runs[-1]  # newest first
    alert = get_alert(int(first.triggered_by.split(":", 1)[1]), store=store)
    return {"run": first.id, "alert": f"#{alert.id} {alert.rule}"}


def finish_rollout(store: Store, started: dict[str, Any], traffic: pd.DataFrame,
                   server: Any, *, say: Callable[[str], None] = lambda m: None
                   ) -> dict[str, Any]:
    """Approve the waiting canary, resume the run, replay post-change traffic with its labels
    until the canary is promoted or rolled back; what happened."""
    from prodml.demo.serving import ENDPOINT, d_finished, replay, shadow_agreement
    from prodml.serving import endpoints as eps

    run = pm.pipelines.get_run(started["run"], store=store)
    if run.status != "waiting":  # stopped before the canary (e.g. the gate said no)
        return {"alert": started["alert"], "pipeline_run": run.id, "pipeline_status":
                run.status, "strategy": run.params.get("strategy", ""),
                "steps": [{"step": e.step, "status": e.status, "seconds": e.duration_s}
                          for e in run.executions],
                "final": eps.get_endpoint(ENDPOINT, store=store).describe()}
    ref = run.output("register")["ref"]
    first_revision = eps.history(ENDPOINT, store=store, limit=1)[0].revision  # the shadow
    outcome = run.output("evaluate_gate")
    mine, theirs = outcome.evaluation.overall.metrics, outcome.baseline.overall.metrics
    act: dict[str, Any] = {"alert": started["alert"], "pipeline_run": run.id,
                           "strategy": run.params.get("strategy", ""), "version": ref,
                           "run": run.step("train").run_id,
                           "why": "accuracy fell after the approval rule changed: learn from "
                                  "the traffic after the change only",
                           "shadow_agreement": shadow_agreement(store, ref),
                           "blessed": outcome.blessed,
                           "gate": f"holdout accuracy {mine['accuracy']:.3f} vs the "
                                   f"champion's {theirs['accuracy']:.3f}"}
    say(f"retraining run {run.id[:8]}: {ref} {act['gate']}; shadowed, waiting for approval "
        f"of its canary")
    pm.pipelines.approve(run.id, "canary", by="demo-operator",
                         reason="shadow answers look sane", store=store)
    run = pm.pipelines.resume(run.id, store=store)
    say(f"canary {ref} approved and started (run {run.id[:8]} {run.status}); replaying "
        "post-change traffic with its labels")
    records = traffic[FEATURES].to_dict(orient="records")
    labels = traffic[LABEL].tolist()
    deadline = time.monotonic() + 90
    for start in range(0, len(records), 200):
        if d_finished(store) or time.monotonic() > deadline:
            break
        answers = replay(server.url, records[start:start + 200])
        server.feedback(answers, labels[start:start + 200])
    for _ in range(50):
        if d_finished(store):
            break
        time.sleep(0.1)
    final = eps.get_endpoint(ENDPOINT, store=store).describe()
    if final == ref:
        pm.models.set_alias(MODEL_NAME, "champion", int(ref.rsplit("/", 1)[1]), store=store)
    run = pm.pipelines.get_run(run.id, store=store)
    act.update(final=final, pipeline_status=run.status,
               steps=[{"step": e.step, "status": e.status, "seconds": e.duration_s}
                      for e in run.executions],
               history=[{"revision": e.revision, "action": e.action, "actor": e.actor,
                         "to": e.to_dict()["to_summary"], "reason": e.reason}
                        for e in reversed(eps.history(ENDPOINT, store=store, limit=20))
                        if e.revision >= first_revision])
    return act


def after_change(rows: int, seed: int) -> pd.DataFrame:
    """More applications under the new approval rule (Agrawal's function 0)."""
    from prodml.demo.data import loan_applications
    from prodml.demo.monitoring import FUNCTION_AFTER

    frame = loan_applications(rows, seed, classification_function=FUNCTION_AFTER)
    return frame.assign(salary=frame["salary"] * 1.3).reset_index(drop=True)


