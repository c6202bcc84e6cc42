"""``pm.steps``: the built-in pipeline steps, from data to a deployed model.

====================  ===========================================================================
step                  what it does and records
====================  ===========================================================================
``ingest``            CSV / Parquet / JSON-lines / Arrow file, or a SQL query: a DataFrame,
                      registered as a dataset version ("Dataset" artifact, ``dataset_digest``)
``profile``           the data's :class:`~prodml.data.profile.Profile` ("Profile")
``validate``          checks a schema; error anomalies stop the pipeline with their report
``split``             train / validation / test parts (``split_train_test``: train / test)
``training_data``     the retraining strategy: all rows, recent rows weighted, or recent only
``train``             the user's function in a tracked run, with the data it used ("Model")
``evaluate_gate``     evaluation vs. a baseline on slices and fairness; a failed gate stops
``register``          the registry's next version, with its run and verdict ("ModelVersion")
``deploy``            direct, shadow, canary with guards, or blue-green ("Deployment")
====================  ===========================================================================

>>> import tempfile, pathlib, pandas as pd
>>> import prodml as pm
>>> path = pathlib.Path(tempfile.mkdtemp()) / "loans.csv"
>>> pd.DataFrame({"t": pd.date_range("2026-01-01", periods=6, freq="D"),
...               "x": range(6), "y": [0, 1] * 3}).to_csv(path, index=False)
>>> @pm.pipeline
... def recent(source: str = str(path)):
...     raw = pm.steps.ingest(pm.pipelines.Source(source))
...     return pm.steps.training_data(raw, strategy="recent", time_column="t", window="2d")
>>> run = recent.run()
>>> run.status, len(run.output("training_data"))
('succeeded', 3)
>>> run.step("ingest").output().type
'Dataset'
"""

from __future__ import annotations

from prodml.pipelines.steps_data import (StepStoppedError, ingest, profile, split,
                                         split_train_test, training_data, validate)
from prodml.pipelines.steps_model import GateOutcome, deploy, evaluate_gate, register, train

__all__ = ["GateOutcome", "StepStoppedError", "deploy", "evaluate_gate", "ingest", "profile",
           "register", "split", "split_train_test", "train", "training_data", "validate"]
