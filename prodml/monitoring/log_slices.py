"""Reading what is new in the prediction log, in time slices, one slice ahead on a thread.

A run over a long stretch of the log (the first run, ``full=True``, a monitor that was off
for a day) would otherwise read everything before it computes anything, and hold it all.
Here the stretch is cut into slices of about ``slice_rows`` rows (from one cheap count on
the predictions' time index); a reader thread reads slice ``k + 1`` with
:func:`~prodml.serving.log_reader.read_predictions` while the caller computes the windows
of slice ``k``. SQLite, Arrow and Polars release the GIL for most of their work, so the
reading and the statistics overlap.
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
