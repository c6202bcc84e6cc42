"""Models that misbehave on purpose, for rehearsing rollbacks and shadows (chaos drills).

Wrap a real model to see what a deployment does when a candidate fails or stalls, before a
real one does: register the wrapper as a version, canary it, and watch the guard roll it
back. They pickle by reference to this module, so any prodml server can load them.

>>> from sklearn.dummy import DummyClassifier
>>> import pandas as pd
>>> X = pd.DataFrame({"x": [0.0, 1.0]})
>>> flaky = FlakyModel(DummyClassifier().fit(X, [0, 1]), failure_rate=1.0)
>>> flaky.predict(X)
Traceback (most recent call last):
...
RuntimeError: drill: injected failure
"""

from __future__ import annotations

import random
import time
from typing import Any


class FlakyModel:
    """Raises on a share ``failure_rate`` of calls, else answers like ``model``."""

    def __init__(self, model: Any, failure_rate: float = 0.2, seed: int | None = None) -> None:
        self.model = model
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_
        if hasattr(model, "feature_names_in_"):
            self.feature_names_in_ = model.feature_names_in_

    def _maybe_fail(self) -> None:
        if self._random.random() < self.failure_rate:
            raise RuntimeError("drill: injected failure")

    def predict(self, X: Any) -> Any:
        self._maybe_fail()
        return self.model.predict(X)

    def predict_proba(self, X: Any) -> Any:
        self._maybe_fail()
        return self.model.predict_proba(X)


class SlowModel:
    """Answers like ``model`` after sleeping ``delay_s`` seconds per call."""

    def __init__(self, model: Any, delay_s: float = 2.0) -> None:
        self.model = model
        self.delay_s = delay_s
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_
        if hasattr(model, "feature_names_in_"):
            self.feature_names_in_ = model.feature_names_in_

    def predict(self, X: Any) -> Any:
        time.sleep(self.delay_s)
        return self.model.predict(X)

    def predict_proba(self, X: Any) -> Any:
        time.sleep(self.delay_s)
        return self.model.predict_proba(X)
