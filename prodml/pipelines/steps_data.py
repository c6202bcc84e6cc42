"""Built-in data steps: ingest, profile, validate, split, training_data.

Each is a :func:`~prodml.pipelines.step.step` over the pure functions of :mod:`prodml.data`;
what it adds is the record: the data it returns is registered as a dataset version (the same
``datasets`` row a tracked run links when it trains on it) and its pipeline artifact names
that version (``properties.dataset_digest``), so lineage joins the two.

Outside a pipeline a step is its function, recording into the default store.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from prodml.errors import InvalidInputError, ProdmlError
from prodml.pipelines.context import current
from prodml.pipelines.source import Source
from prodml.pipelines.step import step
from prodml.store import Store, get_store


class StepStoppedError(ProdmlError):
    """A built-in step stopped the pipeline on purpose (failed validation, failed gate); the
    message carries the report."""

    def __init__(self, message: str, *, field: str, value: Any, rule: str,
                 report: dict[str, Any] | None = None) -> None:
        super().__init__(message, field=field, value=value, rule=rule)
        self.report = report


# -- helpers the built-in steps share ------------------------------------------------------------

def step_store() -> Store:
    """The store of the running pipeline, or the default store outside one."""
    context = current()
    return context.store if context is not None else get_store()


def annotate(**note: Any) -> None:
    """Type and properties for this step's output artifact (nothing outside a pipeline)."""
    context = current()
    if context is not None:
        context.annotate_output(**note)


def record_dataset(frame: Any, *, name: str, source: str | None = None,
                   source_type: str | None = None, profile: bool = False,
                   output: str | None = None, properties: dict[str, Any] | None = None) -> str:
    """Register ``frame`` as a dataset version and make it this step's Dataset output."""
    from prodml.tracking.runs import register_dataset

    record = register_dataset(frame, store=step_store(), name=name, source=source,
                              source_type=source_type, profile=profile)
    annotate(type="Dataset", name=name, output=output,
             properties={"dataset_digest": record.digest, "rows": record.num_rows,
                         **(properties or {})})
    return record.digest


def record_report(kind: str, name: str, report: dict[str, Any]) -> dict[str, Any]:
    """Keep a report (JSON) in the blob store; when it stops the run, also record it as a
    ``kind`` artifact output of this execution, so the failed execution shows its verdict."""
    store = step_store()
    blob = store.artifacts.put_bytes(json.dumps(report, sort_keys=True, default=str).encode())
    with store.write() as conn:
        store.record_artifact(conn, blob, "application/json")
    return {"sha256": blob.sha256, "uri": blob.uri, "kind": kind, "name": name}


def record_stop(kind: str, name: str, report: dict[str, Any], kept: dict[str, Any]) -> None:
    """The report of a step that stops the run, as an output artifact of its execution (the
    driver records no outputs for a failed step)."""
    context = current()
    if context is None:
        return
    from prodml.pipelines.records import ArtifactSpec, _event, artifact_id
    from prodml.store import now_ms

    store = step_store()
    spec = ArtifactSpec(kind, kept["sha256"], kept["uri"], name, kept["sha256"],
                        {"format": "json", "stopped": True, **_brief(report)})
    with store.write() as conn:
        found = artifact_id(conn, store, spec)
        _event(conn, store, context.execution_id, "output", kind.lower(), found, 0, now_ms())


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("ok", "errors", "warnings", "blessed", "gate")
            if k in report}


# -- ingest ---------------------------------------------------------------------------------------

# Never cached: what a path or a query returns can change with the same arguments. Steps
# downstream are still cached, keyed by the digest of the frame read here.
@step(cache=False)
def ingest(source: Source | str | os.PathLike[str], *, name: str | None = None
           ) -> pd.DataFrame:
    """Read a CSV, Parquet, JSON-lines or Arrow file, or run a SQL query, into a DataFrame.

    ``source`` is a :class:`~prodml.pipelines.source.Source` (a file, or
    ``Source("SELECT ...", connection="sqlite:///loans.db")`` for a query on any SQLAlchemy
    URL) or a path. The data is registered as a dataset version (digest, source, schema,
    profile) and the step's output is a "Dataset" artifact naming it.
    """
    if not isinstance(source, Source) and isinstance(source, (str, os.PathLike)):
        source = Source(os.fspath(source))
    if not isinstance(source, Source):
        raise InvalidInputError("source", type(source).__name__,
                                "must be a Source, a path or a URL")
    if source.query is not None:
        frame = _query(source)
        origin, kind = f"{' '.join(source.query.split())} @ {source.uri}", "query"
    else:
        frame = _read_file(source.uri)
        origin, kind = source.uri, "file"
    name = name or source.name or (source.display_name().rsplit(".", 1)[0]
                                   if kind == "file" else "query")
    record_dataset(frame, name=name, source=origin, source_type=kind, profile=True,
                   properties={"source": origin, "source_kind": kind})
    return frame


def _query(source: Source) -> pd.DataFrame:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(str(source.connection))
    except Exception as error:  # noqa: BLE001 - a malformed URL or a missing driver
        raise InvalidInputError("connection", source.uri, f"cannot connect: {error}") from None
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sqlalchemy.text(str(source.query)), conn)
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
        raise InvalidInputError("query", source.query, f"failed on {source.uri}: {reason}"
                                ) from None
    finally:
        engine.dispose()


def _read_file(uri: str) -> pd.DataFrame:
    if "://" not in uri or uri.startswith("file://"):
        from prodml.data.frames import read_path

        return read_path(uri.removeprefix("file://")).to_pandas()
    import fsspec
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    reader = {"csv": pacsv.read_csv, "parquet": pq.read_table, "pq": pq.read_table}.get(
        uri.rsplit(".", 1)[-1].lower())
    if reader is None:
        raise InvalidInputError("source", uri, "a URL must end in .csv or .parquet")
    with fsspec.open(uri, "rb") as handle:
        return reader(handle).to_pandas()


# -- profile and validate -------------------------------------------------------------------------

@step
def profile(frame: Any) -> Any:
    """The frame's :class:`~prodml.data.profile.Profile` (a "Profile" artifact)."""
    from prodml.data.profile import profile as make_profile

    result = make_profile(frame)
    annotate(type="Profile", properties={"rows": int(result.rows),
                                         "columns": result.column_names})
    return result


@step
def validate(frame: Any, schema: Any) -> Any:
    """Check ``frame`` against ``schema``; pass the frame on, or stop the pipeline.

    ``schema`` is a :class:`~prodml.data.schema.Schema`, its dict, YAML text, a YAML file or
    a Source of one. Give a file as ``Source(path)``: its bytes then enter the cache key, so
    editing the schema re-runs the check (a plain path string is a parameter: only the path
    is keyed). The report is kept in the blob store either way; error anomalies raise
    :class:`StepStoppedError` whose message is the report, and the failed execution gets a
    "Report" artifact. Warnings pass, noted in the output's properties.
    """
    from prodml.data.validate import validate as check

    if isinstance(schema, Source):
        schema = schema.uri
    result = check(frame, schema)
    report = result.to_dict()
    kept = record_report("Report", "validation report", report)
    if not result.ok:
        record_stop("Report", "validation report", report, kept)
        raise StepStoppedError(f"{result.summary()}\n(report: {kept['uri']})", field="data",
                               value=f"{len(result.errors)} error anomalies",
                               rule="must pass its schema to go on", report=report)
    annotate(type="Dataset", properties={"validation": {
        "ok": True, "warnings": len(result.warnings), "report_sha256": kept["sha256"]}})
    return frame


# -- split ------------------------------------------------------------------------------------------

def _split(frame: Any, names: tuple[str, ...], ratios: Any, label: Any, groups: Any,
           seed: int) -> tuple[Any, ...]:
    import warnings

    from prodml.data.split import split as make_split

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make_split(frame, label=label, ratios=ratios, names=names, groups=groups,
                            seed=seed)
    for message in caught:
        print(f"split: {message.message}")  # kept in the execution's logs
    parts = tuple(result.parts[name] for name in names)
    for name, part in zip(names, parts):
        record_dataset(part, name=name, output=name,
                       properties={"part": name, "share": round(result.ratios[name], 6),
                                   "method": result.method, "seed": seed})
    return parts


@step(outputs=("train", "validation", "test"))
def split(frame: Any, *, label: str | None = None,
          ratios: list[float] | tuple[float, ...] = (0.6, 0.2, 0.2),
          groups: str | None = None, seed: int = 0) -> tuple[Any, Any, Any]:
    """Train, validation and test parts (stratified by ``label``, ``groups`` kept whole), each
    a Dataset artifact; see :func:`prodml.data.split.split`."""
    return _split(frame, ("train", "validation", "test"), ratios, label, groups, seed)


@step(outputs=("train", "test"))
def split_train_test(frame: Any, *, label: str | None = None, test_size: float = 0.25,
                     groups: str | None = None, seed: int = 0) -> tuple[Any, Any]:
    """Train and test parts (a two-way :func:`split`)."""
    if not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise InvalidInputError("test_size", test_size, "must be between 0 and 1")
    return _split(frame, ("train", "test"), (1 - test_size, test_size), label, groups, seed)


def _columns(frame: Any) -> list[str]:
    names = getattr(frame, "column_names", None)  # Arrow
    return list(names) if names is not None else [str(c) for c in frame.columns]


def _with_column(frame: Any, name: str, values: Any) -> Any:
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        return frame.assign(**{name: values})
    if module == "polars":
        import polars as pl

        return frame.with_columns(pl.Series(name, values))
    import pyarrow as pa

    return frame.append_column(name, pa.array(values))


# -- training data ------------------------------------------------------------------------------

@step
def training_data(frame: Any, *, strategy: str = "all", time_column: str,
                  window: str | int | None = None, half_life: str | None = None,
                  now: str | None = None, weight_column: str = "sample_weight") -> Any:
    """The rows to retrain on by ``strategy`` (see :mod:`prodml.data.retraining`).

    ``"weighted"`` adds the weights as column ``weight_column``, which :func:`train` passes
    to the training function as ``sample_weight``; the output's properties hold the window
    (strategy, cut-off, rows kept and dropped, effective rows).
    """
    from prodml.data.retraining import training_window

    if not isinstance(weight_column, str) or not weight_column:
        raise InvalidInputError("weight_column", weight_column, "must be a column name")
    chosen = training_window(frame, strategy=strategy, time_column=time_column, now=now,
                             window=window, half_life=half_life)
    data = chosen.frame
    if chosen.weighted:
        if weight_column in _columns(data):
            raise InvalidInputError("weight_column", weight_column,
                                    "is already a column of the data: name another")
        data = _with_column(data, weight_column, chosen.sample_weight)
    print(f"training_data: {strategy} kept {chosen.rows_kept:,} rows, dropped "
          f"{chosen.rows_dropped:,}")
    record_dataset(data, name=f"training data ({strategy})",
                   properties={"retraining": chosen.to_dict(),
                               "weight_column": weight_column if chosen.weighted else None})
    return data
