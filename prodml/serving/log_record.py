"""One logged prediction: its id, its fields, and the row the ``predictions`` table holds.

>>> record = PredictionRecord(
...     id=new_prediction_id(), time=1, endpoint="loans", model_name="loan", model_version=2,
...     route="primary", revision=1, routing_key=None, inputs={"age": 41},
...     prediction="approve", probabilities=None, confidence=float("nan"), latency_ms=3.5,
...     status="ok")
>>> row = prediction_row(record, None)
>>> row["prediction"], row["confidence"], row["model_version"]
('"approve"', None, 2)
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from prodml.serving import log_payload

log = logging.getLogger("prodml.serving.prediction_log")


def new_prediction_id() -> str:
    """32 hex characters: the time in ms (12) then 80 random bits (20).

    Ids sort by creation time (to the millisecond; within one process strictly, as ids of
    the same millisecond count up from a random start) and are unique across processes and
    machines without coordination.

    >>> a, b = new_prediction_id(), new_prediction_id()
    >>> len(a), a < b
    (32, True)
    """
    global _last_ms, _last_random
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        if ms <= _last_ms:  # same millisecond (or the clock stepped back): count up
            ms, _last_random = _last_ms, (_last_random + 1) & _RANDOM_MASK
        else:
            _last_ms, _last_random = ms, _random.getrandbits(79)
        return f"{ms:012x}{_last_random:020x}"


def _reseed() -> None:
    """A fresh generator, seeded from the OS (per process: a forked worker reseeds), so
    ids stay unique across processes without a system call per millisecond."""
    global _random, _last_ms
    _random, _last_ms = random.Random(os.urandom(32)), 0


_id_lock = threading.Lock()
_last_ms, _last_random = 0, 0
_random: random.Random
_RANDOM_MASK = (1 << 80) - 1
_reseed()
os.register_at_fork(after_in_child=_reseed)


@dataclass(slots=True)
class PredictionRecord:
    """One answered (or mirrored) request, as the log stores it."""

    id: str
    time: int  # ms since the epoch
    endpoint: str
    model_name: str | None
    model_version: int | None
    route: str  # primary, canary, shadow, fallback, human
    revision: int | None  # the endpoint revision that routed it
    routing_key: str | None
    inputs: dict[str, Any]  # one row of features
    prediction: Any  # JSON-able answer (class label, number, None)
    probabilities: dict[str, float] | None  # per class, when the model gives them
    confidence: float | None
    latency_ms: float
    status: str  # ok, error, timeout, review
    error: str | None = None
    parent_id: str | None = None  # a shadow's link to the answer that was returned
    # The inputs to store hashed: the endpoint's PII set when the record was made (the log
    # adds the set registered for the endpoint, so a change of set never unmasks a row).
    pii: frozenset[str] | None = None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number  # SQLite cannot hold NaN


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)  # NumPy integers too


ROW_KEYS = ("id", "time", "endpoint", "model_name", "model_version", "route", "revision",
             "routing_key", "prediction", "confidence", "latency_ms", "status", "error",
             "parent_id", "batch_id", "row")


def prediction_row(record: PredictionRecord, problems: list[str] | None,
                   pii: frozenset[str] = frozenset(), key: bytes | None = None
                   ) -> dict[str, Any]:
    """The ``predictions`` row of ``record``; what could not be stored is named in its
    ``error`` (with ``problems`` found serialising its inputs).

    The routing key is always stored hashed (:func:`~prodml.serving.log_payload.hash_pii`
    with ``key``): it exists to tell one caller from another (a customer, a user, an
    email), it may come from a header with no column to mark, and the log only ever needs
    it for equality, which the HMAC keeps. The values of the ``pii`` inputs are blanked
    out of the error text (a model's message may quote them).

    >>> record = PredictionRecord("a", 1, "e", None, None, "primary", 1, "u-17",
    ...     {"email": "ann@example.com"}, None, None, None, 1.0, "error",
    ...     error="ValueError: could not convert string to float: 'ann@example.com'")
    >>> row = prediction_row(record, None, frozenset({"email"}), key=b"k" * 32)
    >>> row["error"], len(row["routing_key"])
    ("ValueError: could not convert string to float: '<pii>'", 64)
    """
    notes = list(problems or ())
    try:
        prediction = log_payload.to_json(record.prediction)
    except TypeError as exc:
        prediction = None
        notes.append(f"prediction not logged: {exc}")
    error = record.error
    if notes:
        log.warning("prediction %s: %s", record.id, "; ".join(notes))
        error = "; ".join(([error] if error else []) + notes)
    if error and pii:
        error = scrub(error, record.inputs, pii)
    return {"id": record.id, "time": int(record.time), "endpoint": record.endpoint,
            "model_name": record.model_name, "model_version": _integer(record.model_version),
            "route": record.route, "revision": _integer(record.revision),
            "routing_key": None if record.routing_key is None else
            log_payload.hash_pii(record.routing_key, key=key), "prediction": prediction,
            "confidence": _number(record.confidence), "latency_ms": _number(record.latency_ms),
            "status": record.status, "error": error, "parent_id": record.parent_id,
            "batch_id": None, "row": None}


def scrub(text: str, inputs: Any, pii: frozenset[str]) -> str:
    """``text`` with the values of the ``pii`` inputs (as whole words) replaced by ``<pii>``.

    >>> scrub("bad value 'ann@x.io' (age 41)", {"email": "ann@x.io", "n": 4},
    ...       frozenset({"email", "n"}))
    "bad value '<pii>' (age 41)"
    """
    if not isinstance(inputs, dict):
        return text
    for name in pii:
        value = inputs.get(name)
        if value is None:
            continue
        shown = value if isinstance(value, str) else str(value)
        if shown and shown in text:
            text = re.sub(rf"(?<!\w){re.escape(shown)}(?!\w)", "<pii>", text)
    return text
