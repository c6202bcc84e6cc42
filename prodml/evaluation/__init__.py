"""Evaluation: metrics overall and per slice, bootstrap intervals, fairness, baselines, gates.

Pure computation over dataframes and arrays (no store): ``evaluate(model_or_predictions, data,
label=..., slices=..., protected=...)`` returns an :class:`EvaluationResult` that prints,
renders as HTML, compares with another and round-trips through ``to_dict``/``from_dict``.
"""

from prodml.evaluation.audit import AuditReport, Check, CheckResult, audit, load_checks
from prodml.evaluation.baselines import (HumanLevelPerformance, LabelerScore,
                                         human_level_performance, quick_baseline)
from prodml.evaluation.error_analysis import (ErrorAnalysis, TagGap, error_analysis, slice_masks,
                                              tag_examples)
from prodml.evaluation.evaluate import (EvaluationComparison, EvaluationResult, SliceMetrics,
                                        evaluate)
from prodml.evaluation.fairness import FairnessReport, fairness_report
from prodml.evaluation.gates import Blessing, GateSpec, gate
from prodml.evaluation.importance import (FeatureImportance, ImportanceReport, LearningCurve,
                                          learning_curve, permutation_importance)
from prodml.evaluation.metrics import ConfusionMatrix

__all__ = ["AuditReport", "Blessing", "Check", "CheckResult", "ConfusionMatrix", "ErrorAnalysis",
           "EvaluationComparison", "EvaluationResult", "FairnessReport", "FeatureImportance",
           "GateSpec", "HumanLevelPerformance", "ImportanceReport", "LabelerScore",
           "LearningCurve", "SliceMetrics", "TagGap", "audit", "error_analysis", "evaluate",
           "fairness_report", "gate", "human_level_performance", "learning_curve",
           "load_checks", "permutation_importance", "quick_baseline", "slice_masks",
           "tag_examples"]
