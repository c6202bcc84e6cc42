"""Ground truth and outcome events that arrive after the prediction.

Feedback names a logged prediction by id and carries either a ``label`` (the true answer,
when it becomes known) or a named outcome ``event`` (``clicked``, ``redid_search``,
``switched_to_typing``...) with an optional numeric ``value`` (1 by default). Monitoring
reads them joined to the predictions (``read_predictions``): the latest label wins, and
each event becomes a column of per-prediction sums, so click-through rate is a mean.

A call is all-or-nothing: every item is checked (its shape, then that its prediction is in
the log) before anything is written, and the first problem is raised naming the item.

>>> import asyncio
>>> from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
>>> pid = new_prediction_id()
>>> log = PredictionLog(get_store())
>>> log.write_sync([PredictionRecord(pid, now_ms(), "search", None, None, "primary", None,
...     None, {"query": "red shoes"}, "result-7", None, 0.7, 2.0, "ok")])
>>> log.close()
>>> record_feedback([{"prediction_id": pid, "event": "clicked"},
...                  {"prediction_id": pid, "label": "result-7"}])
2
>>> record_feedback([{"prediction_id": pid, "label": "result-3"},
...                  {"prediction_id": "0" * 32, "label": "result-1"}])
Traceback (most recent call last):
...
prodml.errors.NotFoundError: prediction '00000000000000000000000000000000' not found: \
items[1] names no logged prediction; nothing was recorded
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, select

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving.log_payload import mask_json, to_json
from prodml.serving.log_reader import FEEDBACK_COLUMNS, LOG_COLUMNS, PROBABILITY_PREFIX
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t

FIELDS = ("prediction_id", "label", "event", "value")
SOURCES_MAX = 64
_CHUNK = 500
_RESERVED = frozenset(LOG_COLUMNS) | frozenset(FEEDBACK_COLUMNS)


def record_feedback(items: Mapping[str, Any] | Iterable[Mapping[str, Any]], *,
                    source: str = "api", actor: str | None = None,
                    store: Store | None = None) -> int:
    """Record labels and outcome events for logged predictions; returns how many.

    Each item is ``{"prediction_id", "label"}`` or ``{"prediction_id", "event"[, "value"]}``.
    ``actor`` is who gave them (the server passes the caller's token name), kept with each
    row so that lineage from a prediction reaches the person who labelled it.
    """
    rows = validate_feedback(items)
    return write_feedback(rows, source=source, actor=actor, store=store)


def validate_feedback(items: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                      where: Callable[[int], str] = lambda i: f"items[{i}]"
                      ) -> list[dict[str, Any]]:
    """Check every item's shape; the rows to insert (without time and source).

    ``where(i)`` names item ``i`` in errors (``items[3]``, or a file's row).
    """
    if isinstance(items, Mapping):
        items = [items]
    elif isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InvalidInputError("items", type(items).__name__,
                                "must be an object or a list of objects")
    rows = []
    for i, item in enumerate(items):
        name = where(i)
        if not isinstance(item, Mapping):
            raise InvalidInputError(name, item, "must be an object with prediction_id and a "
                                                "label or an event")
        for key in item:
            if key not in FIELDS:
                raise InvalidInputError(f"{name}.{key}", item[key],
                                        "unknown field: expected prediction_id and label, or "
                                        "prediction_id, event and an optional value")
        rows.append(_row(item, name))
    return rows


def _row(item: Mapping[str, Any], name: str) -> dict[str, Any]:
    pid = item.get("prediction_id")
    if not isinstance(pid, str) or not 0 < len(pid) <= 32:
        raise InvalidInputError(f"{name}.prediction_id", pid,
                                "must be a prediction id (a string of 1 to 32 characters)")
    has_label, has_event = "label" in item, "event" in item
    if has_label == has_event:
        raise InvalidInputError(name, dict(item), "must have either a label or an event "
                                                  "(not both, not neither)")
    if has_label:
        if "value" in item:
            raise InvalidInputError(f"{name}.value", item["value"],
                                    "only an event takes a value; a label is its own value")
        return {"prediction_id": pid, "kind": "label", "name": None,
                "value": label_json(item["label"], f"{name}.label")}
    event = item["event"]
    if not isinstance(event, str) or not 0 < len(event) <= 255:
        raise InvalidInputError(f"{name}.event", event,
                                "must be an event name (a string of 1 to 255 characters)")
    if event in _RESERVED or event.startswith(PROBABILITY_PREFIX):
        raise InvalidInputError(f"{name}.event", event,
                                "is a column of the prediction log; choose another name")
    value = item.get("value", 1)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{name}.value", value, "must be a finite number")
    return {"prediction_id": pid, "kind": "event", "name": event, "value": to_json(value)}


def label_json(label: Any, field: str) -> str:
    """A label's JSON text, or an error naming ``field``: not null, not NaN, JSON-able."""
    if label is None:
        raise InvalidInputError(field, None, "must not be null")
    if isinstance(label, float) and not math.isfinite(label):
        raise InvalidInputError(field, label, "must be a finite number")
    try:
        text = to_json(label)
    except TypeError:
        raise InvalidInputError(field, repr(label), "must be JSON: a string, number, boolean, "
                                                    "list or object") from None
    assert text is not None
    return text


def write_feedback(rows: list[dict[str, Any]], *, source: str = "api",
                   actor: str | None = None, store: Store | None = None,
                   where: Callable[[int], str] = lambda i: f"items[{i}]") -> int:
    """Insert validated rows in one transaction, if every prediction they name is logged."""
    if not isinstance(source, str) or not 0 < len(source) <= SOURCES_MAX:
        raise InvalidInputError("source", source, f"must be 1 to {SOURCES_MAX} characters")
    if not rows:
        return 0
    store = store or get_store()
    now = now_ms()
    _mask_labels(rows, store)
    with store.write() as conn:
        check_predictions_exist(conn, [r["prediction_id"] for r in rows], where)
        conn.execute(t.feedback.insert(), [{**r, "time": now, "source": source, "actor": actor}
                                         for r in rows])
    return len(rows)


def _mask_labels(rows: list[dict[str, Any]], store: Store) -> None:
    """Hash the values under PII names in object labels, as their endpoint's log does."""
    framed = [r for r in rows if r["kind"] == "label" and r["value"][:1] in ("{", "[")]
    if not framed:
        return
    ids = sorted({r["prediction_id"] for r in framed})
    endpoints: dict[str, str] = {}
    with store.read() as conn:
        for start in range(0, len(ids), _CHUNK):
            endpoints.update(conn.execute(
                select(t.predictions.c.id, t.predictions.c.endpoint)
                .where(t.predictions.c.id.in_(ids[start:start + _CHUNK]))).all())
    masks: dict[str, frozenset[str]] = {}
    for row in framed:
        endpoint = endpoints.get(row["prediction_id"])
        if endpoint is None:  # refused below, with the item named
            continue
        if endpoint not in masks:
            masks[endpoint] = endpoint_pii(endpoint, store)
        row["value"] = mask_json(row["value"], masks[endpoint])


def endpoint_pii(endpoint: str, store: Store) -> frozenset[str]:
    """The PII set that labels of ``endpoint``'s predictions obey (empty for an endpoint
    that is gone: its policy is unknown)."""
    from prodml.serving.endpoints import pii_columns

    try:
        return pii_columns(endpoint, store=store)
    except NotFoundError:
        return frozenset()


def check_predictions_exist(conn: Connection, ids: list[str],
                            where: Callable[[int], str] = lambda i: f"items[{i}]") -> None:
    """Raise ``NotFoundError`` naming the first id that is not in the log."""
    known: set[str] = set()
    unique = sorted(set(ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start:start + _CHUNK]
        known.update(conn.execute(select(t.predictions.c.id).where(
            t.predictions.c.id.in_(chunk))).scalars())
    missing = [i for i, pid in enumerate(ids) if pid not in known]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError("prediction", ids[missing[0]],
                            f"{where(missing[0])} names no logged prediction{more}; "
                            "nothing was recorded")


def import_feedback(path: str | Path, *, source: str = "import", actor: str | None = None,
                    store: Store | None = None) -> int:
    """Record the feedback in a CSV, Parquet or JSON lines file; returns how many items.

    Columns: ``prediction_id``, and ``label`` or ``event`` (with ``value`` optional); a
    row takes whichever is filled. Values are typed as Polars reads them (a CSV column of
    0/1 gives integer labels). All rows or none are recorded.
    """
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise NotFoundError("file", str(path))
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",",
                                infer_schema_length=None)
        elif suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            frame = _read_json(path)
        else:
            raise InvalidInputError("file", str(path), "must be .csv, .tsv, .parquet or .jsonl "
                                                       "(JSON lines)")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError("file", str(path), f"cannot be read: {reason}") from None
    for column in frame.columns:
        if column not in FIELDS:
            raise InvalidInputError(f"{path.name}.{column}", column,
                                    "unknown column: expected prediction_id, label, event, "
                                    "value")
    if "prediction_id" not in frame.columns or not {"label", "event"} & set(frame.columns):
        raise InvalidInputError("file", str(path), "needs a prediction_id column and a label "
                                                   "or an event column")
    items = [{k: v for k, v in row.items() if v is not None or k == "prediction_id"}
             for row in frame.iter_rows(named=True)]

    def where(i: int) -> str:
        return f"{path.name} row {i + 1}"

    return write_feedback(validate_feedback(items, where), source=source, actor=actor,
                          store=store, where=where)


def _read_json(path: Path) -> Any:
    import polars as pl

    with path.open("rb") as handle:
        start = handle.read(64).lstrip()
    if start.startswith(b"["):  # a JSON array of objects
        return pl.DataFrame(orjson.loads(path.read_bytes()))
    return pl.read_ndjson(path)
