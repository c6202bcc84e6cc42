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
from sklearn.model_selection import train_test_split

import prodml as pm
from prodml.data.retraining import training_window
from prodml.demo.data import FEATURES, LABEL
from prodml.store import Store, get_store

PIPELINE = "loan-retrain"
ACTION = "retrain-loan"
MODEL_NAME = "loan"
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# The candidate must be accurate on recent traffic and beat the champion there.
RETRAIN_GATE = {"name": "loan-retrain", "conditions": [
    {"metric": "accuracy", "min": 0.85},
    {"metric": "accuracy", "change": {"baseline": "champion", "min_absolute": 0.0}},
]}


def _store() -> Store:
    context = pm.pipelines.current()
    return context.store if context is not None else get_store()


@pm.step(cache=False)  # the log grows: the same parameters read new rows
def labelled_traffic(endpoint: str, since: int) -> pd.DataFrame:
    """The served answers logged from ``since`` on whose true outcome has arrived."""
    from prodml.serving.log_reader import read_predictions

    frame = read_predictions(endpoint, since=since, routes=["primary", "canary"],
                             store=_store())
    frame = frame.filter(frame["label"].is_not_null())
    out = frame.select(["id", "time", *FEATURES, "label"]).to_pandas()
    out[LABEL] = out.pop("label").astype(int)
    out["time"] = pd.to_datetime(out["time"], unit="ms", utc=True)
    context = pm.pipelines.current()
    if context is not None:
        context.annotate_output(type="Dataset", name=f"{endpoint} labelled traffic",
                                properties={"rows": len(out), "source": f"log:{endpoint}"})
    return out


@pm.step(outputs=("train", "holdout"))
def hold_out(frame: pd.DataFrame, strategy: str, window: int, seed: int
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the rows the retraining strategy chooses, then hold a quarter of the most recent
    window out to judge the new model and the champion on the same rows."""
    chosen = training_window(frame, strategy=strategy, time_column="time",
                             window=window if strategy == "recent" else None,
                             half_life=f"{max(1, window // 4)}s" if strategy == "weighted"
                             else None)
    data = chosen.frame.assign(sample_weight=chosen.sample_weight)
    recent = data.tail(window)
    fit_recent, holdout = train_test_split(recent, test_size=0.25, random_state=seed,
                                           stratify=recent[LABEL])
    return pd.concat([data.iloc[:-window] if len(data) > window else data.iloc[:0],
                      fit_recent]), holdout


@pm.step(outputs=("model", "run_id"))
def train(frame: pd.DataFrame, strategy: str, seed: int) -> tuple[Any, str]:
    """Gradient boosting on the chosen rows, as a tracked run (linked to this execution)."""
    params = {"model": "hist_gradient_boosting", "max_iter": 150, "learning_rate": 0.1,
              "strategy": strategy, "seed": seed}
    with pm.start_run(experiment="loan-approval", name=f"retrain-{strategy}", params=params,
                      tags={"role": "retrained"}, store=_store()) as run:
        run.log_dataset(frame[[*FEATURES, LABEL]], context="train", name="loan-recent-train")
        model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1,
                                               random_state=seed)
        model.fit(frame[FEATURES], frame[LABEL].to_numpy(),
                  sample_weight=frame["sample_weight"].to_numpy())
        run.log_metric("train_accuracy", float(model.score(frame[FEATURES], frame[LABEL])))
    context = pm.pipelines.current()
    if context is not None:
        context.set_run_id(run.id)
        context.annotate_output(type="Model", properties={"run_id": run.id}, output="model")
    return model, run.id


@pm.step
def gate_against_champion(model: Any, holdout: pd.DataFrame, champion: str) -> dict[str, Any]:
    """Evaluate the new model and the champion on the same held-out rows; gate the new one."""
    store = _store()
    current_champion = pm.models.load(champion, store=store)
    mine = pm.evaluate(model, holdout, label=LABEL, features=FEATURES, bootstrap=0)
    theirs = pm.evaluate(current_champion, holdout, label=LABEL, features=FEATURES,
                         bootstrap=0)
    blessing = pm.gate(mine, RETRAIN_GATE, baselines={"champion": theirs})
    return {"blessed": blessing.blessed,
            "accuracy": float(mine.overall.metrics["accuracy"]),
            "champion_accuracy": float(theirs.overall.metrics["accuracy"]),
            "failures": [f.condition for f in blessing.failures]}


@pm.step
def register(model: Any, run_id: str, verdict: dict[str, Any], train_rows: pd.DataFrame
             ) -> str:
    """Register the new version (only a blessed one goes further)."""
    if not verdict["blessed"]:
        raise pm.InvalidInputError("gate", verdict["failures"],
                                   "the retrained model must pass loan-retrain")
    context = pm.pipelines.current()
    version = pm.models.register(
        MODEL_NAME, model, run=run_id,
        input_example=train_rows[FEATURES].head(100), trusted=TRUSTED, store=_store(),
        description="Loan approval, retrained on recent traffic after the concept change",
        tags={"retrained": "true", "holdout_accuracy": round(verdict["accuracy"], 4)})
    if context is not None:
        context.annotate_output(type="ModelVersion", name=version.ref,
                                properties={"model": MODEL_NAME, "version": version.version})
    return version.ref


@pm.step
def shadow(endpoint: str, ref: str) -> int:
    """Mirror live traffic to the new version (its answers logged, never returned)."""
    from prodml.serving import endpoints as eps

    served = eps.deploy(endpoint, ref, "shadow", percent=100, store=_store(),
                        actor=f"pipeline:{PIPELINE}",
                        reason="shadow the retrained model on live traffic")
    return served.revision


@pm.step(approval=True)  # a person decides when the shadow has seen enough
def canary(endpoint: str, ref: str, shadow_revision: int, step_requests: int) -> int:
    """Canary the new version 10% → 50% → 100% under guards; the controller promotes it."""
    from prodml.serving import endpoints as eps

    served = eps.deploy(endpoint, ref, "canary", steps=[10, 50, 100],
                        step_every_requests=step_requests,
                        guards={"max_error_rate": 0.01, "max_latency_p99_ms": 1000,
                                "max_accuracy_drop": 0.05, "min_requests": step_requests},
                        store=_store(), actor=f"pipeline:{PIPELINE}",
                        reason=f"canary the retrained model (after shadow rev "
                               f"{shadow_revision}): 10%, 50%, 100%")
    return served.revision


@pm.pipeline(name=PIPELINE)
def loan_retrain(endpoint: str = "loan", since: int = 0, strategy: str = "recent",
                 window: int = 2000, seed: int = 42, champion: str = "loan@champion",
                 step_requests: int = 30) -> Any:
    traffic = labelled_traffic(endpoint, since)
    rows, holdout = hold_out(traffic, strategy=strategy, window=window, seed=seed)
    model, run_id = train(rows, strategy=strategy, seed=seed)
    verdict = gate_against_champion(model, holdout, champion)
    ref = register(model, run_id, verdict, rows)
    revision = shadow(endpoint, ref)
    return canary(endpoint, ref, revision, step_requests=step_requests)


def arm(store: Store, *, since: int, window: int, strategy: str = "recent",
        step_requests: int = 30) -> dict[str, Any]:
    """Register the alert action that starts the pipeline; what it started lands in the
    returned dict (the action runs inside the monitor's run)."""
    from prodml.monitoring.sinks import register_action

    started: dict[str, Any] = {}

    def retrain(alert: Any) -> str:
        if started:  # one retraining per demo, whichever rule fires first
            return f"retraining already started (run {started['run'][:8]})"
        started["alert"] = f"#{alert.id} {alert.rule}"
        run = loan_retrain.run(params={"since": since, "window": window, "strategy": strategy,
                                       "step_requests": step_requests},
                               store=store, triggered_by=f"alert:{alert.id}")
        started["run"] = run.id
        return f"started pipeline {PIPELINE} run {run.id[:8]}: {run.status}"

    register_action(ACTION, retrain)
    return started


def finish_rollout(store: Store, started: dict[str, Any], traffic: pd.DataFrame,
                   url: str, *, say: Callable[[str], None] = lambda m: None
                   ) -> dict[str, Any]:
    """Approve the waiting canary, resume the run, replay post-change traffic with its labels
    until the canary is promoted or rolled back; what happened."""
    from prodml.demo.serving import ENDPOINT, d_finished, replay, shadow_agreement
    from prodml.serving import endpoints as eps

    run = pm.pipelines.get_run(started["run"], store=store)
    ref = run.output("register")
    act: dict[str, Any] = {"alert": started["alert"], "pipeline_run": run.id,
                           "strategy": run.spec.get("params", {}).get("strategy", ""),
                           "version": ref, "run": run.output("train", "run_id"), "why": "accuracy fell after the approval rule "
                           "changed: learn from the traffic after the change only",
                           "shadow_agreement": shadow_agreement(store, ref)}
    first_revision = run.output("shadow")  # the rollout's history starts there
    verdict = run.output("gate_against_champion")
    act.update(blessed=verdict["blessed"],
               gate=f"holdout accuracy {verdict['accuracy']:.3f} vs the champion's "
                    f"{verdict['champion_accuracy']:.3f}")
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
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(records), 200):
            if d_finished(store) or time.monotonic() > deadline:
                break
            answers = replay(url, records[start:start + 200])
            client.post("/feedback", json=[
                {"prediction_id": a["prediction_id"], "label": int(y)}
                for a, y in zip(answers, labels[start:start + 200])]).raise_for_status()
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


