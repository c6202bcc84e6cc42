"""Reading the prediction log back: one Polars frame per query, the rows from Arrow.

A window (``since``/``until``, an endpoint, routes) is read from the ``prediction_batches``
that overlap it: each holds every field of its rows as Arrow (see
:mod:`prodml.serving.log_payload`), so a million rows are a few thousand blob reads and one
concatenation, not a million SQL rows. Paging (``after_id``, ``limit``) goes through the
``predictions`` table and its index, then takes the inputs from the same blobs. Both give
the same frame. Feedback is read in the same snapshot. One row per prediction, ordered by
id (that is, by time), with these columns:

- the log's own: ``id``, ``time`` (ms since the epoch), ``endpoint``, ``model_name``,
  ``model_version``, ``route``, ``revision``, ``routing_key``, ``parent_id``, ``status``,
  ``prediction`` (decoded from JSON), ``confidence``, ``latency_ms``, ``error``;
- the inputs under their own names (PII inputs as their hashes); an input whose name is
  taken by another column here gets the prefix ``input_``;
- ``proba_<class>`` per class, when the model gave probabilities;
- with feedback: ``label`` and ``label_time`` (the latest label: the last one wins), and one
  column per outcome event named as the event, holding the sum of its values per prediction
  (its count, as each event counts 1 unless given a value), 0 where none arrived.

Where the prediction is a mix of types (say numbers and strings) it comes back as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
from sqlalchemy import Connection, select

from prodml.errors import NotFoundError
from prodml.serving import log_payload
from prodml.store import Store, get_store
from prodml.store import tables as t

LOG_COLUMNS: dict[str, Any] = {
    "id": pl.String, "time": pl.Int64, "endpoint": pl.String, "model_name": pl.String,
    "model_version": pl.Int64, "route": pl.String, "revision": pl.Int64,
    "routing_key": pl.String, "parent_id": pl.String, "status": pl.String,
    "prediction": None, "confidence": pl.Float64, "latency_ms": pl.Float64,
    "error": pl.String,
}
FEEDBACK_COLUMNS = ("label", "label_time")
PROBABILITY_PREFIX = "proba_"
INPUT_PREFIX = "input_"
_CHUNK = 500  # ids per IN (...) list


def read_predictions(endpoint: str | None = None, *, since: int | None = None,
                     until: int | None = None, after_id: str | None = None,
                     routes: str | Iterable[str] | None = None, with_inputs: bool = True,
                     with_feedback: bool = True, limit: int | None = None,
                     store: Store | None = None) -> pl.DataFrame:
    """The logged predictions (see the module docstring for the columns).

    ``since``/``until`` bound ``time`` (ms; ``since <= time < until``); ``after_id`` pages
    by id (ids sort by time). To tail a live log, leave a lag (``until=now_ms() - 1000``)
    so that commits still in flight are not skipped.
    """
    store = store or get_store()
    p = t.predictions
    route_list = None if routes is None else [routes] if isinstance(routes, str) else list(routes)
    conditions = []
    if endpoint is not None:
        conditions.append(p.c.endpoint == endpoint)
    if since is not None:
        conditions.append(p.c.time >= since)
    if until is not None:
        conditions.append(p.c.time < until)
    if after_id is not None:
        conditions.append(p.c.id > after_id)
    if route_list is not None:
        conditions.append(p.c.route.in_(route_list))
    chosen = select(p.c.id).where(*conditions)
    with store.read() as conn:
        if after_id is None and limit is None:
            # A window: the batches that overlap it hold every field of its rows.
            frame = _from_payloads(conn, endpoint, since, until, route_list, conditions)
        else:
            chosen = chosen.order_by(p.c.id).limit(limit)
            frame = _from_rows(conn, conditions, limit, with_inputs)
        feedback = (conn.execute(select(t.feedback.c.prediction_id, t.feedback.c.kind,
                                        t.feedback.c.name, t.feedback.c.value,
                                        t.feedback.c.time, t.feedback.c.id)
                                 .where(t.feedback.c.prediction_id.in_(chosen))).all()
                    if with_feedback and frame.height else [])
    labels, events = _feedback_frames(feedback) if with_feedback else (None, None)
    taken = set(LOG_COLUMNS) | (set(FEEDBACK_COLUMNS) if with_feedback else set())
    if events is not None:
        taken |= set(events.columns)
    frame = _finish(frame, taken, with_inputs)
    if with_feedback:
        if labels is not None:
            frame = frame.join(labels, left_on="id", right_on="prediction_id", how="left",
                               maintain_order="left")
        else:
            frame = frame.with_columns(pl.lit(None).alias("label"),
                                       pl.lit(None, pl.Int64).alias("label_time"))
        if events is not None:
            names = [c for c in events.columns if c != "prediction_id"]
            frame = frame.join(events, left_on="id", right_on="prediction_id", how="left",
                               maintain_order="left").with_columns(
                pl.col(names).fill_null(0))
    return frame


def _from_payloads(conn: Connection, endpoint: str | None, since: int | None,
                   until: int | None, routes: list[str] | None, conditions: list[Any]
                   ) -> pl.DataFrame:
    b = t.prediction_batches
    query = select(b.c.endpoint, b.c.payload).order_by(b.c.id)
    if endpoint is not None:
        query = query.where(b.c.endpoint == endpoint)
    if since is not None:
        query = query.where(b.c.time_last >= since)
    if until is not None:
        query = query.where(b.c.time_first < until)
    tables = []
    for name, payload in conn.execute(query):
        table = log_payload.decode(payload)
        tables.append(table.append_column("endpoint",
                                          pa.array([name] * table.num_rows, pa.string())))
    frames = [_concat(tables).rename({log_payload.ID: "id"})] if tables else []
    # Rows whose payload could not be written (rare) are only in the predictions table:
    # found through the batch_id index alone (SQLite would otherwise walk the endpoint's
    # time index over every row of the window to find none), then filtered like the rest.
    orphans = _from_rows(conn, [t.predictions.c.batch_id.is_(None)], None, False)
    if endpoint is not None and orphans.height:
        orphans = orphans.filter(pl.col("endpoint") == endpoint)
    if orphans.height:
        frames.append(orphans)
    if not frames:
        return orphans
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    keep = []
    if since is not None:
        keep.append(pl.col("time") >= since)
    if until is not None:
        keep.append(pl.col("time") < until)
    if routes is not None:
        keep.append(pl.col("route").is_in(routes))
    if keep:
        frame = frame.filter(*keep)
    return frame.sort("id")


def _from_rows(conn: Connection, conditions: list[Any], limit: int | None,
               with_inputs: bool) -> pl.DataFrame:
    p = t.predictions
    statement = select(*(p.c[name] for name in LOG_COLUMNS), p.c.batch_id).where(
        *conditions).order_by(p.c.id).limit(limit)
    # The driver's rows as they come: SQLAlchemy's Row objects cost more than the query.
    rows = conn.execute(statement).cursor.fetchall()
    columns = list(zip(*rows)) if rows else [() for _ in range(len(LOG_COLUMNS) + 1)]
    frame = pl.DataFrame([pl.Series(name, columns[i], dtype=dtype or pl.String)
                          for i, (name, dtype) in enumerate([*LOG_COLUMNS.items(),
                                                             ("batch_id", pl.Int64)])])
    batch_ids = sorted({b for b in frame["batch_id"].drop_nulls().unique()})
    frame = frame.drop("batch_id")
    if not with_inputs or not batch_ids:
        return frame
    inputs = _concat(_payloads(conn, batch_ids))
    inputs = inputs.select(log_payload.ID, *(c for c in inputs.columns
                                              if c.startswith((log_payload.INPUT,
                                                               log_payload.PROBA))))
    return frame.join(inputs, left_on="id", right_on=log_payload.ID, how="left",
                      maintain_order="left")


def _finish(frame: pl.DataFrame, taken: set[str], with_inputs: bool) -> pl.DataFrame:
    """Decode the answers, name the inputs and probabilities, put the columns in order."""
    names: dict[str, str] = {}
    for column in frame.columns:
        if column.startswith(log_payload.PROBA):
            names[column] = PROBABILITY_PREFIX + column[len(log_payload.PROBA):]
    taken = taken | set(names.values())
    inputs = []
    for column in frame.columns:
        if column.startswith(log_payload.INPUT):
            name = column[len(log_payload.INPUT):]
            while name in taken:
                name = INPUT_PREFIX + name
            taken.add(name)
            names[column] = name
            inputs.append(name)
    frame = frame.rename(names)
    for name, dtype in LOG_COLUMNS.items():
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype or pl.String).alias(name))
    extra = [*inputs, *sorted(v for k, v in names.items() if k.startswith(log_payload.PROBA))]
    frame = frame.select(*LOG_COLUMNS, *(extra if with_inputs else []))
    return frame.with_columns(_series("prediction", _decoded(frame["prediction"].to_list())))


def get_prediction(prediction_id: str, *, store: Store | None = None) -> dict[str, Any]:
    """Everything logged about one prediction: the record, its inputs, feedback and review.

    Raises ``NotFoundError`` naming the id when there is none.
    """
    store = store or get_store()
    p, f, r = t.predictions, t.feedback, t.review_items
    with store.read() as conn:
        row = conn.execute(select(p).where(p.c.id == prediction_id)).mappings().first()
        if row is None:
            raise NotFoundError("prediction", prediction_id)
        payload = (conn.execute(select(t.prediction_batches.c.payload).where(
            t.prediction_batches.c.id == row["batch_id"])).scalar()
            if row["batch_id"] is not None else None)
        feedback = conn.execute(select(f.c.kind, f.c.name, f.c.value, f.c.time, f.c.source)
                                .where(f.c.prediction_id == prediction_id)
                                .order_by(f.c.time, f.c.id)).mappings().all()
        review = conn.execute(select(r).where(r.c.prediction_id == prediction_id)
                              ).mappings().first()
    out = {name: row[name] for name in LOG_COLUMNS}
    out["prediction"] = _json(row["prediction"])
    out["inputs"], out["probabilities"] = _one_row(payload, row["row"], prediction_id)
    items = [{"kind": i["kind"], "name": i["name"], "value": _json(i["value"]),
              "time": i["time"], "source": i["source"]} for i in feedback]
    labels = [i for i in items if i["kind"] == "label"]
    out["label"] = labels[-1]["value"] if labels else None
    out["label_time"] = labels[-1]["time"] if labels else None
    events: dict[str, float] = {}
    for item in items:
        if item["kind"] == "event":
            events[item["name"]] = events.get(item["name"], 0) + item["value"]
    out["events"] = events
    out["feedback"] = items
    out["review"] = None if review is None else {
        **dict(review), "suggestion": _json(review["suggestion"]), "label": _json(review["label"])}
    return out


def inputs_of(conn: Connection, rows: list[tuple[str, int | None, int | None]]
              ) -> dict[str, dict[str, Any]]:
    """The inputs of some predictions, given ``(id, batch_id, row)``: id -> inputs."""
    batch_ids = {b for _, b, _ in rows if b is not None}
    payloads: dict[int, pa.Table] = {}
    for chunk in _chunks(sorted(batch_ids)):
        for batch_id, payload in conn.execute(
                select(t.prediction_batches.c.id, t.prediction_batches.c.payload)
                .where(t.prediction_batches.c.id.in_(chunk))):
            payloads[batch_id] = log_payload.decode(payload)
    out = {}
    for prediction_id, batch_id, row in rows:
        table = payloads.get(batch_id) if batch_id is not None else None
        out[prediction_id] = _split(table, row, prediction_id)[0] if table is not None else {}
    return out


# -- building the frame ----------------------------------------------------------------------
def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _decoded(texts: Iterable[str | None]) -> list[Any]:
    # Answers repeat (a few classes): decode each distinct text once.
    cache: dict[str, Any] = {}
    out = []
    for text in texts:
        if text is None:
            out.append(None)
        elif text in cache:
            out.append(cache[text])
        else:
            out.append(cache.setdefault(text, orjson.loads(text)))
    return out


def _series(name: str, values: list[Any]) -> pl.Series:
    try:
        return pl.Series(name, values, strict=False)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return pl.Series(name, [None if v is None else
                                v if isinstance(v, str) else orjson.dumps(v).decode()
                                for v in values], dtype=pl.String)


def _payloads(conn: Connection, batch_ids: list[int]) -> list[pa.Table]:
    b = t.prediction_batches
    tables = []
    for chunk in _chunks(batch_ids):
        for (payload,) in conn.execute(select(b.c.payload).where(b.c.id.in_(chunk))
                                       .order_by(b.c.id)):
            tables.append(log_payload.decode(payload))
    return tables


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _concat(tables: list[pa.Table]) -> pl.DataFrame:
    try:
        # One contiguous chunk per column first: Polars takes that faster than thousands.
        frame = pl.from_arrow(pa.concat_tables(tables, promote_options="permissive")
                              .combine_chunks())
    except (pa.ArrowException, TypeError, ValueError):
        # A feature with numbers in some commits and text in others: text for all.
        frame = pl.concat([pl.from_arrow(table) for table in tables], how="diagonal_relaxed")
    assert isinstance(frame, pl.DataFrame)
    return frame


def _feedback_frames(rows: list[Any]) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    if not rows:
        return None, None
    fb = pl.DataFrame(rows, schema={"prediction_id": pl.String, "kind": pl.String,
                                    "name": pl.String, "value": pl.String, "time": pl.Int64,
                                    "id": pl.Int64}, orient="row")
    labels = (fb.filter(pl.col("kind") == "label").sort("time", "id")
              .group_by("prediction_id", maintain_order=True)
              .agg(pl.col("value").last().alias("label"),
                   pl.col("time").last().alias("label_time")))
    label_frame = None
    if labels.height:
        label_frame = labels.with_columns(_series("label", _decoded(labels["label"])))
    events = fb.filter(pl.col("kind") == "event")
    event_frame = None
    if events.height:
        event_frame = (events.with_columns(pl.col("value").cast(pl.Float64, strict=False)
                                           .fill_null(1.0))
                       .group_by("prediction_id", "name").agg(pl.col("value").sum())
                       .pivot(on="name", index="prediction_id", values="value"))
        counts = [c for c in event_frame.columns if c != "prediction_id"]
        event_frame = event_frame.with_columns(
            pl.col(c).cast(pl.Int64) for c in counts
            if (event_frame[c].drop_nulls() % 1 == 0).all())
    return label_frame, event_frame


def _split(table: pa.Table, row: int | None, prediction_id: str
           ) -> tuple[dict[str, Any], dict[str, float] | None]:
    ids = table.column(log_payload.ID)
    if row is None or row >= table.num_rows or ids[row].as_py() != prediction_id:
        matches = [i for i, v in enumerate(ids.to_pylist()) if v == prediction_id]
        if not matches:
            return {}, None
        row = matches[0]
    values = table.slice(row, 1).to_pylist()[0]
    inputs = {k[len(log_payload.INPUT):]: v for k, v in values.items()
              if k.startswith(log_payload.INPUT)}
    probabilities = {k[len(log_payload.PROBA):]: v for k, v in values.items()
                     if k.startswith(log_payload.PROBA) and v is not None}
    return inputs, probabilities or None


def _one_row(payload: bytes | None, row: int | None, prediction_id: str
             ) -> tuple[dict[str, Any], dict[str, float] | None]:
    if payload is None:
        return {}, None
    return _split(log_payload.decode(payload), row, prediction_id)
