"""Plain Python models for registry tests (importable, so pickle can find them)."""

import numpy as np


class ThresholdRule:
    """A rules-based 'model': approve when the salary exceeds a threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, X):
        return (np.asarray(X["salary"]) > self.threshold).astype(int)
