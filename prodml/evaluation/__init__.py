"""Evaluation: metrics overall and per slice, bootstrap intervals, fairness, baselines, gates.

Pure computation over dataframes and arrays (no store): ``evaluate(model_or_predictions, data,
label=..., slices=..., protected=...)`` returns an :class:`EvaluationResult` that prints,
renders as HTML, compares with another and round-trips through ``to_dict``/``from_dict``.
"""

from prodml.evaluation.evaluate import (EvaluationComparison, EvaluationResult, SliceMetrics,
                                        evaluate)
from prodml.evaluation.fairness import FairnessReport, fairness_report
from prodml.evaluation.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix", "EvaluationComparison", "EvaluationResult", "FairnessReport",
           "SliceMetrics", "evaluate", "fairness_report"]
