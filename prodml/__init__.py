"""prodml: machine learning in production, in one package.

>>> import prodml as pm
>>> with pm.start_run(experiment="quickstart", params={"C": 1.0}) as run:
...     run.log_metric("f1", 0.91)
>>> [r.metrics["f1"] for r in pm.runs.search("metrics.f1 > 0.9")]
[0.91]
"""

from prodml.data.drift import (ColumnDrift, DomainClassifierReport, DriftReport, KeySkewReport,
                               domain_classifier, drift, skew_by_key)
from prodml.data.profile import Profile, profile
from prodml.data.schema import ColumnSchema, Schema, infer_schema
from prodml.data.split import SplitResult, SplitWarning, split
from prodml.data.validate import Anomaly, ValidationResult, validate
from prodml.evaluation import (Blessing, Check, EvaluationResult, GateSpec, audit,
                               error_analysis, evaluate, gate, human_level_performance,
                               learning_curve, permutation_importance, quick_baseline)
from prodml.errors import (ArtifactIntegrityError, InvalidInputError, NotFoundError,
                           ParamChangedError, ProdmlError, QuerySyntaxError,
                           StoreUnavailableError)
from prodml.store import Store, get_store, open_store
from prodml.tracking import registry as models
from prodml.tracking import runs
from prodml.tracking.runs import Run, start_run
from prodml.tracking.signature import Signature

__version__ = "0.1.0"

__all__ = ["Anomaly", "ColumnSchema", "Profile", "Schema", "ValidationResult", "infer_schema",
           "profile", "validate", "SplitResult", "SplitWarning", "split", "ColumnDrift",
           "DomainClassifierReport", "DriftReport", "KeySkewReport", "domain_classifier",
           "drift", "skew_by_key", "Blessing", "Check", "EvaluationResult", "GateSpec",
           "audit", "error_analysis", "evaluate", "gate", "human_level_performance",
           "learning_curve", "permutation_importance", "quick_baseline", "ArtifactIntegrityError", "InvalidInputError", "NotFoundError", "ParamChangedError",
           "ProdmlError", "QuerySyntaxError", "Run", "Signature", "Store",
           "StoreUnavailableError", "get_store", "models", "open_store", "runs", "start_run"]
