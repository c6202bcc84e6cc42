"""Streams where the truth is known, built from River's Agrawal generator.

River's ConceptDriftStream mixes two generators with a sigmoid whose ``exp`` overflows on
long streams (see REFERENCES.md), so the changes are made here by taking rows from two
generators with different ``classification_function`` directly: at a position (sudden), with
a share that grows linearly over a stretch (gradual), or back and forth (recurrent).

The model is a depth-5 decision tree (leaves of at least 50 rows) trained on 3,000 rows of
the first concept; its probabilities are calibrated on 10,000 more (isotonic,
:class:`Calibrator`). Agrawal's ``perturbation`` adds noise to the features after the label is
drawn, so the model errs near its thresholds (about 5 % of predictions) and its
probabilities are not all 0 or 1. Smaller leaves give leaf frequencies so noisy that the
score is no longer monotone in the true positive rate; isotonic calibration then pools
leaves of different rates and CBPE's ROC AUC comes out optimistic (0.981 against a
realised 0.978 with leaves of one row); with 2,000 calibration rows the calibrator's own
error shows in the accuracy estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from river.datasets import synth
from sklearn.tree import DecisionTreeClassifier

from prodml.monitoring.performance import Calibrator

FEATURES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears",
            "loan")
PERTURBATION = 0.05
FIRST, SECOND = 0, 2  # Agrawal's classification functions: age bands; age and education


def agrawal(function: int, seed: int, n: int) -> pl.DataFrame:
    rows, labels = [], []
    for x, y in synth.Agrawal(classification_function=function, seed=seed,
                              perturbation=PERTURBATION).take(n):
        rows.append(x)
        labels.append(y)
    return pl.DataFrame(rows).select(FEATURES).with_columns(pl.Series("label", labels))


@dataclass
class Model:
    tree: DecisionTreeClassifier
    calibrator: Calibrator
    training: pl.DataFrame

    def predict(self, rows: pl.DataFrame, start_ms: int = 0, step_ms: int = 1000
                ) -> pl.DataFrame:
        """The rows as the prediction log holds them: time, status, prediction, confidence,
        proba_1, latency, the features and the label (with its arrival time)."""
        proba = self.tree.predict_proba(rows.select(FEATURES).to_numpy())[:, 1]
        n = rows.height
        rng = np.random.default_rng(n)
        time = start_ms + np.arange(n, dtype=np.int64) * step_ms
        return rows.with_columns(
            pl.Series("time", time),
            pl.Series("label_time", time + rng.integers(60_000, 3_600_000, n)),
            pl.Series("status", np.where(rng.random(n) < 0.01, "error", "ok")),
            pl.Series("latency_ms", rng.gamma(2.0, 4.0, n)),
            pl.Series("prediction", (proba >= 0.5).astype(np.int64)),
            pl.Series("confidence", np.maximum(proba, 1 - proba)),
            pl.Series("proba_1", proba))


def train_model(seed: int = 0) -> Model:
    training = agrawal(FIRST, seed, 3000)
    validation = agrawal(FIRST, seed + 100, 10_000)
    tree = DecisionTreeClassifier(max_depth=5, min_samples_leaf=50, random_state=0).fit(
        training.select(FEATURES).to_numpy(), training["label"].to_numpy())
    scores = tree.predict_proba(validation.select(FEATURES).to_numpy())[:, 1]
    return Model(tree, Calibrator.fit(scores, validation["label"].to_numpy()), training)


def sudden_with_covariate_shift(n: int = 20_000, change: int = 10_000, shift: int = 4_000
                                ) -> pl.DataFrame:
    """The concept changes at ``change``; from ``shift`` on, ``loan`` and ``commission`` move
    (neither concept nor the model uses them, so only the inputs change)."""
    rows = pl.concat([agrawal(FIRST, 1, change), agrawal(SECOND, 2, n - change)])
    moved = pl.int_range(0, n, eager=True) >= shift
    return rows.with_columns(
        pl.when(moved).then(pl.col("loan") + 150_000).otherwise(pl.col("loan")).alias("loan"),
        pl.when(moved).then(pl.col("commission") * 1.5).otherwise(pl.col("commission"))
        .alias("commission"))


def mixed(shares: np.ndarray, seed: int) -> pl.DataFrame:
    """Row i from the second concept with probability ``shares[i]``, else from the first."""
    n = shares.size
    second = np.random.default_rng(seed).random(n) < shares
    k = int(second.sum())
    rows = pl.concat([agrawal(FIRST, seed + 1, n - k), agrawal(SECOND, seed + 2, k)])
    order = np.empty(n, dtype=np.int64)
    order[~second] = np.arange(n - k)
    order[second] = n - k + np.arange(k)
    return rows[order]


def windows(frame: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    return [frame.slice(i, size) for i in range(0, frame.height, size)]


def toward_thresholds(n_before: int, n_after: int, seed: int = 7) -> pl.DataFrame:
    """The first concept throughout; after ``n_before`` rows the applicants are 36-44 or
    56-64 years old, where the first concept's thresholds (40, 60) lie and the model is least
    sure. Only the inputs move: the relation between inputs and labels is the same."""
    pool = agrawal(FIRST, seed, n_before + 4 * n_after)
    near = ((pl.col("age") - 40).abs() <= 4) | ((pl.col("age") - 60).abs() <= 4)
    before = pool.head(n_before)
    after = pool.slice(n_before).filter(near).head(n_after)
    assert after.height == n_after
    return pl.concat([before, after])
