"""Read-only views of stored runs and datasets, and how to load them in one query.

Loading runs is what ``pm.runs.search`` and ``pm.runs.get`` spend their time on, so each
is one statement (:func:`runs_statement`), built once per kind of search (:class:`RunsQuery`):
a row per run with its fields and params as JSON text, and a row per latest metric value,
tag, dataset and artifact. Records are built straight from those rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import (CTE, Connection, Float, String, Text, bindparam, cast, func,
                        literal_column, null, select, type_coerce, union_all)
from sqlalchemy.exc import DBAPIError

from prodml.store import tables as t
from prodml.tracking.code_version import CodeVersion


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset version: identified by the digest of its content."""

    id: int
    digest: str
    name: str
    source: str
    source_type: str
    num_rows: int
    num_columns: int
    schema: list[dict[str, Any]]
    context: str | None = None
    profile_sha256: str | None = None  # the stored Profile (see pm.runs.dataset_profile)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactRecord:
    path: str
    sha256: str
    uri: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """Everything the store knows about one run."""

    id: str
    experiment: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    error: str | None
    user: str | None
    host: str | None
    code: CodeVersion
    environment: dict[str, Any]
    wall_time_s: float | None
    cpu_time_s: float | None
    peak_memory_bytes: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[DatasetRecord] = field(default_factory=list)
    artifacts: list[ArtifactRecord] = field(default_factory=list)

    @property
    def started(self) -> datetime:
        return datetime.fromtimestamp(self.start_time / 1000, tz=timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()}
        out["started"] = self.started.isoformat()
        return out


def _json(text: str) -> Any:
    """Decode JSON text as the store's JSON columns do (``json.loads``), fast when it can."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, Infinity, huge integers: what json.dumps may write
        return json.loads(text)


class _StoredEnvironment:
    """``RunRecord.environment`` of a loaded record: its JSON text, decoded on first use.

    Searches return many records and rarely look at environments, so :func:`read_runs`
    leaves the text in the record and this descriptor decodes it once, when read. It has no
    ``__set__``, so a value given to ``RunRecord(...)`` (an instance attribute) wins.
    """

    def __get__(self, record: Any, owner: Any = None) -> Any:
        if record is None:
            return self
        state = record.__dict__
        text = state.get("_environment_json")
        # setdefault: threads reading at once all get the one dict that was stored first.
        value = state.setdefault("environment", (_json(text) if text else None) or {})
        state.pop("_environment_json", None)
        return value


RunRecord.environment = _StoredEnvironment()  # type: ignore[assignment]


def dataset_record(row: Any, context: str | None = None) -> DatasetRecord:
    return DatasetRecord(id=row["id"], digest=row["digest"], name=row["name"],
                         source=row["source"], source_type=row["source_type"],
                         num_rows=row["num_rows"], num_columns=row["num_columns"],
                         schema=row["schema"], context=context,
                         profile_sha256=row["profile_sha256"])


# -- the one statement ------------------------------------------------------------------------
#
# Rows are narrow, because fetching costs per column: (rn, kind, text, number, number2), where
# rn ranks the run in the page and kind says what the row is:
#
#   "r"  the run: text is its document (see _run_document), numbers wall and CPU time
#   "m"  a latest metric value: text is the key, number the value (NULL for NaN)
#   "t"  a tag: text is the JSON array [key, value]
#   "d"  a dataset: text is the JSON array of _DATASET_FIELDS
#   "a"  an artifact: text is the JSON array of _ARTIFACT_FIELDS; number its rank by path
#        on PostgreSQL (by its collation, as ORDER BY path); on SQLite the reader sorts
#
# Metric values come as REAL columns, the one way SQLite returns a float exactly (its JSON
# prints 15 significant digits). Tags, datasets and artifacts are rows rather than aggregates
# in the run's document: most runs have none, and a correlated subquery costs about as much
# empty as full.

_DATASET_FIELDS = (t.datasets.c.id, t.datasets.c.digest, t.datasets.c.name, t.datasets.c.source,
                   t.datasets.c.source_type, t.datasets.c.num_rows, t.datasets.c.num_columns,
                   cast(t.datasets.c.schema, Text), t.run_inputs.c.context,
                   t.datasets.c.profile_sha256)
_ARTIFACT_FIELDS = (t.run_artifacts.c.path, t.artifacts.c.sha256, t.artifacts.c.uri,
                    t.artifacts.c.size)
# A run's columns but its float ones; the environment stays JSON text, decoded only when
# read (_StoredEnvironment).
_RUN_FIELDS = (t.runs.c.id, t.experiments.c.name, t.runs.c.name, t.runs.c.status,
               t.runs.c.start_time, t.runs.c.end_time, t.runs.c.error, t.runs.c.user,
               t.runs.c.host, t.runs.c.code_commit, t.runs.c.code_branch, t.runs.c.code_dirty,
               t.runs.c.code_diff_digest, t.runs.c.code_repo, cast(t.runs.c.environment, Text),
               t.runs.c.peak_memory_bytes)


def _json_array(dialect: str, *items: Any) -> Any:
    if dialect == "postgresql":  # as text: psycopg would decode json itself, with json.loads
        return cast(func.json_build_array(*items), Text)
    return type_coerce(func.json_array(*items), Text)


def _run_document(dialect: str) -> Any:
    """``[[_RUN_FIELDS...], {params}]`` as JSON text: text and integers, which JSON keeps exact.

    Params are an aggregate, not rows: every run has some, often many, and rows cost more to
    fetch. On SQLite the two parts are joined as text (``json_array`` would parse the
    aggregate again); ``json_group_object`` of no rows is ``{}``, never NULL.
    """
    owned = t.params.c.run_id == t.runs.c.id
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import aggregate_order_by

        params = (select(func.json_object_agg(t.params.c.key,
                                              aggregate_order_by(t.params.c.value,
                                                                 t.params.c.key)))
                  .where(owned).scalar_subquery())
        return cast(func.json_build_array(func.json_build_array(*_RUN_FIELDS), params), Text)
    params = (select(func.json_group_object(t.params.c.key, t.params.c.value)).where(owned)
              .scalar_subquery())
    text = literal_column("'['", Text).concat(_json_array(dialect, *_RUN_FIELDS))
    return (text.concat(literal_column("','", Text)).concat(type_coerce(params, Text))
            .concat(literal_column("']'", Text)))


def runs_statement(page: CTE, dialect: str) -> Any:
    """Everything about the runs of ``page`` (a CTE of ``id`` and ``rn``, distinct ranks).

    The rows are described above. Build it once per page query and reuse it: building it
    costs more than running it.
    """
    def kind(letter: str) -> Any:
        return literal_column(f"'{letter}'", String)

    no_number = cast(null(), Float)
    runs = (select(page.c.rn, kind("r"), _run_document(dialect), t.runs.c.wall_time_s,
                   t.runs.c.cpu_time_s)
            .select_from(page.join(t.runs, t.runs.c.id == page.c.id)
                         .join(t.experiments, t.experiments.c.id == t.runs.c.experiment_id)))
    metrics = (select(page.c.rn, kind("m"), t.latest_metrics.c.key, t.latest_metrics.c.value,
                      no_number)
               .select_from(page.join(t.latest_metrics, t.latest_metrics.c.run_id == page.c.id)))
    tags = (select(page.c.rn, kind("t"), _json_array(dialect, t.tags.c.key, t.tags.c.value),
                   no_number, no_number)
            .select_from(page.join(t.tags, t.tags.c.run_id == page.c.id)))
    datasets = (select(page.c.rn, kind("d"), _json_array(dialect, *_DATASET_FIELDS),
                       no_number, no_number)
                .select_from(page.join(t.run_inputs, t.run_inputs.c.run_id == page.c.id)
                             .join(t.datasets, t.datasets.c.id == t.run_inputs.c.dataset_id)))
    if dialect == "postgresql":  # ranked by path in the database's collation, as ORDER BY
        by_path = cast(func.row_number().over(partition_by=t.run_artifacts.c.run_id,
                                              order_by=t.run_artifacts.c.path), Float)
    else:  # the reader sorts by path: SQLite's BINARY collation is code point order
        by_path = no_number  # (a window here would scan every run's artifacts)
    artifacts = (select(page.c.rn, kind("a"), _json_array(dialect, *_ARTIFACT_FIELDS),
                        by_path, no_number)
                 .select_from(page.join(t.run_artifacts, t.run_artifacts.c.run_id == page.c.id)
                              .join(t.artifacts,
                                    t.artifacts.c.sha256 == t.run_artifacts.c.sha256)))
    return union_all(runs, metrics, tags, datasets, artifacts)


class RunsQuery:
    """A :func:`runs_statement`, built once, and run by :func:`read_runs`.

    On SQLite's own driver (pysqlite) it runs as SQL text compiled once, on the driver's
    connection: SQLAlchemy's execution (the engine's ``BEGIN``, the execution context, a
    Row per row) cost about a fifth of a small search (benchmarks/tracking.py), and one
    SELECT reads one consistent snapshot without a transaction of its own. Driver errors
    are raised as SQLAlchemy would raise them. Other drivers, and statements whose SQL
    depends on the parameters (expanding ``IN`` lists), go through SQLAlchemy.
    """

    def __init__(self, page: CTE, dialect: str) -> None:
        self.statement = runs_statement(page, dialect)
        self._driver_sql: Any = None  # (compiled, sql, parameter names, processors) or False

    def rows(self, conn: Connection, parameters: dict[str, Any]) -> Sequence[Any]:
        dialect = conn.dialect
        if dialect.name != "sqlite" or dialect.driver != "pysqlite":
            return conn.execute(self.statement, parameters).all()
        if self._driver_sql is None:
            self._driver_sql = self._compile(dialect)
        if self._driver_sql is False:
            return conn.execute(self.statement, parameters).all()
        compiled, sql, names, processors = self._driver_sql
        values = compiled.construct_params(parameters)
        args = tuple(processors[name](values[name]) if name in processors else values[name]
                     for name in names)
        try:
            return conn.connection.driver_connection.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc

    def _compile(self, dialect: Any) -> Any:
        compiled = self.statement.compile(dialect=dialect)
        if (dialect.paramstyle != "qmark" or compiled.positiontup is None
                or "__[POSTCOMPILE_" in compiled.string):
            return False
        processors = {}
        for name, bind in compiled.binds.items():  # e.g. Float's; most types have none
            processor = bind.type.bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        return compiled, compiled.string, tuple(compiled.positiontup), processors


def read_runs(conn: Connection, query: RunsQuery, parameters: dict[str, Any] | None = None
              ) -> list[RunRecord]:
    """Run ``query`` and build its records, in ``rn`` order."""
    runs: list[tuple[int, RunRecord]] = []
    metrics: dict[int, dict[str, float]] = {}
    tags: dict[int, dict[str, str]] = {}
    children: list[tuple[int, str, float, str]] = []  # datasets and artifacts
    nan, loads = math.nan, orjson.loads
    new_run, new_code = RunRecord.__new__, CodeVersion.__new__
    for rn, kind, text, number, cpu_time_s in query.rows(conn, parameters or {}):
        if kind == "m":
            metrics.setdefault(rn, {})[text] = nan if number is None else number
        elif kind == "r":
            fields, params = loads(text)
            (run_id, experiment, name, status, start_time, end_time, error, user, host,
             commit, branch, dirty, diff_digest, repo, environment, peak_memory_bytes) = fields
            # Records are built without __init__ (the frozen dataclasses' setattr per field
            # is most of what a record costs); every field is set here, as __init__ would.
            code = new_code(CodeVersion)
            code.__dict__.update(commit=commit, branch=branch,
                                 dirty=None if dirty is None else bool(dirty),
                                 diff_digest=diff_digest, repo=repo)
            record = new_run(RunRecord)
            record.__dict__.update(
                id=run_id, experiment=experiment, name=name, status=status,
                start_time=start_time, end_time=end_time, error=error, user=user, host=host,
                code=code, _environment_json=environment, wall_time_s=number,
                cpu_time_s=cpu_time_s, peak_memory_bytes=peak_memory_bytes,
                params=params or {}, metrics=metrics.setdefault(rn, {}),
                tags=tags.setdefault(rn, {}), datasets=[], artifacts=[])
            runs.append((rn, record))
        elif kind == "t":
            key, value = loads(text)
            tags.setdefault(rn, {})[key] = value
        else:
            children.append((rn, kind, number, text))
    if children:
        _attach(dict(runs), children)
    runs.sort(key=lambda item: item[0])
    return [record for _, record in runs]


def _attach(records: dict[int, RunRecord], children: list[tuple[int, str, float, str]]
            ) -> None:
    """Give records their datasets, by (context, name), and artifacts, by path.

    Artifacts' numbers are their ranks by path where the database ranked them (PostgreSQL),
    else NULL (SQLite): then they are sorted by path here.
    """
    for rn, kind, number, text in children:
        state = records[rn].__dict__
        if kind == "a":
            state["artifacts"].append((number, ArtifactRecord(*orjson.loads(text))))
            continue
        (id, digest, name, source, source_type, num_rows, num_columns, schema, context,
         profile_sha256) = orjson.loads(text)
        state["datasets"].append(DatasetRecord(id, digest, name, source, source_type,
                                               num_rows, num_columns, _json(schema), context,
                                               profile_sha256))
    for record in records.values():
        state = record.__dict__
        if state["datasets"]:
            state["datasets"].sort(key=lambda d: (d.context or "", d.name, d.id))
        if state["artifacts"]:
            ranked = state["artifacts"]
            ranked.sort(key=lambda item: item[1].path if item[0] is None else item[0])
            state["artifacts"] = [artifact for _, artifact in ranked]


def _rank_by_id() -> CTE:
    return (select(t.runs.c.id, func.row_number().over(order_by=t.runs.c.id).label("rn"))
            .where(t.runs.c.id.in_(bindparam("ids", expanding=True))).cte("page"))


_BY_IDS: dict[str, RunsQuery] = {}


def load_runs(conn: Connection, run_ids: list[str]) -> list[RunRecord]:
    """Load full records for ``run_ids`` (in that order; unknown ids are left out)."""
    if not run_ids:
        return []
    dialect = conn.dialect.name
    query = _BY_IDS.get(dialect)
    if query is None:
        query = _BY_IDS[dialect] = RunsQuery(_rank_by_id(), dialect)
    by_id = {r.id: r for r in read_runs(conn, query, {"ids": list(run_ids)})}
    return [by_id[i] for i in run_ids if i in by_id]
