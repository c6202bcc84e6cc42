"""Pipelines: steps wired by their data, run locally or on Dask, every execution recorded.

>>> import prodml as pm
>>> @pm.step
... def square(x: int) -> int:
...     return x * x
>>> @pm.pipeline
... def squares(x: int = 3):
...     return square(x)
>>> run = squares.run(params={"x": 4})
>>> run.status, run.output("square")
('succeeded', 16)
>>> squares.run(params={"x": 4}).executions[0].status
'cached'

The records follow ML Metadata: contexts (a pipeline and its runs), executions (one per step
per run), artifacts (what steps read and wrote, by content digest) and events (which
execution read or wrote which artifact).
"""

from __future__ import annotations

import importlib
from typing import Any

from prodml.pipelines.pipeline import Pipeline, pipeline
from prodml.pipelines.step import Step, StepOutput, step

# name -> module; loaded on first use so that defining steps stays cheap
_LAZY = {
    "Source": "prodml.pipelines.source",
    "LoggedPredictions": "prodml.pipelines.log_source",
    "current": "prodml.pipelines.context",
    "StepContext": "prodml.pipelines.context",
    "approve": "prodml.pipelines.approvals",
    "reject": "prodml.pipelines.approvals",
    "resume": "prodml.pipelines.approvals",
    "runs": "prodml.pipelines.results",
    "get_run": "prodml.pipelines.results",
    "PipelineRun": "prodml.pipelines.results",
    "ExecutionInfo": "prodml.pipelines.results",
    "ArtifactInfo": "prodml.pipelines.results",
    "load_pipeline": "prodml.pipelines.loading",
    "on_alert": "prodml.pipelines.triggers",
}

__all__ = ["Pipeline", "Step", "StepOutput", "pipeline", "step", *_LAZY]  # noqa: PLE0604


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'prodml.pipelines' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
