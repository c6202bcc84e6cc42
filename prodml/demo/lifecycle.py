"""The lifecycle demo: data, tracked training, comparison with a baseline, registration.

Later stages (serving, monitoring, drift, retraining) extend :func:`run_demo` so that it stays
the one place that shows the whole loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodml.data.drift import drift
from prodml.data.schema import infer_schema
from prodml.data.validate import validate
from prodml.demo.data import FEATURES, LABEL, loan_applications
from prodml.demo.labelling import labelling_story
from prodml.demo.summary import write_summary
from prodml.evaluation.evaluate import evaluate
from prodml.evaluation.gates import gate
from prodml.store import Store, get_store
from prodml.tracking import registry
from prodml.tracking.runs import start_run

MODEL_NAME = "loan"
EXPERIMENT = "loan-approval"
# skops flags this type because a crafted file could hold out-of-range node indices; we
# trust it here because this process made the model and the registry verifies its SHA-256.
HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


@dataclass
class DemoResult:
    """What the demo made and where it lives."""

    store_url: str
    artifacts: str
    rows: int
    runs: dict[str, str] = field(default_factory=dict)  # role -> run id
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> metrics
    model_ref: str = ""
    champion: str = ""
    champion_check: float = 0.0  # accuracy of the model loaded back through the alias
    training_profile: dict[str, Any] = field(default_factory=dict)  # rows, columns, digest
    drift: dict[str, Any] = field(default_factory=dict)  # verdict on a later stretch
    drift_report: str = ""  # path of the HTML report
    validation: dict[str, Any] = field(default_factory=dict)  # later data vs the schema
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> verdict
    evaluation_report: str = ""  # the blessed version's HTML evaluation
    serving: dict[str, Any] = field(default_factory=dict)  # the serving act (see serve=)
    labelling: dict[str, Any] = field(default_factory=dict)  # agreement, disputes, HLP
    retraining: dict[str, Any] = field(default_factory=dict)  # alert -> pipeline -> rollout
    dashboard_url: str = ""  # the demo server's address while it runs
    summary_report: str = ""  # the lifecycle's HTML summary

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The headline test metrics a run logs (scikit-learn's definitions, via evaluate)."""
    overall = evaluate(proba, {LABEL: y_true}, label=LABEL, bootstrap=0).overall.metrics
    return {name: float(overall[name]) for name in ("accuracy", "f1", "roc_auc", "log_loss")}


def run_demo(rows: int = 6000, seed: int = 42, *, store: Store | None = None,
             serve: bool = True, fast: bool = False,
             hold: Callable[["DemoResult"], None] | None = None,
             say: Callable[[str], None] = lambda message: None) -> DemoResult:
    """Train a baseline and a gradient-boosted loan model, track both, register the winner;
    then (``serve``) serve it over HTTP, shadow and canary a challenger, watch later traffic
    and retrain when the monitors fire. One server runs for the whole demo, so the
    dashboard's URL stays the same; ``hold(result)`` is called before it stops (the CLI
    shows the result and waits there for Ctrl-C). ``fast`` replays less later traffic."""
    store = store or get_store()
    result = DemoResult(store.display_url, store.artifacts.location, rows)
    with contextlib.ExitStack() as stack:
        server = None
        if serve:
            from prodml.demo.serving import DemoServer
            from prodml.access import ensure_local_admin
            from prodml.config import Settings
            server = stack.enter_context(DemoServer(store))
            result.dashboard_url = server.url
            say(f"dashboard live at {server.url}/ui (records appear as the demo makes them)")
            local = ensure_local_admin(store, Settings.from_env().home)
            if local is not None:
                say(f"sign in to it with the admin token in {local.path} to roll back or "
                    "approve from the page")
        _acts(result, store, rows, seed, server, fast, say)
        result.summary_report = str(write_summary(
            result.to_dict(), Path(store.artifacts.location).parent / "reports"
            / "loan-lifecycle.html"))
        if hold is not None and server is not None:
            hold(result)
    return result


def _acts(result: DemoResult, store: Store, rows: int, seed: int, server: Any, fast: bool,
          say: Callable[[str], None]) -> None:

    say(f"generating {rows} loan applications (River Agrawal, seed {seed})")
    frame = loan_applications(rows, seed)
    train, test = train_test_split(frame, test_size=0.25, random_state=seed,
                                   stratify=frame[LABEL])
    X_train, y_train = train[FEATURES], train[LABEL].to_numpy()
    X_test, y_test = test[FEATURES], test[LABEL].to_numpy()
    result.labelling = labelling_story(test, store=store, seed=seed, say=say)

    say("training the baseline (logistic regression)")
    with start_run(experiment=EXPERIMENT, name="baseline-logreg", store=store,
                   params={"model": "logistic_regression", "C": 1.0, "seed": seed},
                   tags={"role": "baseline"}) as run:
        run.log_dataset(train, context="train", name="loan-train")
        run.log_dataset(test, context="test", name="loan-test")
        baseline = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        baseline.fit(X_train, y_train)
        scores = _scores(y_test, baseline.predict_proba(X_test)[:, 1])
        run.log_metrics(scores)
    result.runs["baseline"], result.metrics["baseline"] = run.id, scores

    params = {"model": "hist_gradient_boosting", "max_iter": 150, "learning_rate": 0.1,
              "max_leaf_nodes": 31, "seed": seed}
    say("training the candidate (gradient boosting), logging test log-loss by iteration")
    with start_run(experiment=EXPERIMENT, name="candidate-gbm", store=store, params=params,
                   tags={"role": "candidate"}) as run:
        run.log_dataset(train, context="train", name="loan-train")
        run.log_dataset(test, context="test", name="loan-test")
        model = HistGradientBoostingClassifier(
            max_iter=params["max_iter"], learning_rate=params["learning_rate"],
            max_leaf_nodes=params["max_leaf_nodes"], early_stopping=False, random_state=seed)
        model.fit(X_train, y_train)
        for step, proba in enumerate(model.staged_predict_proba(X_test)):
            if step % 10 == 9:
                run.log_metric("test_log_loss", float(log_loss(y_test, proba[:, 1])),
                               step=step + 1)
        scores = _scores(y_test, model.predict_proba(X_test)[:, 1])
        run.log_metrics(scores)
        beats = scores["f1"] > result.metrics["baseline"]["f1"]
        run.set_tag("beats_baseline", str(beats).lower())
    result.runs["candidate"], result.metrics["candidate"] = run.id, scores

    say("registering both versions, evaluating each on slices (age bands, zipcode groups) "
        "and gating them")
    reports = Path(store.artifacts.location).parent / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    baseline_eval = evaluate(baseline, test, label=LABEL, slices=SLICES, features=FEATURES,
                             baselines=result.labelling["baselines"])
    registered = {
        "baseline": registry.register(MODEL_NAME, baseline, run=result.runs["baseline"],
                                      input_example=X_train.head(100), store=store,
                                      description="Loan approval, logistic regression baseline"),
        "candidate": registry.register(MODEL_NAME, model, run=run.id,
                                       input_example=X_train.head(100), trusted=HGB_TRUSTED,
                                       store=store, tags={"f1": round(scores["f1"], 4)},
                                       description="Loan approval, gradient boosting"),
    }
    for role, version in registered.items():
        fitted = baseline if role == "baseline" else model
        evaluation = baseline_eval if role == "baseline" else evaluate(
            fitted, test, label=LABEL, slices=SLICES, features=FEATURES,
            baselines=result.labelling["baselines"])
        blessing = gate(evaluation, RELEASE_GATE, baseline=baseline_eval)
        registry.attach_evaluation(version.ref, evaluation, blessing, name="test split",
                                   store=store)
        result.gates[role] = {"ref": version.ref, "blessed": blessing.blessed,
                              "failures": [f"{f.condition} [{f.slice}]: {f.observed:.3f}"
                                           if f.slice not in f.condition else
                                           f"{f.condition}: {f.observed:.3f}"
                                           for f in blessing.failures]}
        if blessing.blessed:  # only a blessed version may take the champion alias
            registry.require_blessed(version.ref, store=store)
            registry.set_alias(MODEL_NAME, "champion", version.version, store=store)
            path = reports / "loan-evaluation.html"
            path.write_text(evaluation.to_html())
            result.evaluation_report = str(path)
    result.model_ref = registered["candidate"].ref
    champion = registry.get(f"{MODEL_NAME}@champion", store=store)
    result.champion = champion.ref

    say("loading loan@champion back (SHA-256 verified) and scoring the test set")
    loaded = registry.load(f"{MODEL_NAME}@champion", store=store)
    result.champion_check = float(accuracy_score(y_test, loaded.predict(X_test)))

    say("comparing a later stretch of applications (a year of inflation) with the training "
        "profile stored with the champion")
    reference = registry.training_profile(f"{MODEL_NAME}@champion", store=store)
    result.training_profile = {"rows": reference.rows, "columns": reference.column_names,
                               "sha256": champion.profile_sha256}
    later = inflated(loan_applications(rows, seed + 1), rate=INFLATION)
    report = drift(reference, later, label=LABEL)
    path = reports / "loan-drift.html"
    report.write_html(path)
    result.drift = {"dataset_drift": report.dataset_drift,
                    "drifted_columns": report.drifted_columns,
                    "share_drifted": report.share_drifted,
                    "methods": {c.name: c.method for c in report.columns},
                    "headline": report.headline()}
    result.drift_report = str(path)
    # The schema proposed from the champion's training profile, checked on the later
    # stretch: inflated money columns fall outside the ranges seen in training.
    schema = infer_schema(reference)
    checked = validate(later, schema)
    path = reports / "loan-validation.html"
    path.write_text(checked.to_html("Later applications against the training schema"))
    result.validation = {"ok": checked.ok, "headline": checked.headline(),
                         "anomalies": [a.to_dict() for a in checked.errors + checked.warnings],
                         "report": str(path)}
    say(f"validating the later stretch against the schema inferred from the training "
        f"profile: {checked.headline()}")
    if server is not None:
        result.serving = _serving_act(store, train, test, seed, baseline_eval, server, say)
        result.runs["challenger"] = result.serving.pop("run")
        result.metrics["challenger"] = result.serving.pop("metrics")
        if "history" in result.serving:  # the endpoint serves: watch its later traffic
            from prodml.demo.monitoring import monitoring_story
            from prodml.demo import retraining
            from prodml.store import now_ms

            traffic = (dict(rows=6_000, window=1_000, drift_at=2_000, change_at=4_000)
                       if fast else dict(rows=12_000, window=2_000, drift_at=4_000,
                                         change_at=8_000))
            since = now_ms()
            retraining.arm(since=since, window=traffic["window"], strategy="recent")
            result.serving["monitoring"] = monitoring_story(
                store, seed=seed, say=say, server=server, **traffic, since=since,
                actions=[retraining.ACTION],
                expected_accuracy=min(result.metrics[role]["accuracy"]  # the served ones
                                      for role in ("candidate", "challenger")))
            started = retraining.started_by_alert(store, since)
            if started:  # an alert started the retraining pipeline: finish its rollout
                result.retraining = retraining.finish_rollout(
                    store, started, retraining.after_change(traffic["window"], seed + 11),
                    server, say=say)
                result.runs["retrained"] = result.retraining["run"]


def _serving_act(store: Store, train: Any, test: Any, seed: int, baseline_eval: Any,
                 server: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Train a challenger, gate it, then serve the champion and shadow/canary the challenger."""
    from prodml.demo.serving import serving_story

    say("training a challenger (gradient boosting, slower learning rate, more trees)")
    params = {"model": "hist_gradient_boosting", "max_iter": 300, "learning_rate": 0.05,
              "max_leaf_nodes": 31, "seed": seed}
    with start_run(experiment=EXPERIMENT, name="challenger-gbm", store=store, params=params,
                   tags={"role": "challenger"}) as run:
        run.log_dataset(train, context="train", name="loan-train")
        run.log_dataset(test, context="test", name="loan-test")
        challenger = HistGradientBoostingClassifier(
            max_iter=params["max_iter"], learning_rate=params["learning_rate"],
            max_leaf_nodes=params["max_leaf_nodes"], early_stopping=False,
            random_state=params["seed"]).fit(train[FEATURES], train[LABEL].to_numpy())
        scores = _scores(test[LABEL].to_numpy(), challenger.predict_proba(test[FEATURES])[:, 1])
        run.log_metrics(scores)
    version = registry.register(MODEL_NAME, challenger, run=run.id,
                                input_example=train[FEATURES].head(100), trusted=HGB_TRUSTED,
                                store=store, description="Loan approval, challenger")
    evaluation = evaluate(challenger, test, label=LABEL, slices=SLICES, features=FEATURES)
    blessing = gate(evaluation, RELEASE_GATE, baseline=baseline_eval)
    registry.attach_evaluation(version.ref, evaluation, blessing, name="test split",
                               store=store)
    act: dict[str, Any] = {"challenger": version.ref, "challenger_blessed": blessing.blessed,
                           "run": run.id, "metrics": scores}
    if not blessing.blessed:
        say(f"{version.ref} is not blessed: it stays off the endpoint")
        return act
    records = test[FEATURES].to_dict(orient="records")
    act.update(serving_story(store, records, test[LABEL].tolist(), f"{MODEL_NAME}@champion",
                             version.ref, server=server, say=say))
    if act["final"] == version.ref:  # promoted by the canary: the registry follows
        registry.set_alias(MODEL_NAME, "champion", version.version, store=store)
    return act


INFLATION = 0.25  # salaries, house values and loans a year later
SLICES = [("age", [20, 40, 60, 81]), ("zipcode", [0, 3, 6, 9])]  # age bands, zipcode groups
# Released only if accurate overall, on every age band and zipcode group, and no worse than
# the baseline: the course's "do well on key slices", written as a gate.
RELEASE_GATE = {"name": "loan-release", "conditions": [
    {"metric": "accuracy", "min": 0.85},
    {"metric": "accuracy", "slices": "age", "min": 0.80},
    {"metric": "accuracy", "slices": "zipcode", "min": 0.80},
    {"metric": "roc_auc", "change": {"baseline": "baseline", "min_absolute": 0.0}},
]}


def inflated(frame: Any, rate: float) -> Any:
    """The same kind of applicants after prices and wages rose by ``rate`` (data drift)."""
    money = ["salary", "commission", "hvalue", "loan"]
    return frame.assign(**{c: frame[c] * (1 + rate) for c in money})
