"""prodml: machine learning in production, in one package.

>>> import prodml as pm
>>> with pm.start_run(experiment="quickstart", params={"C": 1.0}) as run:
...     run.log_metric("f1", 0.91)
>>> [r.metrics["f1"] for r in pm.runs.search("metrics.f1 > 0.9")]
[0.91]

Names load on first use (PEP 562), so ``import prodml`` and every CLI command start without
paying for SciPy, scikit-learn or Plotly until a function needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from prodml.errors import (ArtifactIntegrityError, InvalidInputError,  # noqa: F401 (public)
                           NotFoundError, ParamChangedError, ProdmlError, QuerySyntaxError,
                           StoreUnavailableError)

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    # tracking and the store
    "start_run": ("prodml.tracking.runs", "start_run"),
    "Run": ("prodml.tracking.runs", "Run"),
    "runs": ("prodml.tracking.runs", None),
    "models": ("prodml.tracking.registry", None),
    "labels": ("prodml.tracking.annotations", None),
    "Signature": ("prodml.tracking.signature", "Signature"),
    "Store": ("prodml.store", "Store"),
    "get_store": ("prodml.store", "get_store"),
    "open_store": ("prodml.store", "open_store"),
    # data
    "profile": ("prodml.data.profile", "profile"),
    "Profile": ("prodml.data.profile", "Profile"),
    "infer_schema": ("prodml.data.schema", "infer_schema"),
    "Schema": ("prodml.data.schema", "Schema"),
    "ColumnSchema": ("prodml.data.schema", "ColumnSchema"),
    "validate": ("prodml.data.validate", "validate"),
    "ValidationResult": ("prodml.data.validate", "ValidationResult"),
    "Anomaly": ("prodml.data.validate", "Anomaly"),
    "split": ("prodml.data.split", "split"),
    "SplitResult": ("prodml.data.split", "SplitResult"),
    "SplitWarning": ("prodml.data.split", "SplitWarning"),
    "drift": ("prodml.data.drift", "drift"),
    "DriftReport": ("prodml.data.drift", "DriftReport"),
    "ColumnDrift": ("prodml.data.drift", "ColumnDrift"),
    "skew_by_key": ("prodml.data.skew", "skew_by_key"),
    "KeySkewReport": ("prodml.data.skew", "KeySkewReport"),
    "domain_classifier": ("prodml.data.skew", "domain_classifier"),
    "DomainClassifierReport": ("prodml.data.skew", "DomainClassifierReport"),
    # evaluation
    "evaluate": ("prodml.evaluation.evaluate", "evaluate"),
    "EvaluationResult": ("prodml.evaluation.evaluate", "EvaluationResult"),
    "gate": ("prodml.evaluation.gates", "gate"),
    "GateSpec": ("prodml.evaluation.gates", "GateSpec"),
    "Blessing": ("prodml.evaluation.gates", "Blessing"),
    "audit": ("prodml.evaluation.audit", "audit"),
    "Check": ("prodml.evaluation.audit", "Check"),
    "error_analysis": ("prodml.evaluation.error_analysis", "error_analysis"),
    "human_level_performance": ("prodml.evaluation.baselines", "human_level_performance"),
    "quick_baseline": ("prodml.evaluation.baselines", "quick_baseline"),
    "permutation_importance": ("prodml.evaluation.importance", "permutation_importance"),
    "learning_curve": ("prodml.evaluation.importance", "learning_curve"),
    # serving
    "serving": ("prodml.serving", None),
    "endpoints": ("prodml.serving.endpoints", None),
    "predict_batch": ("prodml.serving.batch", "predict_batch"),
    # monitoring
    "monitoring": ("prodml.monitoring", None),
    "MonitorSpec": ("prodml.monitoring.spec", "MonitorSpec"),
    "monitor": ("prodml.monitoring.store", "save_monitor"),
    "monitors": ("prodml.monitoring.store", "list_monitors"),
    "run_monitor": ("prodml.monitoring.runner", "run_monitor"),
    "run_monitors": ("prodml.monitoring.runner", "run_all"),
    "monitor_series": ("prodml.monitoring.store", "monitor_series"),
    "alerts": ("prodml.monitoring.store", "list_alerts"),
    "ack_alert": ("prodml.monitoring.store", "ack_alert"),
    # lineage
    "lineage": ("prodml.pipelines.lineage", "lineage"),
    "LineageGraph": ("prodml.pipelines.lineage_graph", "LineageGraph"),
    "rerun_affected": ("prodml.pipelines.lineage", "rerun_affected"),
    # pipelines
    "pipelines": ("prodml.pipelines", None),
    "step": ("prodml.pipelines.step", "step"),
    "pipeline": ("prodml.pipelines.pipeline", "pipeline"),
    "steps": ("prodml.pipelines.steps", None),
}

__all__ = sorted([*_LAZY, "ArtifactIntegrityError", "InvalidInputError", "NotFoundError",
                  "ParamChangedError", "ProdmlError", "QuerySyntaxError",
                  "StoreUnavailableError"])


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'prodml' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
