"""The prediction log: every answered request, committed in groups, read back as a frame.

``PredictionLog`` owns one writer thread. ``await log.write(records)`` queues the records
with a future and waits; the writer takes everything waiting (up to ``max_batch`` rows),
writes it in one transaction and then resolves every future of that commit. So under load
many requests share one commit (group commit): a 2xx still means "committed", and the cost
of a commit is paid once per group, not per request. The event loop only queues: the
records are serialised (Arrow for the inputs, JSON for the answers) on the writer thread.

In one commit, each endpoint's rows get one ``prediction_batches`` row holding them, inputs
and probabilities included, as an Arrow IPC stream (see :mod:`prodml.serving.log_payload`),
and one ``predictions`` row each (one executemany) pointing into it with ``batch_id``/``row``.
Rows with status ``review`` open a ``review_items`` row in the same transaction. A record
that cannot be fully serialised is still logged, with what could not be stored named in
its ``error``; a commit that fails is retried caller by caller, so one caller's bad records
(a duplicate id) fail only that caller.

From an event loop, the writes of one loop iteration reach the writer as one item (the
requests of one micro-batch resume together), so the writer thread is woken once per
iteration, not once per request: each wake-up is a GIL hand-over the server pays for.
Records nobody waits for (``write_nowait``: shadow answers) do not start a commit of their
own in durable mode: they join the next commit someone waits for, or go after
``flush_interval``.

``mode="fast"`` returns from ``write()`` at once; the writer gathers for up to
``flush_interval`` seconds before committing. A crash (``kill -9``, power loss of the
process) loses at most what was written in that interval plus one commit; ``close()`` (on
server shutdown and at exit) flushes everything.

A store that cannot commit (disk full, I/O error, database gone) is loud, never silent:

- durable writes raise :class:`~prodml.errors.StoreWriteError` (HTTP 503 + ``Retry-After``);
- ``healthy`` turns False (the server's readiness routes answer 503) until a commit
  succeeds again: the next real one, or a probe transaction the writer tries every
  ``probe_interval`` seconds while it has nothing else to do;
- every record that was acknowledged but not stored is counted in ``stats.dropped`` (per
  endpoint in ``stats.dropped_by_endpoint``), every failed commit in ``stats.failed_commits``,
  and the server log gets a warning when commits start failing and when they succeed again;
- fast mode's loss is bounded: at most ``max_queue`` records (10,000 by default) wait
  unacknowledged-by-the-store, beyond that ``write()`` waits for the commit; and while the
  store is failing, fast writes wait for their commit too (so they fail with a 503 rather
  than vanish). What a failure can lose in fast mode is what was queued when it began: at
  most ``max_queue`` records plus the commit in flight (``max_batch``), all counted.

>>> import asyncio
>>> from prodml.store import get_store
>>> log = PredictionLog(get_store())
>>> record = PredictionRecord(
...     id=new_prediction_id(), time=now_ms(), endpoint="loans", model_name="loan",
...     model_version=2, route="primary", revision=1, routing_key=None,
...     inputs={"age": 41, "salary": 52000.0}, prediction="approve",
...     probabilities={"approve": 0.8, "reject": 0.2}, confidence=0.8, latency_ms=3.5,
...     status="ok")
>>> asyncio.run(log.write([record]))  # returns once committed
>>> log.close()
>>> frame = read_predictions("loans")
>>> frame.select("prediction", "age", "salary", "proba_approve").row(0)
('approve', 41, 52000.0, 0.8)
>>> get_prediction(record.id)["inputs"]
{'age': 41, 'salary': 52000.0}
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from prodml.errors import InvalidInputError, ProdmlError, StoreUnavailableError, StoreWriteError
from prodml.serving import log_payload
from prodml.serving.log_record import (ROW_KEYS, PredictionRecord, new_prediction_id,
                                       prediction_row, scrub)
from prodml.serving.log_reader import get_prediction, read_predictions
from prodml.store import Store, now_ms
from prodml.store import tables as t
from prodml.store.engine import describe_error

__all__ = ["LogStats", "PredictionLog", "PredictionRecord", "get_prediction", "hash_pii",
           "new_prediction_id", "read_predictions"]

log = logging.getLogger("prodml.serving.prediction_log")
hash_pii = log_payload.hash_pii
MODES = ("durable", "fast")


@dataclass(frozen=True)
class LogStats:
    """What the writer has done so far (for ``/metrics``)."""

    queue_depth: int  # records waiting for a commit
    commits: int
    rows: int  # records committed
    last_commit_ms: float | None  # serialise + transaction of the latest commit
    mean_commit_ms: float | None
    max_commit_rows: int
    dropped: int  # records not stored: failed commits nobody waited on, full queue
    failed_commits: int
    failing: str | None = None  # why commits fail now (None: the last commit succeeded)
    dropped_by_endpoint: dict[str, int] = field(default_factory=dict)
    failed_commits_by_endpoint: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()
_PROBE_ID = "~probe"  # the row a probe transaction inserts and deletes again
WARN_EVERY_S = 10.0  # while commits keep failing, one summary line this often


class PredictionLog:
    """Durable, group-committed logging of predictions (see the module docstring)."""

    def __init__(self, store: Store, *, mode: str = "durable", flush_interval: float = 0.1,
                 max_batch: int = 2048, max_queue: int = 10_000,
                 probe_interval: float = 1.0) -> None:
        if mode not in MODES:
            raise InvalidInputError("mode", mode, "must be 'durable' or 'fast'")
        if not flush_interval > 0:
            raise InvalidInputError("flush_interval", flush_interval, "must be > 0 seconds")
        if max_batch < 1:
            raise InvalidInputError("max_batch", max_batch, "must be >= 1")
        self.store = store
        self.mode = mode
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.probe_interval = probe_interval
        self._pii: dict[str, frozenset[str]] = {}
        self._pii_key: bytes | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, Any]]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._queued = 0
        self._commits = self._rows = self._dropped = self._failed = self._max_rows = 0
        self._last_ms: float | None = None
        self._insert: tuple[str, tuple[str, ...] | None] | None = None
        self._total_ms = 0.0
        self._failure: str | None = None  # why the latest commit failed; None once one works
        self._failing_since = 0.0
        self._failed_since_warned = 0
        self._warned_at = 0.0
        self._dropped_by: Counter[str] = Counter()
        self._failed_by: Counter[str] = Counter()

    # ---- configuration and lifecycle -----------------------------------------------------
    def set_pii(self, endpoint: str, columns: Iterable[str]) -> None:
        """Store these inputs of ``endpoint`` hashed (see :func:`hash_pii`), never in clear.

        A record's own ``pii`` set is added to these, so rows made under an earlier set
        (still queued when the set changes) are masked as that set said.
        """
        columns = frozenset(columns)
        if columns:
            self._key()
        self._pii[endpoint] = columns

    def _key(self) -> bytes:
        if self._pii_key is None:
            self._pii_key = log_payload.pii_key()
        return self._pii_key

    def start(self) -> None:
        """Start the writer thread (once; ``write`` starts it too)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="prodml-prediction-log",
                                            daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued and stop the writer. Idempotent."""
        self._hand_over_here()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:  # under the lock: every write queued before is ahead of it
                self._queue.put(_STOP)
        atexit.unregister(self.close)
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            log.error("prediction log: writer still busy after %.0f s at close; %d records "
                      "may not be committed", timeout, self.stats.queue_depth)

    def flush(self, timeout: float = 5.0) -> None:
        """Return once everything written before this call is committed (or failed).

        Raises ``TimeoutError`` if the writer needs longer than ``timeout`` seconds.
        """
        self._hand_over_here()
        if self._thread is None or not self._thread.is_alive():
            return
        marker = _Flush()
        self._queue.put(marker)
        if not marker.done.wait(timeout):
            raise TimeoutError(f"prediction log: not flushed within {timeout:g} s "
                               f"({self.stats.queue_depth} records waiting)")

    @property
    def stats(self) -> LogStats:
        with self._lock:
            return LogStats(queue_depth=self._queued, commits=self._commits, rows=self._rows,
                            last_commit_ms=self._last_ms,
                            mean_commit_ms=self._total_ms / self._commits if self._commits
                            else None, max_commit_rows=self._max_rows, dropped=self._dropped,
                            failed_commits=self._failed, failing=self._failure,
                            dropped_by_endpoint=dict(self._dropped_by),
                            failed_commits_by_endpoint=dict(self._failed_by))

    @property
    def healthy(self) -> bool:
        """False from a commit that failed for the store's sake until one succeeds."""
        return self._failure is None

    @property
    def failure(self) -> str | None:
        """Why commits fail now (e.g. ``"disk I/O error"``), or None."""
        return self._failure

    # ---- writing -------------------------------------------------------------------------
    async def write(self, records: Sequence[PredictionRecord] | PredictionRecord) -> None:
        """Log ``records``. Durable: return once committed (``StoreWriteError`` if the
        commit failed). Fast: return at once, but wait for the commit when more than
        ``max_queue`` records are already waiting (memory and loss stay bounded) or while
        the store is failing (a failure is an error to the caller, not a silent loss)."""
        if isinstance(records, PredictionRecord):
            records = (records,)
        if not records:
            return
        loop = asyncio.get_running_loop()
        if self.mode == "fast" and self._failure is None \
                and self._queued + len(self._pending.get(loop, ())) < self.max_queue:
            self._put_soon(loop, records, None)
            return
        future = loop.create_future()
        self._put_soon(loop, records, future)
        await future

    def write_sync(self, records: Sequence[PredictionRecord] | PredictionRecord,
                   timeout: float | None = None) -> None:
        """``write`` for code without an event loop: blocks until committed (either mode)."""
        if isinstance(records, PredictionRecord):
            records = (records,)
        if not records:
            return
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(records, None, future)
        future.result(timeout)

    def write_nowait(self, records: Sequence[PredictionRecord] | PredictionRecord) -> None:
        """Queue ``records`` and return at once, in either mode (e.g. shadow answers).

        Never blocks: when more than ``max_queue`` records are waiting, these are dropped
        (counted in ``stats.dropped``) rather than slowing the caller down.
        """
        if isinstance(records, PredictionRecord):
            records = (records,)
        if not records:
            return
        if self._queued >= self.max_queue or self._closed:
            self._count_dropped(records)
            log.warning("prediction log: %s; dropped %d records",
                        "closed" if self._closed else f"queue full ({self._queued} records)",
                        len(records))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        try:
            if loop is None:
                self._put(records, None, None)
            else:
                self._put_soon(loop, records, None)
        except StoreUnavailableError:  # closed meanwhile
            self._count_dropped(records)

    def _put(self, records: Sequence[PredictionRecord], loop: Any, future: Any) -> None:
        if self._thread is None:
            self.start()
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(self.store.display_url,
                                            "the prediction log is closed")
            self._queued += len(records)
            self._queue.put([(records, loop, future)])

    def _put_soon(self, loop: asyncio.AbstractEventLoop, records: Sequence[PredictionRecord],
                  future: asyncio.Future[None] | None) -> None:
        """Queue from ``loop``'s thread: handed to the writer with the rest of this loop
        iteration's writes (see the module docstring)."""
        if self._closed:
            raise StoreUnavailableError(self.store.display_url, "the prediction log is closed")
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append((records, loop if future is not None else None, future))

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Put ``loop``'s pending writes on the writer's queue, as one item."""
        entries = self._pending.pop(loop, None)
        if not entries:
            return
        if self._thread is None:
            self.start()
        with self._lock:
            if not self._closed:
                self._queued += sum(len(e[0]) for e in entries)
                self._queue.put(entries)
                return
        self._count_dropped([r for e in entries if e[2] is None for r in e[0]])
        closed = StoreUnavailableError(self.store.display_url, "the prediction log is closed")
        for _records, _loop, future in entries:
            if future is not None and not future.done():
                future.set_exception(closed)

    def _hand_over_here(self) -> None:
        """Hand over the pending writes of the loop running in this thread, if any (flush
        and close promise everything written before them)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._hand_over(loop)

    # ---- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        # PyArrow imports pandas the first time it converts Python values (~1 s): pay that
        # here, at start, rather than in the first request's commit.
        log_payload.encode_inputs([PredictionRecord("warm-up", 0, "", None, None, "", None,
                                                    None, {"x": 1.0}, None, None, None, 0.0,
                                                    "ok")])
        fast = self.mode == "fast"
        get = self._queue.get
        while True:
            if self._failure is None:
                item = get()
            else:  # failing: try a probe whenever nothing else came for probe_interval
                try:
                    item = get(timeout=self.probe_interval)
                except queue.Empty:
                    self._probe()
                    continue
            entries: list[tuple[Any, Any, Any]] = []
            markers: list[_Flush] = []
            rows = 0
            stop = False
            waited = fast  # fast: gather for flush_interval whoever waits
            deadline = time.monotonic() + self.flush_interval
            while True:
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, _Flush):
                    markers.append(item)
                    break
                entries.extend(item)  # a list of (records, loop, future)
                rows += sum(len(e[0]) for e in item)
                if rows >= self.max_batch:
                    break
                # Durable: commit as soon as someone waits; records nobody waits for
                # (write_nowait: shadows) ride along with the next such commit, or go
                # after flush_interval, rather than cost a commit of their own.
                waited = waited or any(e[2] is not None for e in item)
                try:
                    wait = deadline - time.monotonic() if fast or not waited else 0.0
                    item = get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            if entries:
                try:
                    self._commit(entries)
                except Exception as exc:  # the writer must outlive any bug
                    log.exception("prediction log: unexpected error in the writer")
                    self._resolve(entries, exc)
            for marker in markers:
                marker.done.set()
            if stop:
                return

    def _commit(self, entries: list[tuple[Any, Any, Any]]) -> None:
        records = [r for entry in entries for r in entry[0]]
        with self._lock:
            self._queued -= len(records)
        try:
            self._store_with_retry(records)
        except Exception as exc:  # noqa: BLE001 - reported to the callers
            if len(entries) == 1 or isinstance(exc, OperationalError):
                # (the store itself failed: caller by caller would only fail again, slower)
                self._resolve(entries, exc)
                return
            # One caller's bad records (a duplicate id, say) must not fail the others.
            for entry in entries:
                try:
                    self._store_with_retry(list(entry[0]))
                except Exception as single:  # noqa: BLE001 - reported to its caller
                    self._resolve([entry], single)
                else:
                    self._resolve([entry], None)
            return
        self._resolve(entries, None)

    def _store_with_retry(self, records: list[PredictionRecord]) -> None:
        try:
            self._store(records)
        except DBAPIError as exc:
            if not exc.connection_invalidated:  # a dropped connection is worth one retry
                raise
            self._store(records)

    def _store(self, records: list[PredictionRecord]) -> None:
        started = time.perf_counter()
        now = now_ms()
        groups: dict[str, list[PredictionRecord]] = {}
        for record in records:
            groups.setdefault(record.endpoint, []).append(record)
        batches, rows, reviews = [], [], []
        for endpoint, group in groups.items():
            pii = self._pii.get(endpoint, frozenset())
            extra = {id(r.pii): r.pii for r in group if r.pii and r.pii is not pii}
            if extra:
                pii = pii.union(*extra.values())
            key = self._key() if pii or any(r.routing_key is not None for r in group) else None
            try:
                columns = log_payload.encode_inputs(group, pii, key)
                problems = columns.problems
            except Exception as exc:  # noqa: BLE001 - the predictions are logged without it
                why = f"inputs not logged: {type(exc).__name__}: {exc}"
                columns, problems = None, {i: [why] for i in range(len(group))}
            group_rows = [prediction_row(record, problems.get(i), pii, key)
                          for i, record in enumerate(group)]
            payload = None
            if columns is not None:
                try:
                    payload = log_payload.encode(group_rows, columns)
                except Exception as exc:  # noqa: BLE001 - the rows are logged without it
                    why = f"inputs not logged: {type(exc).__name__}: {exc}"
                    log.warning("prediction log: %s (%d rows of %s)", why, len(group), endpoint)
                    for record, row in zip(group, group_rows):
                        note = scrub(why, record.inputs, pii) if pii else why
                        row["error"] = f"{row['error']}; {note}" if row["error"] else note
            first = len(rows)
            for i, (record, row) in enumerate(zip(group, group_rows)):
                row["row"] = i if payload is not None else None
                rows.append(row)
                if record.status == "review":
                    reviews.append({"prediction_id": record.id, "endpoint": record.endpoint,
                                    "created_at": now, "status": "open",
                                    "suggestion": row["prediction"],
                                    "confidence": row["confidence"]})
            if payload is not None:
                times = [row["time"] for row in group_rows]
                batches.append((first, len(group), {
                    "endpoint": endpoint, "time_first": min(times), "time_last": max(times),
                    "num_rows": len(group), "payload": payload}))
        with self.store.write() as conn:
            for first, count, batch in batches:
                batch_id = conn.execute(t.prediction_batches.insert(), batch
                                        ).inserted_primary_key[0]
                for row in rows[first:first + count]:
                    row["batch_id"] = batch_id
            # The driver's executemany straight away: SQLAlchemy's per-row bind processing
            # was a third of the commit's time, and these values need none.
            sql, order = self._insert_sql(conn)
            conn.exec_driver_sql(sql, [tuple(row[c] for c in order) for row in rows]
                                 if order else rows)
            if reviews:
                conn.execute(t.review_items.insert(), reviews)
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            self._commits += 1
            self._rows += len(records)
            self._last_ms = elapsed
            self._total_ms += elapsed
            self._max_rows = max(self._max_rows, len(records))
        if self._failure is not None:
            self._recovered()

    def _probe(self) -> None:
        """A write transaction of one row, inserted and deleted again: does the store
        commit now? (Nothing else may come to find out: readiness keeps traffic away.)"""
        try:
            with self.store.write() as conn:
                conn.execute(t.predictions.insert().values(
                    id=_PROBE_ID, time=now_ms(), endpoint="", route="probe", status="probe"))
                conn.execute(t.predictions.delete().where(t.predictions.c.id == _PROBE_ID))
        except Exception as exc:  # noqa: BLE001 - still failing: stay not-ready
            with self._lock:
                self._failure = _reason(exc)
            return
        self._recovered()

    def _recovered(self) -> None:
        with self._lock:
            if self._failure is None:
                return
            self._failure = None
            failing_s = time.monotonic() - self._failing_since
            self._failed_since_warned = 0
        log.warning("prediction log: commits to %s succeed again after %.1f s; %d failed "
                    "commits and %d dropped records so far", self.store.display_url,
                    failing_s, self._failed, self._dropped)

    def _count_dropped(self, records: Iterable[PredictionRecord]) -> None:
        by = Counter(r.endpoint for r in records)
        if by:
            with self._lock:
                self._dropped += by.total()
                self._dropped_by.update(by)

    def _count_failure(self, entries: list[tuple[Any, Any, Any]], exc: BaseException) -> None:
        """Count a failed commit, and what it drops; warn (not on every failure: a full
        disk under load fails hundreds of commits a second)."""
        records = [r for entry in entries for r in entry[0]]
        self._count_dropped([r for entry in entries if entry[2] is None for r in entry[0]])
        store_fault = isinstance(self._error(exc), StoreUnavailableError)
        reason = _reason(exc)
        now = time.monotonic()
        with self._lock:
            self._failed += 1
            self._failed_by.update({r.endpoint for r in records})
            began = store_fault and self._failure is None
            if store_fault:
                self._failure = reason
                if began:
                    self._failing_since = now
            self._failed_since_warned += 1
            warn = began or now - self._warned_at >= WARN_EVERY_S
            if warn:
                self._warned_at, failed = now, self._failed_since_warned
                self._failed_since_warned = 0
        if began:
            log.warning("prediction log: cannot commit to %s: %s. Predictions are refused "
                        "(503, Retry-After) and readiness is false until a commit succeeds",
                        self.store.display_url, reason)
        elif warn:
            log.error("prediction log: %d commits failed in the last %.0f s (latest: %d "
                      "records, %s); %d records dropped so far", failed, WARN_EVERY_S,
                      len(records), reason, self._dropped)

    def _insert_sql(self, conn: Any) -> tuple[str, tuple[str, ...] | None]:
        """The INSERT of a predictions row in the driver's own terms (and its parameter
        order, for drivers that take tuples)."""
        if self._insert is None:
            compiled = t.predictions.insert().compile(dialect=conn.dialect,
                                                      column_keys=list(ROW_KEYS))
            order = tuple(compiled.positiontup) if compiled.positional else None
            self._insert = (str(compiled), order)
        return self._insert

    def _resolve(self, entries: list[tuple[Any, Any, Any]], exc: BaseException | None) -> None:
        if exc is not None:
            self._count_failure(entries, exc)
        by_loop: dict[Any, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
        for _records, loop, future in entries:
            if future is None:
                continue
            error = None if exc is None else self._error(exc)
            if loop is None:
                _settle([(future, error)])
            else:
                by_loop.setdefault(loop, []).append((future, error))
        for loop, futures in by_loop.items():  # one wake-up per loop, not per request
            try:
                loop.call_soon_threadsafe(_settle, futures)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, ProdmlError):
            return exc
        if isinstance(exc, IntegrityError):
            return InvalidInputError("prediction", None,
                                     f"cannot be logged: {describe_error(exc)}")
        return StoreWriteError(self.store.display_url, _reason(exc))


def _settle(futures: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in futures:
        if future.done():  # the request was cancelled; the record is committed anyway
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError):
        return describe_error(exc)
    return f"{type(exc).__name__}: {exc}"
