"""Tracked runs: ``pm.start_run`` and the functions behind ``pm.runs``.

A run records what it was told (params, metrics, tags, datasets, artifacts) and, without
being asked, the code version, environment, host, status and resource use.

>>> with start_run(experiment="doc", params={"lr": 0.1}) as run:
...     run.log_metric("loss", 0.5)
...     run.log_metric("loss", 0.25)
>>> record = get(run.id)
>>> record.status, record.params, record.metrics
('FINISHED', {'lr': '0.1'}, {'loss': 0.25})
>>> [p.value for p in history(run.id, "loss")]
[0.5, 0.25]
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import re
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import CTE, Connection, and_, bindparam, func, or_, select, update

from prodml.data.frames import column_schema, digest_file, digest_table, to_arrow
from prodml.data.profile import Profile, profile_table
from prodml.errors import InvalidInputError, NotFoundError, ParamChangedError
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t
from prodml.tracking.code_version import code_version
from prodml.tracking.compare import RunComparison, compare_records
from prodml.tracking.environment import environment, host, user
from prodml.tracking.records import (ArtifactRecord, DatasetRecord, RunRecord, RunsQuery,
                                     dataset_record, read_runs)
from prodml.tracking.resources import ResourceMeter
from prodml.tracking.search import compile_query, order_terms

KEY_RULE = re.compile(r"^[\w\-. /:]{1,255}\Z")  # \Z: "$" lets a final newline in
MAX_PARAM_LENGTH = 6000


def _check_key(kind: str, key: Any) -> str:
    if not isinstance(key, str) or not KEY_RULE.match(key):
        raise InvalidInputError(f"{kind} name", key, "must be 1-255 characters of letters, "
                                "digits, '_', '-', '.', ' ', '/' or ':'")
    return key


def _check_metric_value(key: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"metrics.{key}", value, "must be a real number")
    number = float(value)
    return None if math.isnan(number) else number  # NaN is stored as NULL


def _param_text(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_LENGTH:
        raise InvalidInputError(f"params.{key}", text[:40] + "...",
                                f"must be at most {MAX_PARAM_LENGTH} characters")
    return text


def _experiment_id(store: Store, name: str) -> int:
    _check_key("experiment", name)
    with store.read() as conn:
        found = conn.execute(select(t.experiments.c.id)
                             .where(t.experiments.c.name == name)).scalar()
    if found is not None:
        return found
    with store.write() as conn:
        conn.execute(store.insert(t.experiments).values(name=name, created_at=now_ms())
                     .on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(select(t.experiments.c.id)
                            .where(t.experiments.c.name == name)).scalar_one()


@functools.cache
def _metric_statements(dialect: str) -> tuple[Any, Any]:
    """The two statements behind every metric point, built once per dialect.

    Logging is the hot path of tracking: rebuilding the upsert per call cost more than the
    database work itself (see benchmarks/tracking.py).
    """
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    latest = (pg_insert if dialect == "postgresql" else sqlite_insert)(t.latest_metrics)
    newer = or_(latest.excluded.step > t.latest_metrics.c.step,
                and_(latest.excluded.step == t.latest_metrics.c.step,
                     latest.excluded.timestamp >= t.latest_metrics.c.timestamp))
    upsert = latest.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={"value": latest.excluded.value, "step": latest.excluded.step,
              "timestamp": latest.excluded.timestamp},
        where=newer)
    return t.metrics.insert(), upsert


class Run:
    """A live run. Use it as a context manager, or call :meth:`end` yourself."""

    def __init__(self, store: Store, run_id: str, experiment: str, name: str) -> None:
        self.store = store
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._next_step: dict[str, int] = {}
        self._meter = ResourceMeter().start()
        self._ended = False

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r})"

    # -- params and tags ----------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record params; logging a key again is allowed only with the same value."""
        texts = {_check_key("param", k): _param_text(k, v) for k, v in params.items()}
        if not texts:
            return
        with self.store.write() as conn:
            existing = dict(conn.execute(select(t.params.c.key, t.params.c.value)
                                         .where(t.params.c.run_id == self.id,
                                                t.params.c.key.in_(list(texts)))).all())
            for key, old in existing.items():
                if old != texts[key]:
                    raise ParamChangedError(self.id, key, old, texts[key])
            new = [{"run_id": self.id, "key": k, "value": v} for k, v in texts.items()
                   if k not in existing]
            if new:
                conn.execute(t.params.insert(), new)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        rows = [{"run_id": self.id, "key": _check_key("tag", k), "value": str(v)}
                for k, v in tags.items()]
        if not rows:
            return
        stmt = self.store.insert(t.tags)
        with self.store.write() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["run_id", "key"],
                                                    set_={"value": stmt.excluded.value}), rows)

    # -- metrics ------------------------------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: int | None = None) -> None:
        """Record one point. ``step`` defaults to this run's next step for ``key`` (0, 1, ...)."""
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: int | None = None) -> None:
        """Record several metrics at once, in one transaction."""
        stamp = now_ms() if timestamp is None else int(timestamp)
        if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
            raise InvalidInputError("step", step, "must be an integer")
        rows = []
        for key, value in metrics.items():
            _check_key("metric", key)
            number = _check_metric_value(key, value)
            point_step = self._next_step.get(key, 0) if step is None else int(step)
            rows.append({"run_id": self.id, "key": key, "value": number, "step": point_step,
                         "timestamp": stamp})
        if not rows:
            return
        insert_points, upsert_latest = _metric_statements(self.store.dialect)
        with self.store.write() as conn:
            conn.execute(insert_points, rows)
            conn.execute(upsert_latest, rows)
        for row in rows:
            self._next_step[row["key"]] = max(self._next_step.get(row["key"], 0), row["step"] + 1)

    # -- datasets and artifacts ---------------------------------------------------------------
    def log_dataset(self, data: Any, context: str = "train", name: str | None = None,
                    source: str | None = None, profile: bool = True) -> DatasetRecord:
        """Record a dataset version used by this run: digest, source, row count and schema.

        ``data`` is a DataFrame (pandas, Polars), an Arrow table or a file path. A path is
        digested by its bytes; a frame by its Arrow content. With ``profile=True`` (default)
        the dataset's :class:`~prodml.data.profile.Profile` is stored too, once per version:
        it is what monitoring later compares live traffic against.
        """
        return register_dataset(data, store=self.store, name=name, source=source,
                                profile=profile, run_id=self.id, context=context,
                                default_name=f"{self.experiment}-{context}")

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None
                     ) -> list[ArtifactRecord]:
        """Store a file (or every file under a folder) as artifacts of this run."""
        source = Path(path)
        if not source.exists():
            raise InvalidInputError("path", str(source), "file or folder does not exist")
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*")
                                                        if p.is_file())
        base = name or source.name
        named = [(f"{base}/{f.relative_to(source).as_posix()}" if source.is_dir() else base, f)
                 for f in files]
        return [self._store_blob(artifact_path, self.store.artifacts.put_file(f))
                for artifact_path, f in named]

    def log_bytes(self, name: str, data: bytes, media_type: str | None = None) -> ArtifactRecord:
        """Store bytes made in memory (a report, a small model card) as an artifact."""
        return self._store_blob(name, self.store.artifacts.put_bytes(data), media_type)

    def _store_blob(self, path: str, blob: Any, media_type: str | None = None) -> ArtifactRecord:
        with self.store.write() as conn:
            self.store.record_artifact(conn, blob, media_type)
            stmt = self.store.insert(t.run_artifacts).values(run_id=self.id, path=path,
                                                             sha256=blob.sha256)
            conn.execute(stmt.on_conflict_do_update(index_elements=["run_id", "path"],
                                                    set_={"sha256": blob.sha256}))
        return ArtifactRecord(path, blob.sha256, blob.uri, blob.size)

    # -- lifecycle ----------------------------------------------------------------------------
    def end(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Close the run with its status and resource use (idempotent)."""
        if self._ended:
            return
        self._ended = True
        use = self._meter.stop()
        with self.store.write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == self.id).values(
                status=status, end_time=now_ms(), error=error, wall_time_s=use.wall_time_s,
                cpu_time_s=use.cpu_time_s, peak_memory_bytes=use.peak_memory_bytes))

    def info(self) -> RunRecord:
        return get(self.id, store=self.store)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED", "KeyboardInterrupt")
        else:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.end("FAILED", f"{exc_type.__name__}: {exc}\n\n{text}")


def register_dataset(data: Any, *, store: Store | None = None, name: str | None = None,
                     source: str | None = None, profile: bool = True,
                     run_id: str | None = None, context: str = "train",
                     default_name: str | None = None,
                     source_type: str | None = None) -> DatasetRecord:
    """Record a dataset version (digest, source, rows, schema, profile) in the store, and
    link it to run ``run_id`` as an input when given, in one transaction. ``source_type``
    overrides the kind recorded (``file``, or the frame's library), e.g. ``query``.

    Without a run this is how a pipeline's ingest step registers the data it read, so that a
    run which trains on it later links the same ``datasets`` row (same digest).

    >>> import pandas as pd
    >>> record = register_dataset(pd.DataFrame({"a": [1, 2]}), name="doc-data")
    >>> record.name, record.num_rows, len(record.digest)
    ('doc-data', 2, 64)
    """
    store = store or get_store()
    _check_key("dataset context", context)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).absolute()
        table = to_arrow(path)
        digest, inferred_type = digest_file(path), "file"
        source = source or str(path)
        name = name or path.stem
    else:
        table = to_arrow(data)
        digest, inferred_type = digest_table(table), type(data).__module__.split(".")[0]
        source = source or f"{inferred_type}.{type(data).__name__} in memory"
        name = name or default_name or "dataset"
    source_type = source_type or inferred_type
    schema = column_schema(table)
    with store.read() as conn:
        known = conn.execute(select(t.datasets.c.profile_sha256)
                             .where(t.datasets.c.digest == digest)).first()
    profile_sha = known[0] if known else None
    profile_blob = None
    if profile and profile_sha is None and table.num_columns:
        profile_blob = store.artifacts.put_bytes(profile_table(table).to_bytes())
        profile_sha = profile_blob.sha256
    with store.write() as conn:
        if profile_blob is not None:
            store.record_artifact(conn, profile_blob, "application/x-prodml-profile")
        conn.execute(store.insert(t.datasets).values(
            digest=digest, name=name, source=source, source_type=source_type,
            num_rows=table.num_rows, num_columns=table.num_columns, schema=schema,
            created_at=now_ms(), profile_sha256=profile_sha
        ).on_conflict_do_nothing(index_elements=["digest"]))
        if profile_sha is not None:
            conn.execute(update(t.datasets).where(t.datasets.c.digest == digest,
                                                  t.datasets.c.profile_sha256.is_(None))
                         .values(profile_sha256=profile_sha))
        row = conn.execute(select(t.datasets).where(t.datasets.c.digest == digest)
                           ).mappings().one()
        if run_id is not None:
            conn.execute(store.insert(t.run_inputs).values(
                run_id=run_id, dataset_id=row["id"], context=context)
                .on_conflict_do_nothing())
    return dataset_record(row, context=context if run_id is not None else None)


def dataset_profile(dataset: DatasetRecord | str, *, store: Store | None = None) -> Profile:
    """The stored profile of a dataset version (a record, or its digest)."""
    store = store or get_store()
    digest = dataset if isinstance(dataset, str) else dataset.digest
    with store.read() as conn:
        sha = conn.execute(select(t.datasets.c.profile_sha256)
                           .where(t.datasets.c.digest == digest)).scalar()
    if sha is None:
        raise NotFoundError("dataset profile", digest, "log the dataset with profile=True")
    return Profile.from_bytes(store.artifacts.get_bytes(sha))


def start_run(experiment: str = "default", params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, name: str | None = None, *,
              store: Store | None = None, code_dir: str | os.PathLike[str] | None = None) -> Run:
    """Start a run in ``experiment`` (created on first use) and record where it runs."""
    store = store or get_store()
    experiment_id = _experiment_id(store, experiment)
    run_id = uuid.uuid4().hex
    name = name or f"{experiment}-{run_id[:8]}"
    code = code_version(code_dir)
    with store.write() as conn:
        conn.execute(t.runs.insert().values(
            id=run_id, experiment_id=experiment_id, name=name, status="RUNNING",
            start_time=now_ms(), user=user(), host=host(), code_commit=code.commit,
            code_branch=code.branch, code_dirty=code.dirty, code_diff_digest=code.diff_digest,
            code_repo=code.repo, environment=environment()))
    run = Run(store, run_id, experiment, name)
    try:
        run.log_params(params or {})
        run.set_tags(tags or {})
    except Exception as exc:
        run.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    return run


# -- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp: int


def _resolve(conn: Connection, run_id: str) -> str:
    """The full id of the one run whose id starts with ``run_id``."""
    ids = conn.execute(_prefix_page(conn.dialect.name).element, {"prefix": _like_prefix(run_id)}
                       ).scalars().all()
    _check_found(run_id, len(ids))
    return ids[0]


def _check_found(run_id: str, found: int) -> None:
    if found != 1 or not run_id:
        raise NotFoundError("run", run_id, "ambiguous prefix" if found > 1 else
                            "list runs with 'prodml runs list'")


def _like_prefix(run_id: str) -> str:
    return run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@functools.cache
def _prefix_page(dialect: str) -> CTE:
    """At most two runs whose id starts with the ``prefix`` parameter: enough to tell."""
    return (select(t.runs.c.id, func.row_number().over(order_by=t.runs.c.id).label("rn"))
            .where(t.runs.c.id.like(bindparam("prefix"), escape="\\")).order_by(t.runs.c.id)
            .limit(2).cte("page"))


@functools.cache
def _get_statement(dialect: str) -> RunsQuery:
    return RunsQuery(_prefix_page(dialect), dialect)


def get(run_id: str, *, store: Store | None = None) -> RunRecord:
    """The stored record of one run; a unique prefix of its id is enough."""
    store = store or get_store()
    with store.read() as conn:
        found = read_runs(conn, _get_statement(store.dialect), {"prefix": _like_prefix(run_id)})
    _check_found(run_id, len(found))
    return found[0]


def history(run_id: str, key: str, *, store: Store | None = None) -> list[MetricPoint]:
    """Every point of metric ``key`` of a run, by step then time."""
    store = store or get_store()
    with store.read() as conn:
        full_id = _resolve(conn, run_id)
        rows = conn.execute(select(t.metrics.c.step, t.metrics.c.value, t.metrics.c.timestamp)
                            .where(t.metrics.c.run_id == full_id, t.metrics.c.key == key)
                            .order_by(t.metrics.c.step, t.metrics.c.timestamp, t.metrics.c.id))
        return [MetricPoint(s, math.nan if v is None else v, ts) for s, v, ts in rows]


@functools.lru_cache(maxsize=256)
def _search_statement(query: str, order_by: tuple[str, ...], by_experiment: bool,
                      dialect: str) -> RunsQuery:
    """The statement behind one kind of search, built once and reused.

    Parsing the query and building the statement cost more than running it (see
    benchmarks/tracking.py); SQLAlchemy statements are immutable, so they can be shared.
    ``experiment`` and ``limit`` are parameters; the query's values are bound in it.

    The matching runs are sorted once, on their sort keys selected as columns (a key such as
    ``metrics.f1`` is a subquery: it runs once per run), and only the page kept is ranked.
    """
    terms = order_terms(list(order_by), dialect)
    keys = [term.column.label(f"k{i}") for i, term in enumerate(terms)]
    page = select(t.runs.c.id, *keys).where(compile_query(query, dialect))
    if by_experiment:
        page = page.where(t.runs.c.experiment_id == select(t.experiments.c.id).where(
            t.experiments.c.name == bindparam("experiment")).scalar_subquery())
    page = (page.order_by(*(term.on(key) for term, key in zip(terms, keys)))
            .limit(bindparam("limit")).cte("matches"))
    rank = func.row_number().over(order_by=[term.on(page.c[f"k{i}"])
                                            for i, term in enumerate(terms)])
    return RunsQuery(select(page.c.id, rank.label("rn")).cte("page"), dialect)


def search(query: str = "", *, experiment: str | None = None,
           order_by: list[str] | str | None = None, max_results: int = 1000,
           store: Store | None = None) -> list[RunRecord]:
    """Runs matching ``query`` (see :mod:`prodml.tracking.search` for the language).

    ``search("metrics.f1 > 0.8 and (params.model = 'gbm' or tags.team = 'risk')",
    order_by="metrics.f1 desc", max_results=10)``.
    """
    store = store or get_store()
    if not isinstance(max_results, int) or max_results < 1:
        raise InvalidInputError("max_results", max_results, "must be a positive integer")
    orders = (order_by,) if isinstance(order_by, str) else tuple(order_by or ())
    statement = _search_statement(query, orders, experiment is not None, store.dialect)
    with store.read() as conn:
        return read_runs(conn, statement, {"limit": max_results, "experiment": experiment})


def experiments(*, store: Store | None = None) -> list[str]:
    store = store or get_store()
    with store.read() as conn:
        return list(conn.execute(select(t.experiments.c.name).order_by(t.experiments.c.name))
                    .scalars())


def compare(run_ids: list[str], *, store: Store | None = None) -> RunComparison:
    """Params, metrics and tags of ``run_ids`` side by side, differences marked."""
    store = store or get_store()
    if len(run_ids) < 2:
        raise InvalidInputError("runs", run_ids, "give at least two runs to compare")
    return compare_records([get(run_id, store=store) for run_id in run_ids])
