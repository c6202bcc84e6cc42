"""Alerts that start pipelines: the loop from a production monitor back to a new model.

A monitor's alert rule lists ``actions`` to run when it fires. A pipeline is one of them in
either of two ways:

- by a name registered here: ``pm.pipelines.on_alert("retrain", pipeline, params=...)``,
  then ``actions: [retrain]``; ``params`` is a dict or a function of the alert;
- by its target: ``actions: ["pipeline:path/to/file.py:name"]`` (or ``pipeline:module:name``),
  nothing to register, so it works in any process that runs the monitors.

Either way the pipeline's parameters named ``alert_id``, ``endpoint``, ``monitor`` or
``rule`` get the alert's values (given params win), the run is recorded with
``triggered_by="alert:<id>"``, and the action's report on the alert names the run: ``ok`` when
the run succeeded or waits for an approval, not ok (with the failing step's error) when it
failed, e.g. when the retrained model did not pass its gate. The pipeline runs inside the
monitor's run, in the store the monitor runs on.

>>> import prodml as pm
>>> @pm.step
... def note(endpoint: str) -> str:
...     return f"retrain {endpoint}"
>>> @pm.pipeline(name="doc-retrain")
... def retrain(endpoint: str = "", alert_id: int = 0):
...     return note(endpoint)
>>> on_alert("doc-retrain", retrain)
>>> from prodml.monitoring.sinks import registered_actions
>>> "doc-retrain" in registered_actions()
True
>>> alert_params(retrain, type("Alert", (), {"id": 7, "endpoint": "loans", "monitor": "m",
...                                          "rule": "drift"})())
{'endpoint': 'loans', 'alert_id': 7}
>>> from prodml.monitoring.sinks import unregister_action
>>> unregister_action("doc-retrain")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from prodml.errors import InvalidInputError, ProdmlError
from prodml.pipelines.pipeline import Pipeline

if TYPE_CHECKING:
    from prodml.monitoring.store import Alert
    from prodml.pipelines.results import PipelineRun
    from prodml.store import Store

PREFIX = "pipeline:"
ALERT_FIELDS = {"alert_id": "id", "endpoint": "endpoint", "monitor": "monitor", "rule": "rule"}
Params = Mapping[str, Any] | Callable[["Alert"], Mapping[str, Any]] | None


class PipelineRunFailedError(ProdmlError):
    """A pipeline an alert started ran and failed; the message names the run and the step."""


def alert_params(pipeline: Pipeline, alert: Alert) -> dict[str, Any]:
    """The pipeline's parameters that the alert fills (see the module docstring)."""
    return {name: getattr(alert, ALERT_FIELDS[name]) for name in pipeline.params
            if name in ALERT_FIELDS}


def start_from_alert(pipeline: Pipeline | str, alert: Alert, *, store: Store | None = None,
                     params: Params = None, engine: str = "local",
                     cache: bool = True) -> PipelineRun:
    """Run ``pipeline`` (or the one a ``file.py:name`` / ``module:name`` target names) for
    ``alert``; returns the run. Raises :class:`PipelineRunFailedError` when it failed."""
    if isinstance(pipeline, str):
        from prodml.pipelines.loading import load_pipeline

        pipeline = load_pipeline(pipeline)
    given = params(alert) if callable(params) else params
    if given is not None and not isinstance(given, Mapping):
        raise InvalidInputError("params", type(given).__name__,
                                "must be a mapping of parameter names to values")
    values = {**alert_params(pipeline, alert), **dict(given or {})}
    run = pipeline.run(params=values, store=store, engine=engine,  # type: ignore[arg-type]
                       cache=cache, triggered_by=f"alert:{alert.id}")
    if run.status == "failed":
        raise PipelineRunFailedError(
            f"pipeline {pipeline.name} run {run.id} failed: {run.error}", field="pipeline",
            value=pipeline.name, rule="the pipeline an alert starts must succeed")
    return run


def report(run: PipelineRun) -> str:
    """The line the alert keeps about the run it started."""
    line = f"started pipeline {run.pipeline} run {run.id}: {run.status}"
    if run.waiting_for:
        line += f" (waiting for approval of {', '.join(run.waiting_for)})"
    return line


class AlertPipeline:
    """An alert action that runs a pipeline (what :func:`on_alert` registers)."""

    takes_store = True  # sinks pass the monitor's store to actions that say so

    def __init__(self, pipeline: Pipeline | str, *, params: Params = None,
                 engine: str = "local", cache: bool = True) -> None:
        self.pipeline, self.params, self.engine, self.cache = pipeline, params, engine, cache

    def __call__(self, alert: Alert, store: Store | None = None) -> str:
        return report(start_from_alert(self.pipeline, alert, store=store, params=self.params,
                                       engine=self.engine, cache=self.cache))

    def __repr__(self) -> str:
        name = self.pipeline if isinstance(self.pipeline, str) else self.pipeline.name
        return f"<alert action: pipeline {name}>"


def on_alert(name: str, pipeline: Pipeline | str, *, params: Params = None,
             engine: str = "local", cache: bool = True) -> None:
    """Register alert action ``name``: when a rule listing it fires, run ``pipeline``.

    ``params`` (a dict, or a function of the alert returning one) override the pipeline's
    defaults and the alert's own values; ``engine`` and ``cache`` are as in
    :meth:`Pipeline.run`.
    """
    from prodml.monitoring.sinks import register_action

    if not isinstance(pipeline, (Pipeline, str)):
        raise InvalidInputError("pipeline", type(pipeline).__name__,
                                "must be a @pm.pipeline or a 'file.py:name' target")
    if params is not None and not (callable(params) or isinstance(params, Mapping)):
        raise InvalidInputError("params", type(params).__name__,
                                "must be a dict or a function of the alert")
    register_action(name, AlertPipeline(pipeline, params=params, engine=engine, cache=cache))


def run_target(action: str, alert: Alert, store: Store | None) -> str:
    """The ``pipeline:TARGET`` alert action (called by the monitoring sinks)."""
    target = action.removeprefix(PREFIX)
    if not target:
        raise InvalidInputError("action", action, "give pipeline:file.py:name or "
                                "pipeline:module:name")
    return report(start_from_alert(target, alert, store=store))
