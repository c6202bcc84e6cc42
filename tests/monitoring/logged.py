"""Putting a known-truth stream into a real store: a registered model with its training
profile, an endpoint, predictions written through the prediction log, labels as feedback."""

from __future__ import annotations

from typing import Any

import polars as pl

from prodml.serving import endpoints as eps
from prodml.serving.feedback import record_feedback
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
from prodml.tracking import registry
from tests.monitoring.streams import FEATURES

ENDPOINT = "agr"
CALLS: list[Any] = []  # what the callable action below received
BOOM_AFTER = [float("inf")]  # the custom metric below fails on windows after this time


def exploding_metric(frame: pl.DataFrame) -> float:
    """A custom metric that fails on windows that start after ``BOOM_AFTER[0]``."""
    if frame["time"].min() > BOOM_AFTER[0]:
        raise RuntimeError("the metric broke")
    return float(frame.height)


def remember(alert: Any) -> str:
    CALLS.append(alert)
    return f"remembered alert {alert.id}"


def register_and_deploy(store: Any, model: Any, *, endpoint: str = ENDPOINT,
                        fallback: str | None = None) -> str:
    """Register the stream's tree with its training profile (features and label) and deploy
    it; returns the version's reference."""
    training = model.training.to_pandas()
    version = registry.register(endpoint, model.tree, input_example=training[list(FEATURES)],
                                training_data=training, store=store)
    eps.deploy(endpoint, version.ref, store=store, fallback=fallback, reason="serve")
    return version.ref


def log_rows(store: Any, frame: pl.DataFrame, *, endpoint: str = ENDPOINT, version: int = 1,
             route: str = "primary") -> list[str]:
    """Write ``frame`` (as ``Model.predict`` gives it) into the prediction log; the ids."""
    records = [PredictionRecord(
        new_prediction_id(), row["time"], endpoint, endpoint, version, route, 1, None,
        {f: row[f] for f in FEATURES}, row["prediction"],
        {"0": 1 - row["proba_1"], "1": row["proba_1"]}, row["confidence"], row["latency_ms"],
        row["status"]) for row in frame.iter_rows(named=True)]
    log = PredictionLog(store)
    try:
        for start in range(0, len(records), 2048):
            log.write_sync(records[start:start + 2048])
    finally:
        log.close()
    return [r.id for r in records]


def post_labels(store: Any, ids: list[str], labels: Any) -> None:
    record_feedback([{"prediction_id": i, "label": int(y)} for i, y in zip(ids, labels)],
                    store=store)
