"""Monitoring: what happened in a window of the prediction log, and whether to say so.

The computations here are pure (frames and arrays in, typed results or ``{name: float}``
series out) and import nothing from the store; the runner reads windows of the log, calls
them and stores what they return.

- :mod:`~prodml.monitoring.window_metrics`: software, input, output and custom metrics;
- :mod:`~prodml.monitoring.drift_checks`: data drift (``prodml.drift``) and prior shift;
- :mod:`~prodml.monitoring.performance`: realised performance and CBPE estimates;
- :mod:`~prodml.monitoring.concept_drift`: the confidence test and River's detectors over
  the error stream; :mod:`~prodml.monitoring.change_kind`: sudden, gradual or recurrent;
- :mod:`~prodml.monitoring.thresholds` and :mod:`~prodml.monitoring.alerts`: static and
  adaptive thresholds, rules and the ok → firing → resolved state machine;
- :mod:`~prodml.monitoring.spec`: the monitor's declaration (YAML or Python);
- :mod:`~prodml.monitoring.runner` (with :mod:`~prodml.monitoring.window_checks`): runs a
  monitor over the prediction log, incrementally; :mod:`~prodml.monitoring.store` keeps
  monitors, series and alerts; :mod:`~prodml.monitoring.sinks` sends alerts and runs
  actions; :mod:`~prodml.monitoring.scheduler` runs monitors on a schedule.

Names load on first use, as ``prodml``'s do, so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    # window metrics
    "measure_window": "window_metrics", "software_metrics": "window_metrics",
    "input_metrics": "window_metrics", "output_metrics": "window_metrics",
    "custom_metrics": "window_metrics", "class_shares": "window_metrics",
    "feature_columns": "window_metrics",
    # drift
    "window_drift": "drift_checks", "prior_shift": "drift_checks",
    "PriorShift": "drift_checks", "drift_series": "drift_checks",
    # performance
    "realised_performance": "performance", "RealisedPerformance": "performance",
    "estimate_performance": "performance", "EstimatedPerformance": "performance",
    "Calibrator": "performance",
    # concept drift
    "confidence_shift": "concept_drift", "ConfidenceShift": "concept_drift",
    "ErrorStreamMonitor": "concept_drift", "error_stream": "concept_drift",
    "detection_delay": "concept_drift", "DetectionDelay": "concept_drift",
    "classify_change": "change_kind", "ChangeFinding": "change_kind",
    # thresholds and alerts
    "StaticThreshold": "thresholds", "AdaptiveThreshold": "thresholds",
    "threshold_from_dict": "thresholds",
    "AlertRule": "alerts", "AlertState": "alerts", "AlertEvent": "alerts",
    "update_alerts": "alerts",
    # declaration
    "MonitorSpec": "spec", "resolve_callable": "spec",
    # in the store: monitors, their series and alerts; running them
    "save_monitor": "store", "get_monitor": "store", "list_monitors": "store",
    "delete_monitor": "store", "MonitorInfo": "store", "monitor_series": "store",
    "list_alerts": "store", "get_alert": "store", "ack_alert": "store", "Alert": "store",
    "run_monitor": "runner", "run_all": "runner", "MonitorRun": "runner",
    "register_action": "sinks", "unregister_action": "sinks",
    "parse_interval": "scheduler", "run_every": "scheduler",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'prodml.monitoring' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"prodml.monitoring.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
