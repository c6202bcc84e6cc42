"""Retention of the prediction log: how long an endpoint keeps its predictions, and pruning.

An endpoint's policy lives in ``endpoints.policy`` (a JSON object other features share: this
module reads and writes only its own keys, in one write transaction, so a key set by
someone else meanwhile is never dropped):

- ``retention``: an age (``"90d"``, ``"36h"``, ``"2w"``) or a row count (``"1000000 rows"``,
  or the number itself): older rows, or all but the newest N, are pruned;
- ``archive``: first write the pruned rows (inputs, answers, labels and outcome events, as
  :func:`~prodml.serving.log_reader.read_predictions` gives them) to one Parquet file in
  the artifact store, named by its SHA-256, read back and checked before anything is
  deleted;
- ``keep_labelled``: rows with a label are kept for retraining, whatever their age.

Rows a person still has to judge (an open review item) are always kept.

:func:`prune` deletes in ONE transaction: the rows, their feedback and resolved review items,
and the ``prediction_batches`` they were stored in. A batch whose rows all go is deleted; a
batch that keeps some rows (labelled ones, say) is rewritten to hold only those. Rewriting
costs a blob rewrite, but the alternative, keeping a batch until every one of its rows may
go, keeps the pruned rows' inputs readable (window reads take rows from the batches) and,
with ``keep_labelled``, would keep nearly every batch: one labelled row in a thousand pins
its batch forever. Each prune is recorded in ``log_prunes`` (endpoint, cutoff, rows, rows
kept for their labels, archive URI, actor); lineage and monitors read it to tell a pruned
prediction from one that never was.

The server prunes every endpoint that has a policy at start and then every hour
(``PRODML_PRUNE_EVERY``: ``30m``, ``6h``, ``off``); ``prodml log prune`` does it by hand.

>>> parse_retention("90d"), parse_retention("1000 rows"), parse_retention(500)
(('age', 7776000000), ('rows', 1000), ('rows', 500))
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import polars as pl
import pyarrow as pa
from sqlalchemy import bindparam, delete, func, select, update

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving import log_payload
from prodml.serving.changes import announce
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t
from prodml.store.leases import replica_id

log = logging.getLogger("prodml.serving.retention")
POLICY_KEYS = ("retention", "archive", "keep_labelled")
ENV = "PRODML_PRUNE_EVERY"
DEFAULT_EVERY_S = 3600.0
_AGE = re.compile(r"^\s*(\d+)\s*(d|h|w)\s*$")
_ROWS = re.compile(r"^\s*(\d+)\s*rows?\s*$")
_UNIT_MS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_RULE = "must be an age such as 90d, 36h or 2w, or a row count such as '1000000 rows'"
_CHUNK = 500
_EVERY = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)$")


def parse_retention(value: Any) -> tuple[str, int]:
    """``("age", milliseconds)`` or ``("rows", count)``; an error naming the rule otherwise.

    >>> parse_retention("ninety days")
    Traceback (most recent call last):
    ...
    prodml.errors.InvalidInputError: retention='ninety days': must be an age such as 90d, \
36h or 2w, or a row count such as '1000000 rows'
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise InvalidInputError("retention", value, "a row count must be at least 1")
        return "rows", value
    if isinstance(value, str):
        age = _AGE.match(value)
        if age and int(age.group(1)) > 0:
            return "age", int(age.group(1)) * _UNIT_MS[age.group(2)]
        rows = _ROWS.match(value)
        if rows and int(rows.group(1)) > 0:
            return "rows", int(rows.group(1))
    raise InvalidInputError("retention", value, _RULE)


@dataclass(frozen=True)
class RetentionPolicy:
    """An endpoint's retention: ``retention`` as written (``"90d"``, ``"1000 rows"``)."""

    retention: str | int | None = None
    archive: bool = False
    keep_labelled: bool = False

    def __post_init__(self) -> None:
        if self.retention is not None:
            parse_retention(self.retention)
        for name in ("archive", "keep_labelled"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(name, getattr(self, name), "must be true or false")

    @classmethod
    def from_policy(cls, policy: dict[str, Any] | None) -> RetentionPolicy:
        policy = policy or {}
        return cls(policy.get("retention"), policy.get("archive", False),
                   policy.get("keep_labelled", False))

    def to_dict(self) -> dict[str, Any]:
        return {"retention": self.retention, "archive": self.archive,
                "keep_labelled": self.keep_labelled}


@dataclass(frozen=True)
class PruneResult:
    """What one prune did (or, with ``dry_run``, would do)."""

    endpoint: str
    before: int | None  # rows with time < before were eligible (ms); None: nothing to prune
    rows: int  # rows deleted (or that would be)
    kept_labelled: int
    kept_in_review: int
    batches_deleted: int = 0
    batches_rewritten: int = 0
    archive_uri: str | None = None
    archive_sha256: str | None = None
    dry_run: bool = False
    prune_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def summary(self) -> str:
        verb = "would prune" if self.dry_run else "pruned"
        if self.before is None:
            return f"{self.endpoint}: nothing to prune"
        kept = [f"{n} {why}" for n, why in ((self.kept_labelled, "labelled"),
                                             (self.kept_in_review, "in review")) if n]
        text = f"{self.endpoint}: {verb} {self.rows} predictions before {_iso(self.before)}"
        if kept:
            text += " (kept " + ", ".join(kept) + ")"
        if self.archive_uri:
            text += f"; archived to {self.archive_uri}"
        return text


# ---- the policy ---------------------------------------------------------------------------
def get_retention(endpoint: str, *, store: Store | None = None) -> RetentionPolicy:
    store = store or get_store()
    with store.read() as conn:
        return RetentionPolicy.from_policy(_policy(conn, endpoint))


def set_retention(endpoint: str, retention: str | int | None, *, archive: bool = False,
                  keep_labelled: bool = False, actor: str | None = None,
                  store: Store | None = None) -> RetentionPolicy:
    """Set (``retention=None``: clear) the endpoint's retention; recorded in its history.

    Admin-only in the HTTP layer. Other keys of ``endpoints.policy`` are kept as they are.
    """
    from prodml.serving.endpoints import default_actor

    store = store or get_store()
    if isinstance(retention, str) and retention.strip().lower() in ("", "off", "none"):
        retention = None
    wanted = RetentionPolicy(retention, archive, keep_labelled)  # validates
    e = t.endpoints
    with store.write() as conn:
        query = select(e.c.policy, e.c.revision).where(e.c.name == endpoint)
        if store.dialect == "postgresql":
            query = query.with_for_update()  # SQLite: BEGIN IMMEDIATE holds the lock
        row = conn.execute(query).first()
        if row is None:
            raise NotFoundError("endpoint", endpoint)
        policy = {k: v for k, v in (row.policy or {}).items() if k not in POLICY_KEYS}
        if retention is not None:
            policy.update(wanted.to_dict())
        # a new revision: a deployment that read the endpoint before this write fails its
        # compare-and-set instead of writing the old policy back over this one
        conn.execute(update(e).where(e.c.name == endpoint)
                     .values(policy=policy or None, revision=row.revision + 1))
        before = RetentionPolicy.from_policy(row.policy)
        conn.execute(t.deployment_events.insert().values(
            endpoint=endpoint, revision=row.revision + 1, time=now_ms(),
            actor=actor or default_actor(), action="retention",
            reason=f"retention {_describe(before)} -> {_describe(wanted)}",
            replica=replica_id()))
        announce(conn, endpoint, row.revision + 1)
    return wanted


def _policy(conn: Any, endpoint: str) -> dict[str, Any]:
    row = conn.execute(select(t.endpoints.c.policy).where(t.endpoints.c.name == endpoint)
                       ).first()
    if row is None:
        raise NotFoundError("endpoint", endpoint)
    return row.policy or {}


def _describe(policy: RetentionPolicy) -> str:
    if policy.retention is None:
        return "none"
    return f"{policy.retention}" + (" archive" if policy.archive else "") + \
        (" keep-labelled" if policy.keep_labelled else "")


# ---- pruning ------------------------------------------------------------------------------
def prune(endpoint: str, *, before: int | None = None, older_than: str | None = None,
          dry_run: bool = False, archive: bool | None = None,
          keep_labelled: bool | None = None, actor: str | None = None,
          store: Store | None = None, now: int | None = None) -> PruneResult:
    """Prune ``endpoint``'s log: rows older than ``before`` (ms), or ``older_than`` (an age
    such as ``"90d"``), or as its retention policy says. ``archive`` and ``keep_labelled``
    default to the policy's."""
    from prodml.serving.endpoints import default_actor

    store = store or get_store()
    now = now_ms() if now is None else now
    with store.read() as conn:
        policy = RetentionPolicy.from_policy(_policy(conn, endpoint))
        cutoff = _cutoff(conn, endpoint, policy, before, older_than, now)
        archive = policy.archive if archive is None else archive
        keep_labelled = policy.keep_labelled if keep_labelled is None else keep_labelled
        if cutoff is None:
            return PruneResult(endpoint, None, 0, 0, 0, dry_run=dry_run)
        p, f, r = t.predictions, t.feedback, t.review_items
        old = select(p.c.id).where(p.c.endpoint == endpoint, p.c.time < cutoff)
        candidates = conn.execute(select(p.c.id, p.c.batch_id)
                                  .where(p.c.endpoint == endpoint, p.c.time < cutoff)).all()
        labelled = set(conn.execute(select(f.c.prediction_id).distinct().where(
            f.c.kind == "label", f.c.prediction_id.in_(old))).scalars())
        in_review = set(conn.execute(select(r.c.prediction_id).where(
            r.c.status == "open", r.c.prediction_id.in_(old))).scalars())
    kept_labelled = len(labelled - in_review) if keep_labelled else 0
    kept = in_review | (labelled if keep_labelled else set())
    pruned = [row for row in candidates if row.id not in kept]
    result = PruneResult(endpoint, cutoff, len(pruned), kept_labelled, len(in_review),
                         dry_run=dry_run)
    if dry_run or not pruned:
        return result
    uri = sha = None
    if archive:
        uri, sha = _archive(store, endpoint, cutoff, [row.id for row in pruned])
    with store.write() as conn:
        ids = [row.id for row in pruned]
        deleted = 0
        for chunk in _chunks(ids):
            deleted += conn.execute(delete(p).where(p.c.id.in_(chunk))).rowcount
            conn.execute(delete(f).where(f.c.prediction_id.in_(chunk)))
            conn.execute(delete(r).where(r.c.prediction_id.in_(chunk)))
        dropped, rewritten = _shrink_batches(conn, sorted({row.batch_id for row in pruned
                                                            if row.batch_id is not None}))
        prune_id = conn.execute(t.log_prunes.insert().values(
            endpoint=endpoint, time=now_ms(), before=cutoff, rows=deleted,
            kept_labelled=kept_labelled, archive_uri=uri,
            actor=actor or default_actor())).inserted_primary_key[0]
    log.info("retention: %s", result.summary())
    return PruneResult(endpoint, cutoff, deleted, kept_labelled, len(in_review), dropped,
                       rewritten, uri, sha, False, prune_id)


def prune_all(*, dry_run: bool = False, actor: str | None = None, store: Store | None = None,
              now: int | None = None) -> list[PruneResult]:
    """:func:`prune` every endpoint that has a retention policy (one failing is logged,
    the others still run)."""
    store = store or get_store()
    e = t.endpoints
    with store.read() as conn:
        rows = conn.execute(select(e.c.name, e.c.policy).order_by(e.c.name)).all()
    out = []
    for name, policy in rows:
        if not (policy or {}).get("retention"):
            continue
        try:
            out.append(prune(name, dry_run=dry_run, actor=actor, store=store, now=now))
        except Exception as exc:  # noqa: BLE001 - one endpoint's failure must not stop the rest
            log.error("retention: pruning %s failed: %s: %s", name, type(exc).__name__, exc)
    return out


def _cutoff(conn: Any, endpoint: str, policy: RetentionPolicy, before: int | None,
            older_than: str | None, now: int) -> int | None:
    if before is not None and older_than is not None:
        raise InvalidInputError("before", before, "give --before or --older-than, not both")
    if before is not None:
        if isinstance(before, bool) or not isinstance(before, int):
            raise InvalidInputError("before", before, "must be a time in ms since the epoch")
        return before
    if older_than is not None:
        kind, amount = parse_retention(older_than)
        if kind != "age":
            raise InvalidInputError("older_than", older_than, "must be an age such as 90d")
        return now - amount
    if policy.retention is None:
        raise InvalidInputError("retention", None, f"endpoint {endpoint!r} has no retention "
                                f"policy: set one (prodml log retention {endpoint} 90d) or "
                                "give --before / --older-than")
    kind, amount = parse_retention(policy.retention)
    if kind == "age":
        return now - amount
    p = t.predictions  # rows: keep the newest `amount` (and any sharing the oldest one's ms)
    oldest_kept = conn.execute(select(p.c.time).where(p.c.endpoint == endpoint)
                               .order_by(p.c.time.desc()).offset(amount - 1).limit(1)).scalar()
    if oldest_kept is None:
        return None
    return oldest_kept


def _archive(store: Store, endpoint: str, cutoff: int, ids: list[str]) -> tuple[str, str]:
    """The pruned rows as Parquet in the artifact store, read back and checked first."""
    from prodml.serving.log_reader import read_predictions

    frame = read_predictions(endpoint, until=cutoff, store=store)
    frame = frame.filter(pl.col("id").is_in(ids))
    if frame.height != len(ids):
        raise InvalidInputError("archive", endpoint, f"read {frame.height} of {len(ids)} "
                                "rows to archive; nothing pruned, try again")
    buffer = io.BytesIO()
    _parquet_ready(frame).write_parquet(buffer, compression="zstd")
    blob = store.artifacts.put_bytes(buffer.getvalue())
    back = pl.read_parquet(io.BytesIO(store.artifacts.get_bytes(blob.sha256)))  # verified
    if back.height != len(ids):
        raise InvalidInputError("archive", blob.uri, "does not read back whole; nothing "
                                "pruned")
    with store.write() as conn:
        store.record_artifact(conn, blob, "application/vnd.apache.parquet")
    return blob.uri, blob.sha256


def _parquet_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns Parquet cannot hold (Python objects: answers of mixed types) as JSON text."""
    import orjson

    fixed = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Object:
            fixed.append(pl.Series(name, [None if v is None else orjson.dumps(v).decode()
                                          for v in frame[name]], pl.String))
    return frame.with_columns(fixed) if fixed else frame


def _shrink_batches(conn: Any, batch_ids: list[int]) -> tuple[int, int]:
    """Delete the batches left without rows; rewrite those that keep some."""
    b, p = t.prediction_batches, t.predictions
    dropped = rewritten = 0
    for chunk in _chunks(batch_ids):
        remaining: dict[int, list[str]] = {}
        for pid, batch_id in conn.execute(select(p.c.id, p.c.batch_id)
                                          .where(p.c.batch_id.in_(chunk))):
            remaining.setdefault(batch_id, []).append(pid)
        empty = [i for i in chunk if i not in remaining]
        if empty:
            dropped += conn.execute(delete(b).where(b.c.id.in_(empty))).rowcount
        for batch_id, keep in remaining.items():
            payload = conn.execute(select(b.c.payload).where(b.c.id == batch_id)).scalar()
            table = log_payload.decode(payload)
            kept = table.filter(pa.compute.is_in(table.column(log_payload.ID),
                                                 pa.array(keep, pa.string())))
            times = kept.column("time").to_pylist()
            conn.execute(update(b).where(b.c.id == batch_id).values(
                payload=_ipc(kept), num_rows=kept.num_rows, time_first=min(times),
                time_last=max(times)))
            conn.execute(update(p).where(p.c.id == bindparam("pid")).values(
                row=bindparam("new_row")), [{"pid": pid, "new_row": i} for i, pid in
                                             enumerate(kept.column(log_payload.ID)
                                                       .to_pylist())])
            rewritten += 1
    return dropped, rewritten


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


# ---- what a pruned prediction was ---------------------------------------------------------
def pruned_note(conn: Any, prediction_id: str) -> str | None:
    """The prune that covers ``prediction_id``'s time (an id starts with it), with the
    archive's URI, to say why it is not in the log; None when no prune covers that time."""
    try:
        at = int(prediction_id[:12], 16)
    except ValueError:
        return None
    lp = t.log_prunes
    row = conn.execute(select(lp).where(lp.c.before > at, lp.c.rows > 0)
                       .order_by(lp.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    where = f"archived in {row.archive_uri}" if row.archive_uri else "not archived"
    return (f"predictions of {row.endpoint} logged before {_iso(row.before)} were pruned "
            f"{_iso(row.time)} by {row.actor} ({where})")


def latest_cutoff(conn: Any, endpoint: str) -> int | None:
    """The newest cutoff a prune of ``endpoint`` used: the log before it is incomplete."""
    lp = t.log_prunes
    return conn.execute(select(func.max(lp.c.before)).where(lp.c.endpoint == endpoint)
                        ).scalar()


# ---- in the server ------------------------------------------------------------------------
class RetentionTask:
    """The server's background pruning: at start, then every ``every_s`` seconds."""

    def __init__(self, store: Store, every_s: float | None) -> None:
        self.store = store
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None
        self.passes = 0

    @classmethod
    def from_env(cls, store: Store) -> RetentionTask:
        text = os.environ.get(ENV, "").strip().lower()
        if text in ("off", "0", "never"):
            return cls(store, None)
        if not text:
            return cls(store, DEFAULT_EVERY_S)
        found = _EVERY.match(text)
        if found is None or float(found.group(1)) <= 0:
            raise InvalidInputError(ENV, text, "must be a duration such as 30m, 6h or 3600s, "
                                    "or off")
        return cls(store, float(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2)])

    def start(self) -> RetentionTask:
        if self.every_s is not None:
            self.task = asyncio.get_running_loop().create_task(self._forever(),
                                                               name="prodml-retention")
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _forever(self) -> None:
        assert self.every_s is not None
        while True:
            started = time.monotonic()
            try:
                await asyncio.to_thread(prune_all, actor="server", store=self.store)
                self.passes += 1
            except Exception as exc:  # noqa: BLE001 - the server outlives a failed pass
                log.error("retention pass failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(max(0.0, self.every_s - (time.monotonic() - started)))
