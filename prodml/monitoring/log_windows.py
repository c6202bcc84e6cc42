"""The prediction log as a monitor reads it: what is new, in time slices read one slice
ahead on a thread; complete windows cut from it; a window's feedback, joined later.

A run over a long stretch of the log (the first run, ``full=True``, a monitor that was off
for a day) would otherwise read everything before it computes anything, and hold it all.
Here the stretch is cut into slices of about ``slice_rows`` rows (from one cheap count on
the predictions' time index); a reader thread reads slice ``k + 1`` with
:func:`~prodml.serving.log_reader.read_predictions` while the caller computes the windows
of slice ``k``. SQLite, Arrow and Polars release the GIL for most of their work, so the
reading and the statistics overlap. Each slice is a time window of ``read_predictions``
(``since``/``until``: whole Arrow batches) filtered to ids after the cursor, rather than its
``after_id`` paging, which goes row by row through the predictions table: ids sort by time,
so the two select the same rows.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import polars as pl
from sqlalchemy import func, select

from prodml.store import Store
from prodml.store import tables as t

SLICE_ROWS = 100_000
_DONE = object()


def time_slices(store: Store, endpoint: str, since: int | None, until: int,
                slice_rows: int = SLICE_ROWS) -> list[tuple[int | None, int]]:
    """``[(since, until), ...]`` covering ``since <= time < until``, each about
    ``slice_rows`` rows if the rows were spread evenly over the time range."""
    p = t.predictions
    query = select(func.count(), func.min(p.c.time), func.max(p.c.time)).where(
        p.c.endpoint == endpoint, p.c.time < until)
    if since is not None:
        query = query.where(p.c.time >= since)
    with store.read() as conn:
        count, first, last = conn.execute(query).one()
    if not count or count <= slice_rows:
        return [(since, until)]
    pieces = -(-count // slice_rows)
    step = max(1, (last + 1 - first) // pieces)
    edges = [first + i * step for i in range(1, pieces)]
    bounds = [since, *edges]
    return list(zip(bounds, [*edges, until]))


def read_new(store: Store, endpoint: str, *, since: int | None, until: int,
             after_id: str | None, include_after: bool = False, routes: Any = None,
             slice_rows: int = SLICE_ROWS) -> Iterator[tuple[pl.DataFrame, int]]:
    """The rows logged after ``after_id`` (or from it, ``include_after``) with
    ``since <= time < until``, slice by slice: ``(frame, slice_until)``."""
    from prodml.serving.log_reader import read_predictions

    slices = time_slices(store, endpoint, since, until, slice_rows)
    ahead: queue.Queue[Any] = queue.Queue(maxsize=0 if len(slices) == 1 else 1)
    stop = threading.Event()

    def read() -> None:
        try:
            for lower, upper in slices:
                frame = read_predictions(endpoint, since=lower, until=upper, routes=routes,
                                         with_feedback=False, store=store)
                if after_id is not None:
                    frame = frame.filter(pl.col("id") >= after_id if include_after
                                         else pl.col("id") > after_id)
                while not stop.is_set():
                    try:
                        ahead.put((frame, upper), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the caller's thread
            ahead.put(exc)

    if len(slices) == 1:  # nothing to overlap: no thread
        read()
    else:
        threading.Thread(target=read, name="prodml-monitor-reader", daemon=True).start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def cut_windows(rows: pl.DataFrame, window: Any, until: int
                ) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    """The complete windows in ``rows`` (oldest first) and the rows left open.

    A window of ``n`` predictions is complete with its ``n``-th row; a time window
    ``[k·span, (k+1)·span)`` once ``until`` (all rows before it are read) has passed its end.
    Each window is ``{"frame", "start", "end", "span_s"}``: the first and last prediction's
    time for a count window, the span's bounds for a time window.
    """
    out: list[dict[str, Any]] = []
    if window.predictions is not None:
        n = window.predictions
        complete = rows.height // n
        for k in range(complete):
            part = rows.slice(k * n, n)
            out.append({"frame": part, "start": int(part["time"][0]),
                        "end": int(part["time"][-1]), "span_s": None})
        return out, rows.slice(complete * n)
    span = window.span_ms
    if rows.height == 0:
        return out, rows
    bucket = rows["time"] // span
    last_complete = until // span - 1  # windows ending at or before `until`
    for k in bucket.unique(maintain_order=True).to_list():
        if k > last_complete:
            break
        part = rows.filter(bucket == k)
        out.append({"frame": part, "start": k * span, "end": (k + 1) * span,
                    "span_s": span / 1000})
    return out, rows.filter(bucket > last_complete)


def window_feedback(store: Store, endpoint: str, first_id: str, last_id: str, *,
                    routes: Any = None) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Labels (``prediction_id``, ``label``, ``label_time``; the last one wins) and outcome
    event counts of the served predictions with ids in ``first_id..last_id``."""
    from prodml.serving.log_reader import _feedback_frames

    f, p = t.feedback, t.predictions
    # Driven from the feedback index (a range of prediction ids): with no labels yet it costs
    # nothing, whatever the size of the windows waiting for them.
    served = select(p.c.id).where(p.c.id == f.c.prediction_id, p.c.endpoint == endpoint)
    if routes is not None:
        served = served.where(p.c.route.in_(list(routes)))
    with store.read() as conn:
        rows = conn.execute(
            select(f.c.prediction_id, f.c.kind, f.c.name, f.c.value, f.c.time, f.c.id)
            .where(f.c.prediction_id >= first_id, f.c.prediction_id <= last_id,
                   served.exists())).all()
    return _feedback_frames(rows)


def join_feedback(frame: pl.DataFrame, labels: pl.DataFrame | None,
                  events: pl.DataFrame | None) -> pl.DataFrame:
    """The window with ``label``, ``label_time`` and one count column per outcome event."""
    if labels is not None:
        frame = frame.join(labels, left_on="id", right_on="prediction_id", how="left",
                           maintain_order="left")
    else:
        frame = frame.with_columns(pl.lit(None).alias("label"),
                                   pl.lit(None, pl.Int64).alias("label_time"))
    if events is not None:
        names = [c for c in events.columns if c != "prediction_id"]
        frame = frame.join(events, left_on="id", right_on="prediction_id", how="left",
                           maintain_order="left").with_columns(pl.col(names).fill_null(0))
    return frame


def window_rows(store: Store, endpoint: str, window: dict[str, Any], *, routes: Any = None
                ) -> pl.DataFrame:
    """A closed window's rows read again from the log (its labels came in a later run)."""
    from prodml.serving.log_reader import read_predictions

    frame = read_predictions(endpoint, since=window["start"], until=window["end"] + 1,
                             routes=routes, with_feedback=False, store=store)
    return frame.filter(pl.col("id").is_between(pl.lit(window["first_id"]),
                                                pl.lit(window["last_id"])))
