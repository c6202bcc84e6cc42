"""Built-in model steps: train (a tracked run), evaluate_gate, register, deploy.

``train`` calls the user's function inside a tracked run that links its training dataset, and
ties the run to its execution; ``evaluate_gate`` scores the model (and the baseline, e.g. the
champion) on the same rows and slices, and stops the pipeline when the gate says no;
``register`` keeps the model in the registry with the run that made it and the gate's
verdict; ``deploy`` puts it behind an endpoint with a serving strategy (shadow, canary with
guards, blue-green, direct), the change recorded with the pipeline run as its reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prodml.errors import InvalidInputError, NotFoundError
from prodml.pipelines.context import current
from prodml.pipelines.step import step
from prodml.pipelines.steps_data import (StepStoppedError, annotate, record_report, record_stop,
                                         step_store)


# -- train ---------------------------------------------------------------------------------------

def _function(fn: Any) -> Callable[..., Any]:
    if callable(fn):
        return fn
    from prodml.monitoring.spec import resolve_callable

    return resolve_callable(fn, "fn")


def _pandas(frame: Any) -> Any:
    if type(frame).__module__.split(".")[0] == "pandas":
        return frame
    from prodml.data.frames import to_arrow

    return to_arrow(frame).to_pandas()


def _pipeline_name() -> str | None:
    context = current()
    if context is None:
        return None
    from sqlalchemy import select

    from prodml.store import tables as t

    with context.store.read() as conn:
        return conn.execute(select(t.pipeline_contexts.c.name).where(
            t.pipeline_contexts.c.id == context.context_id)).scalar()


def _unpack(out: Any) -> tuple[Any, dict[str, float]]:
    """The model and its metrics from what the training function returned."""
    if isinstance(out, dict) and "model" in out:
        return out["model"], dict(out.get("metrics") or {})
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        return out[0], dict(out[1])
    return out, {}


@step
def train(frame: Any, fn: Any, *, label: str | None = "y", params: dict[str, Any] | None = None,
          features: list[str] | None = None, exclude: list[str] | None = None,
          weight_column: str = "sample_weight", experiment: str | None = None) -> Any:
    """Fit a model with the user's ``fn`` inside a tracked run; returns the model.

    ``fn`` is a callable or ``"module:function"``, called as ``fn(X, y, **params)`` (or
    ``fn(X, **params)`` when ``label`` is None), plus ``sample_weight=`` when the frame has
    ``weight_column`` (see :func:`~prodml.pipelines.steps_data.training_data`). ``X`` is
    ``features``, or every column but the label, the weights and ``exclude``. ``fn`` returns
    the model, ``(model, metrics)`` or ``{"model": ..., "metrics": {...}}``; the metrics are
    logged to the run. The run (experiment: the pipeline's name) records ``params``, the
    training dataset (``run_inputs``) and the pipeline run; the execution records the run.
    """
    from prodml.pipelines.code import function_ref
    from prodml.tracking.runs import start_run

    function = _function(fn)
    frame = _pandas(frame)
    params = dict(params or {})
    if label is not None and label not in frame.columns:
        raise InvalidInputError("label", label, "no such column (has: "
                                f"{', '.join(map(str, frame.columns[:20]))})")
    missing = [c for c in features or [] if c not in frame.columns]
    if missing:
        raise InvalidInputError("features", missing, "no such column(s) in the training data")
    weights = frame[weight_column].to_numpy() if weight_column in frame.columns else None
    dropped = {label, weight_column, *(exclude or [])}
    X = frame[list(features)] if features else frame[[c for c in frame.columns
                                                      if c not in dropped]]
    context = current()
    experiment = experiment or _pipeline_name() or "default"
    tags = {"prodml.function": function_ref(function)}
    if context is not None:
        tags.update({"prodml.pipeline_run": context.context_id, "prodml.step": context.step})
    with start_run(experiment=experiment, params=params, tags=tags,
                   store=step_store()) as run:
        if context is not None:
            context.set_run_id(run.id)
        run.log_dataset(frame, context="train")
        kwargs = dict(params)
        if weights is not None:
            kwargs["sample_weight"] = weights
        out = function(X, frame[label], **kwargs) if label is not None else function(X, **kwargs)
        model, metrics = _unpack(out)
        if metrics:
            run.log_metrics(metrics)
    print(f"train: run {run.id} ({experiment}), {len(X):,} rows, {X.shape[1]} features"
          + (", weighted" if weights is not None else ""))
    annotate(type="Model", properties={
        "run_id": run.id, "experiment": experiment, "function": function_ref(function),
        "label": label, "features": [str(c) for c in X.columns][:200],
        "weighted": weights is not None, "metrics": _finite(metrics)})
    return model


def _finite(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


# -- evaluate and gate ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GateOutcome:
    """What ``evaluate_gate`` decided: the candidate's evaluation, the verdict, and the
    baseline's evaluation on the same rows (``None`` when there was none)."""

    evaluation: Any  # EvaluationResult
    blessing: Any  # Blessing
    baseline: Any = None  # EvaluationResult | None
    baseline_ref: str | None = None
    skipped: tuple[str, ...] = field(default=())  # change conditions without a baseline

    @property
    def blessed(self) -> bool:
        return bool(self.blessing.blessed)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.blessing.gate, "blessed": self.blessed,
                "baseline": self.baseline_ref, "skipped": list(self.skipped),
                "results": self.blessing.to_dict()["results"],
                "metrics": _finite(self.evaluation.overall.metrics),
                "baseline_metrics": (_finite(self.baseline.overall.metrics)
                                     if self.baseline is not None else None)}


def _baseline_model(baseline: Any) -> tuple[Any, str | None]:
    """The baseline model and its resolved reference; ``(None, None)`` when the reference
    names nothing yet (the first model of a name has no champion)."""
    if baseline is None:
        return None, None
    if not isinstance(baseline, str):
        return baseline, type(baseline).__name__
    from prodml.tracking import registry

    store = step_store()
    try:
        version = registry.get(baseline, store=store)
    except NotFoundError:
        return None, None
    return registry.load(version.ref, store=store), version.ref


def _gate_needs(spec: Any, slices: Any, protected: Any) -> tuple[Any, Any]:
    """Slices and protected attributes the gate's conditions name, unless given: a condition
    on ``slices: city`` or ``slice: city=north`` needs the ``city`` slices evaluated, one on
    ``attribute: sex`` a fairness report for ``sex``."""
    if slices is None:
        named = [c.slices or c.slice.split("=", 1)[0] for c in spec.conditions
                 if c.attribute is None and (c.slices or c.slice != "overall")]
        slices = list(dict.fromkeys(named)) or None
    if protected is None:
        attributes = [c.attribute for c in spec.conditions if c.attribute is not None]
        protected = list(dict.fromkeys(attributes)) or None
    return slices, protected


@step(cache=False)  # the baseline (e.g. an alias) may point elsewhere by the next run
def evaluate_gate(model: Any, frame: Any, gate: Any, *, label: str = "y",
                  baseline: Any = None, slices: Any = None, protected: Any = None,
                  features: list[str] | None = None, min_slice_size: int = 30,
                  bootstrap: int = 0, threshold: float = 0.5, seed: int = 0) -> GateOutcome:
    """Evaluate ``model`` on ``frame`` (overall, ``slices``, fairness on ``protected``) and
    check ``gate`` (a :class:`~prodml.evaluation.gates.GateSpec`, its dict or YAML).
    ``slices`` and ``protected`` default to what the gate's conditions name.

    ``baseline`` (a model reference such as ``"loan@champion"``, or a model) is evaluated on
    the same rows for the gate's change conditions; when the reference names no version yet,
    change conditions are skipped and the outcome says so. A failed gate raises
    :class:`~prodml.pipelines.steps_data.StepStoppedError` with the verdict, which is also
    recorded as the failed execution's "Blessing" artifact.
    """
    from prodml.evaluation.evaluate import evaluate
    from prodml.evaluation.gates import Blessing, GateSpec
    from prodml.evaluation.gates import gate as check

    spec = GateSpec.load(gate)
    slices, protected = _gate_needs(spec, slices, protected)
    options = {"label": label, "slices": slices, "protected": protected, "features": features,
               "min_slice_size": min_slice_size, "bootstrap": bootstrap,
               "threshold": threshold, "seed": seed}
    result = evaluate(model, frame, **options)
    other, ref = _baseline_model(baseline)
    before = evaluate(other, frame, **options) if other is not None else None
    skipped: tuple[str, ...] = ()
    if before is None:
        skipped = tuple(c.describe() for c in spec.conditions if c.change is not None)
        kept = [c for c in spec.conditions if c.change is None]
        if skipped:
            print(f"evaluate_gate: no baseline ({baseline!r} names no version): skipped "
                  + "; ".join(skipped))
        verdict = (check(result, spec.model_copy(update={"conditions": kept}))
                   if kept else Blessing(gate=spec.name, blessed=True, results=[]))
    else:
        verdict = check(result, spec, baseline=before)
    outcome = GateOutcome(result, verdict, before, ref, skipped)
    report = outcome.to_dict()
    print(verdict.summary())
    if not verdict.blessed:
        kept_report = record_report("Blessing", f"gate {spec.name}", report)
        record_stop("Blessing", f"gate {spec.name}", report, kept_report)
        raise StepStoppedError(f"{verdict.summary()}\n(verdict: {kept_report['uri']})",
                               field="gate", value=spec.name,
                               rule="the candidate must pass the gate to go on", report=report)
    annotate(type="Blessing", name=f"gate {spec.name}", properties={
        "blessed": True, "gate": spec.name, "baseline": ref, "skipped": list(skipped),
        "metrics": report["metrics"]})
    return outcome


# -- register ------------------------------------------------------------------------------------

def _input_property(name: str, key: str) -> Any:
    """A property of this execution's input artifact ``name`` (e.g. the model's run id)."""
    context = current()
    if context is None:
        return None
    from sqlalchemy import select

    from prodml.store import tables as t

    a, ev = t.lineage_artifacts, t.events
    with context.store.read() as conn:
        properties = conn.execute(select(a.c.properties).join(ev, ev.c.artifact_id == a.c.id)
                                  .where(ev.c.execution_id == context.execution_id,
                                         ev.c.kind == "input", ev.c.name == name)).scalar()
    return (properties or {}).get(key)


@step
def register(model: Any, name: str, *, blessing: GateOutcome | None = None,
             aliases: list[str] | None = None, tags: dict[str, Any] | None = None,
             description: str | None = None, run: str | None = None) -> dict[str, Any]:
    """Register ``model`` as the next version of ``name``; returns ``{"model", "version",
    "ref"}`` (a "ModelVersion" artifact).

    The version links the tracked run that trained it (the ``train`` step's, found through
    the model's artifact, or ``run``) and so its training dataset; ``blessing`` (the output
    of :func:`evaluate_gate`) is kept with it as its evaluation and verdict, and wiring it
    in makes registration wait for the gate.
    """
    from prodml.tracking import registry
    from prodml.tracking.evaluations import attach_evaluation

    if blessing is not None and not getattr(blessing, "blessed", False):
        raise InvalidInputError("blessing", getattr(blessing, "to_dict", lambda: blessing)(),
                                "must be a passed gate (evaluate_gate's output)")
    store = step_store()
    run_id = run or _input_property("model", "run_id")
    version = registry.register(name, model, run=run_id, aliases=aliases, tags=tags,
                                description=description, store=store)
    if blessing is not None:
        attach_evaluation(version.ref, blessing.evaluation, blessing.blessing,
                          name=f"gate {blessing.blessing.gate}", store=store)
    annotate(type="ModelVersion", name=version.ref, properties={
        "model": name, "version": version.version, "run_id": run_id,
        "blessed": None if blessing is None else True})
    print(f"register: {version.ref}" + (f" (run {run_id})" if run_id else ""))
    return {"model": name, "version": version.version, "ref": version.ref}


def _check_guards(guards: Any) -> None:
    """Refuse bad canary guards with the field and the rule (before anything is written)."""
    from pydantic import ValidationError

    from prodml.serving.deployment import Guards

    if not isinstance(guards, dict):
        raise InvalidInputError("guards", guards, "must be a mapping of guard to bound")
    try:
        Guards(**guards)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"guards.{where}", first.get("input"), first["msg"]) from None


# -- deploy ----------------------------------------------------------------------------------------

# Never cached: the endpoint may have been changed by hand since the last run, and a rerun
# that asks for a rollout means one.
@step(cache=False)
def deploy(version: Any, endpoint: str, *, strategy: str = "direct",
           reason: str | None = None, percent: float = 100.0,
           steps: list[float] | None = None, step_every_requests: int | None = None,
           step_every_seconds: float | None = None, routing_key: str | None = None,
           guards: dict[str, Any] | None = None, mode: str | None = None,
           threshold: float | None = None, smoke: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    """Put ``version`` (:func:`register`'s output, or a reference) behind ``endpoint``.

    ``strategy`` is ``direct``, ``shadow`` (``percent`` of traffic mirrored), ``canary``
    (``steps``, ``guards``, ``step_every_requests``/``seconds``, ``routing_key``) or
    ``blue-green`` (``smoke`` records); ``mode``/``threshold`` wrap it in an automation
    mode. An endpoint that does not exist yet gets the version directly (there is nothing
    to shadow or canary against), and the output says so. The deployment event's actor is
    the pipeline and its reason names the pipeline run.
    """
    from prodml.serving import endpoints as eps

    ref = version.get("ref") if isinstance(version, dict) else version
    if isinstance(version, dict) and ref is None and "model" in version:
        ref = f"{version['model']}/{version['version']}"
    if not isinstance(ref, str):
        raise InvalidInputError("version", version, "must be register's output or a model "
                                "reference such as loan/3")
    if guards is not None:
        _check_guards(guards)
    store = step_store()
    used = strategy
    try:
        eps.get_endpoint(endpoint, store=store)
    except NotFoundError:
        used = "direct"
    context = current()
    pipeline = _pipeline_name()
    actor = f"pipeline:{pipeline}" if pipeline else None
    if reason is None and context is not None:
        reason = f"pipeline {pipeline} run {context.context_id}: {strategy} {ref}"
    options = {"percent": percent, "steps": steps, "step_every_requests": step_every_requests,
               "step_every_seconds": step_every_seconds, "routing_key": routing_key,
               "guards": guards, "mode": mode, "threshold": threshold, "smoke": smoke}
    live = eps.deploy(endpoint, ref, used, reason=reason, actor=actor, store=store,
                      **(options if used != "direct" else {"mode": mode, "threshold": threshold}))
    if used != strategy:
        print(f"deploy: endpoint {endpoint} is new: {ref} deployed directly, not by {strategy}")
    out = {"endpoint": live.name, "revision": live.revision, "model": ref, "strategy": used,
           "asked": strategy, "summary": live.describe()}
    annotate(type="Deployment", name=f"{live.name} r{live.revision}", properties={
        "endpoint": live.name, "revision": live.revision, "deployed": ref, "strategy": used,
        "asked": strategy})
    print(f"deploy: {live.name} revision {live.revision}: {live.describe()}")
    return out
