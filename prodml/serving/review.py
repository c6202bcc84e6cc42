"""The human review queue: cases the model should not decide alone.

Under partial automation a prediction below the confidence threshold is logged with status
``review``; the prediction log opens its review item in the same transaction, so a case is
never answered without being queued. A person resolves it (``prodml review resolve`` or the
API); the resolution and the person's label (as feedback with source ``review``) are
committed together, and resolving an item twice is refused.

>>> from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
>>> pid = new_prediction_id()
>>> log = PredictionLog(get_store())
>>> log.write_sync([PredictionRecord(pid, now_ms(), "loans", "loan", 1, "human", 3, None,
...     {"age": 19, "salary": 18000}, "reject", {"approve": 0.45, "reject": 0.55}, 0.55, 4.0,
...     "review")])
>>> log.close()
>>> [(item.prediction_id == pid, item.suggestion, item.confidence) for item in list_reviews()]
[(True, 'reject', 0.55)]
>>> resolve_review(pid, "approve", "dana").status
'resolved'
>>> list_reviews()
[]
>>> resolve_review(pid, "reject", "sam")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: review='...': review item 1 (prediction ...) was already \
resolved by 'dana' at ...
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving.feedback import endpoint_pii, label_json
from prodml.serving.log_payload import mask_json, to_json
from prodml.serving.log_reader import inputs_of
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t

STATUSES = ("open", "resolved")
_PREDICTION_ID = re.compile(r"[0-9a-f]{32}")
_REVIEW_ID = re.compile(r"[0-9]{1,30}")  # ASCII digits only: "²".isdigit() is true


@dataclass(frozen=True)
class ReviewItem:
    """One case in the queue, with the model's suggestion and, once resolved, the label."""

    id: int
    prediction_id: str
    endpoint: str
    created_at: int
    status: str  # open, resolved
    suggestion: Any
    confidence: float | None
    resolved_at: int | None = None
    resolver: str | None = None
    label: Any = None
    inputs: dict[str, Any] | None = None  # when asked for (list_reviews(with_inputs=True))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_review(conn_or_store: Connection | Store, prediction_id: str, endpoint: str,
                suggestion: Any, confidence: float | None) -> int:
    """Queue a logged prediction for a person; returns the review item's id.

    Takes a connection (to join a transaction already open) or a store (its own). Raises
    ``NotFoundError`` if the prediction is not logged and ``InvalidInputError`` if it
    already has a review item.
    """
    if isinstance(conn_or_store, Store):
        with conn_or_store.write() as conn:
            return _open(conn, prediction_id, endpoint, suggestion, confidence)
    return _open(conn_or_store, prediction_id, endpoint, suggestion, confidence)


def _open(conn: Connection, prediction_id: str, endpoint: str, suggestion: Any,
          confidence: float | None) -> int:
    r = t.review_items
    if conn.execute(select(t.predictions.c.id).where(t.predictions.c.id == prediction_id)
                    ).first() is None:
        raise NotFoundError("prediction", prediction_id)
    existing = conn.execute(select(r.c.id, r.c.status).where(r.c.prediction_id == prediction_id)
                            ).first()
    if existing is not None:
        raise InvalidInputError("prediction_id", prediction_id,
                                f"already has review item {existing.id} ({existing.status})")
    return conn.execute(r.insert().values(
        prediction_id=prediction_id, endpoint=endpoint, created_at=now_ms(), status="open",
        suggestion=to_json(suggestion), confidence=confidence)).inserted_primary_key[0]


def list_reviews(endpoint: str | None = None, status: str | None = "open", *,
                 limit: int | None = None, with_inputs: bool = False,
                 store: Store | None = None) -> list[ReviewItem]:
    """Review items, oldest first; ``status=None`` (or ``"all"``) lists every status."""
    if status == "all":
        status = None
    if status is not None and status not in STATUSES:
        raise InvalidInputError("status", status, "must be 'open', 'resolved' or 'all'")
    store = store or get_store()
    r, p = t.review_items, t.predictions
    statement = (select(r, p.c.batch_id, p.c.row)
                 .join(p, p.c.id == r.c.prediction_id, isouter=True).order_by(r.c.id))
    if endpoint is not None:
        statement = statement.where(r.c.endpoint == endpoint)
    if status is not None:
        statement = statement.where(r.c.status == status)
    if limit is not None:
        statement = statement.limit(limit)
    with store.read() as conn:
        rows = conn.execute(statement).mappings().all()
        inputs = (inputs_of(conn, [(row["prediction_id"], row["batch_id"], row["row"])
                                   for row in rows]) if with_inputs else {})
    return [_item(row, inputs.get(row["prediction_id"]) if with_inputs else None)
            for row in rows]


def resolve_review(review_id_or_prediction_id: int | str, label: Any, resolver: str, *,
                   store: Store | None = None) -> ReviewItem:
    """Record a person's answer: the item is resolved and ``label`` becomes feedback (source
    ``review``), both in one transaction. Resolving an item twice is refused."""
    key = review_id_or_prediction_id
    text = label_json(label, "label")
    if not isinstance(resolver, str) or not 0 < len(resolver) <= 255:
        raise InvalidInputError("resolver", resolver, "must be a name (1 to 255 characters)")
    r = t.review_items
    number = int(key) if isinstance(key, str) and _REVIEW_ID.fullmatch(key) else key
    if isinstance(key, str) and _PREDICTION_ID.fullmatch(key):
        which = r.c.prediction_id == key
    elif isinstance(number, int) and not isinstance(number, bool):
        if not 0 < number < 2 ** 63:  # no such row: ids are positive 64-bit integers
            raise NotFoundError("review item", key)
        which = r.c.id == number
    else:
        raise InvalidInputError("review", key, "must be a review id (a number) or a "
                                               "prediction id (32 hex characters)")
    store = store or get_store()
    now = now_ms()
    if text[:1] in ("{", "["):  # an object label may carry the endpoint's PII columns
        with store.read() as conn:
            endpoint = conn.execute(select(r.c.endpoint).where(which)).scalar()
        if endpoint is not None:
            text = mask_json(text, endpoint_pii(endpoint, store))  # type: ignore[assignment]
    with store.write() as conn:
        row = conn.execute(select(r).where(which)).mappings().first()
        if row is None:
            raise NotFoundError("review item", key)
        done = 0
        if row["status"] == "open":
            done = conn.execute(update(r).where(r.c.id == row["id"], r.c.status == "open")
                                .values(status="resolved", resolved_at=now, resolver=resolver,
                                        label=text)).rowcount
        if done != 1:
            current = conn.execute(select(r).where(r.c.id == row["id"])).mappings().one()
            raise InvalidInputError(
                "review", key, f"review item {row['id']} (prediction {row['prediction_id']}) "
                f"was already resolved by {current['resolver']!r} at {_when(current)} "
                f"with label {current['label']}")
        conn.execute(t.feedback.insert().values(prediction_id=row["prediction_id"],
                                                kind="label", name=None, value=text, time=now,
                                                source="review", actor=resolver))
    return _item({**row, "status": "resolved", "resolved_at": now, "resolver": resolver,
                  "label": text}, None)


def _when(row: Any) -> str:
    from datetime import UTC, datetime

    if row["resolved_at"] is None:
        return "an unknown time"
    return datetime.fromtimestamp(row["resolved_at"] / 1000, tz=UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def _item(row: Any, inputs: dict[str, Any] | None) -> ReviewItem:
    return ReviewItem(id=row["id"], prediction_id=row["prediction_id"],
                      endpoint=row["endpoint"], created_at=row["created_at"],
                      status=row["status"], suggestion=_decode(row["suggestion"]),
                      confidence=row["confidence"], resolved_at=row["resolved_at"],
                      resolver=row["resolver"], label=_decode(row["label"]), inputs=inputs)


def _decode(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)
