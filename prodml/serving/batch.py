"""Batch predictions: score a file, a folder of files or a frame in chunks, and keep the record.

``predict_batch`` resolves its target (an endpoint scores with the version that takes its
primary traffic; a model reference with that version), reads the data a chunk at a time
(``pyarrow.dataset``: a file larger than memory is never loaded whole), checks each chunk
against the version's schema with the vectorised :func:`~prodml.data.validate.validate`,
predicts with one call per chunk, and appends the answers to a Parquet file. The file is
written beside its final name and renamed at the end, so a job that stops on bad data
leaves nothing behind. The job is a tracked run (experiment ``batch-predictions``) whose
params name the model version, whose input is the data (digest, source, rows) and whose
artifact is the output (SHA-256): lineage goes data → model version → predictions.

Answers are the server's: ``prediction``, ``confidence`` and ``probability_<class>`` (see
:mod:`prodml.serving.batch_scoring`); the rows come from :mod:`prodml.serving.batch_source`;
the Dask engine (:mod:`prodml.serving.batch_dask`) runs the same scorer on each partition,
for data larger than one machine.

>>> import pandas as pd, prodml as pm
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"age": [20, 60, 25, 70], "income": [1.0, 5.0, 1.5, 6.0]})
>>> _ = pm.models.register("credit", LogisticRegression().fit(X, [0, 1, 0, 1]),
...                        input_example=X)
>>> result = predict_batch("credit/1", X.assign(id=[11, 12, 13, 14]), id_column="id")
>>> result.rows, result.model, result.predictions.column_names
(4, 'credit/1', ['id', 'prediction', 'confidence', 'probability_0', 'probability_1'])
>>> result.predictions.column("prediction").to_pylist()
[0, 1, 0, 1]
>>> predict_batch("credit/1", X.assign(age=[20, 60, None, 70]))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: rows[2].age=None: ... (rule null_not_allowed, in input rows 0-3)
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from prodml.data.frames import logical_type
from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving import deployment as d
from prodml.serving.batch_scoring import (CONFIDENCE, PREDICTION,  # noqa: F401 (public)
                                          PROBABILITY, ChunkScorer, Scored, build_scorer)
from prodml.serving.batch_source import Source, open_source
from prodml.serving.endpoints import marked_pii, pii_columns
from prodml.serving.runtime import LoadedModel
from prodml.serving.validation import signature_schema

EXPERIMENT = "batch-predictions"
ENGINES = ("local", "dask")
Progress = Callable[[int, "int | None"], None]  # (rows done, rows in all when known)


@dataclass(frozen=True)
class BatchResult:
    """What a batch job did: how many rows, how fast, where the answers went, its run."""

    target: str
    model: str  # the resolved version, "name/version"
    endpoint: str | None  # when the target was an endpoint
    engine: str
    rows: int
    chunks: int
    seconds: float  # reading, checking, predicting and writing (not the run's bookkeeping)
    output: str | None
    output_sha256: str | None  # a single output file's SHA-256 (a folder: see artifacts)
    artifacts: tuple[str, ...]  # SHA-256 of every output file logged with the run
    input_digest: str
    run_id: str | None
    predictions: pa.Table | None = field(default=None, repr=False, compare=False)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "model": self.model, "endpoint": self.endpoint,
                "engine": self.engine, "rows": self.rows, "chunks": self.chunks,
                "seconds": self.seconds, "rows_per_s": self.rows_per_s, "output": self.output,
                "output_sha256": self.output_sha256, "artifacts": list(self.artifacts),
                "input_digest": self.input_digest, "run_id": self.run_id}

    def __str__(self) -> str:
        via = f" (endpoint {self.endpoint})" if self.endpoint else ""
        where = f" -> {self.output}" if self.output else ""
        return (f"scored {self.rows:,} rows with {self.model}{via} in {self.seconds:.2f} s "
                f"({self.rows_per_s:,.0f} rows/s, {self.engine}){where}")


# -- the target ------------------------------------------------------------------------------
def primary_model(node: d.Node) -> str:
    """The version taking a deployment's primary traffic: a canary's or a shadow's primary,
    a blue-green pair's live colour.

    >>> primary_model(d.parse_spec({"kind": "canary", "primary": "loan/1",
    ...                             "candidate": "loan/2"}))
    'loan/1'
    """
    if isinstance(node, d.Direct):
        return node.model
    if isinstance(node, (d.Shadow, d.Canary)):
        return primary_model(node.primary)
    if isinstance(node, d.BlueGreen):
        return primary_model(node.live)
    return primary_model(node.node)


def resolve_target(target: str, *, store: Any = None) -> tuple[str, str | None]:
    """(model reference, endpoint name or None) for an endpoint name or a model reference."""
    from prodml.serving.endpoints import get_endpoint
    from prodml.tracking import registry

    if not isinstance(target, str) or not target.strip():
        raise InvalidInputError("target", target, "must be an endpoint name or a model "
                                "reference such as loan/2 or loan@champion")
    if "/" in target or "@" in target:
        return registry.get(target, store=store).ref, None
    try:
        endpoint = get_endpoint(target, store=store)
    except NotFoundError:
        raise NotFoundError("endpoint", target, "give an endpoint name or a model reference "
                            "such as loan/2 or loan@champion") from None
    return primary_model(endpoint.spec), endpoint.name


# -- the job ---------------------------------------------------------------------------------
def predict_batch(target: str, data: Any, *, output: str | os.PathLike[str] | None = None,
                  chunk_rows: int = 100_000, engine: str = "local", scheduler: str | None = None,
                  id_column: str | None = None, keep_columns: Sequence[str] | bool = (),
                  progress: Progress | None = None, store: Any = None,
                  experiment: str = EXPERIMENT) -> BatchResult:
    """Score ``data`` with ``target`` and record the job as a run.

    ``target``: an endpoint name (its primary version scores) or a model reference
    (``loan/2``, ``loan@champion``). ``data``: a CSV, Parquet, JSON-lines or Arrow file, a
    folder or glob of them, or a frame. ``output``: the Parquet file to write (the Dask
    engine writes a folder of part files there); without one, the answers come back in
    ``result.predictions``. ``id_column`` and ``keep_columns`` (names, or True for all) are
    copied to the output before the answers; those holding personal data (the endpoint's
    PII set, or the version's marks) as their hashes, as the prediction log keeps them. ``engine="dask"`` partitions the work with
    Dask, on the ``distributed`` scheduler at ``scheduler`` when given. ``progress`` is
    called with (rows done, rows in all or None) after each chunk.
    """
    from prodml.store import get_store
    from prodml.tracking.runs import start_run

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInputError("chunk_rows", chunk_rows, "must be a positive integer")
    if engine not in ENGINES:
        raise InvalidInputError("engine", engine, "must be one of " + ", ".join(ENGINES))
    if engine == "dask" and output is None:
        raise InvalidInputError("output", None, "the dask engine writes its answers to a "
                                "folder: give an output path")
    if scheduler is not None and engine != "dask":
        raise InvalidInputError("scheduler", scheduler, "is only used by the dask engine")
    store = store or get_store()
    ref, endpoint = resolve_target(target, store=store)
    model = LoadedModel.load(ref, store=store)
    schema = model.schema or (signature_schema(model.signature) if model.signature else None)
    source = open_source(data, schema)
    scorer = build_scorer(model, schema, source.arrow_schema.names, id_column, keep_columns,
                          pii_columns(endpoint, store=store) if endpoint is not None
                          else marked_pii(model.schema))
    final = _check_output(output, source, engine) if output is not None else None
    params = {"target": target, "model": ref, "endpoint": endpoint, "engine": engine,
              "chunk_rows": chunk_rows, "scheduler": scheduler, "id_column": id_column,
              "output": str(final) if final else None, "data": source.label}
    with start_run(experiment, {k: v for k, v in params.items() if v is not None},
                   name=f"predict {endpoint or ref}", store=store) as run:
        started = time.perf_counter()
        if engine == "dask":
            from prodml.serving.batch_dask import run_dask

            done = run_dask(scorer, source, final, chunk_rows=chunk_rows, scheduler=scheduler,
                            progress=progress)
        else:
            done = _run_local(scorer, source, final, chunk_rows, progress)
        seconds = time.perf_counter() - started
        digest = source.digest()
        _log_input(run, source, digest, done.rows, done.nulls)
        run.log_metrics({"rows": done.rows, "chunks": done.chunks, "seconds": seconds,
                         "rows_per_s": done.rows / seconds if seconds > 0 else 0.0})
        logged = run.log_artifact(final) if final is not None else []
    return BatchResult(target, ref, endpoint, engine, done.rows, done.chunks, seconds,
                       str(final) if final else None,
                       logged[0].sha256 if final is not None and final.is_file() else None,
                       tuple(a.sha256 for a in logged), digest, run.id, done.table)


def _check_output(output: str | os.PathLike[str], source: Source, engine: str) -> Path:
    final = Path(output).absolute()
    if any(final == p.absolute() for p in source.paths) or \
            any(final in p.absolute().parents for p in source.paths):
        raise InvalidInputError("output", str(output), "must not be the input data")
    if engine == "local" and final.is_dir():
        raise InvalidInputError("output", str(output), "is a folder; the local engine writes "
                                "one Parquet file")
    if engine == "dask" and final.is_file():
        raise InvalidInputError("output", str(output), "is a file; the dask engine writes a "
                                "folder of Parquet files")
    final.parent.mkdir(parents=True, exist_ok=True)
    return final


def _run_local(scorer: ChunkScorer, source: Source, final: Path | None, chunk_rows: int,
               progress: Progress | None) -> Scored:
    done = Scored()
    partial = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.partial") \
        if final is not None else None
    writer: Any = None
    kept: list[pa.Table] = []
    try:
        for chunk, answers in in_order(scorer, source.batches(scorer.read, chunk_rows)):
            done.add(chunk)
            if partial is None:
                kept.append(answers)
            else:
                if writer is None:
                    writer = parquet_writer(partial, answers.schema)
                writer.write_table(answers)
            if progress is not None:
                progress(done.rows, source.total_rows)
        if not done.rows:
            raise InvalidInputError("data", source.label, "holds no rows to score")
        scorer.check_totals(done.rows, done.nulls)
        if writer is not None:
            writer.close()
            writer = None
            os.replace(partial, final)  # type: ignore[arg-type]
    finally:
        if writer is not None:
            writer.close()
        if partial is not None and partial.exists():
            partial.unlink()
    if partial is None:
        done.table = pa.concat_tables(kept)
    return done


def in_order(scorer: ChunkScorer, chunks: Iterable[pa.Table], threads: int | None = None
             ) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(chunk, answers) in input order, scored on ``threads`` threads while this one reads
    and writes. Arrow, NumPy and scikit-learn release the GIL for the heavy parts; at most
    ``threads + 1`` chunks are held at once. The first bad chunk in input order raises."""
    threads = threads or min(4, os.cpu_count() or 1)
    first_row = 0
    if threads < 2:
        for chunk in chunks:
            yield chunk, scorer(chunk, first_row)
            first_row += chunk.num_rows
        return
    pending: deque[tuple[pa.Table, concurrent.futures.Future[pa.Table]]] = deque()
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="batch") as pool:
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(scorer, chunk, first_row)))
                first_row += chunk.num_rows
                if len(pending) > threads:
                    chunk, future = pending.popleft()
                    yield chunk, future.result()
            while pending:
                chunk, future = pending.popleft()
                yield chunk, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def parquet_writer(path: str | os.PathLike[str], schema: pa.Schema) -> Any:
    """A Parquet writer for answers. Dictionary encoding only for the predicted class:
    probabilities and ids are nearly all distinct, and trying a dictionary on them first
    made writing three times slower (Arrow's default)."""
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, schema, use_dictionary=[PREDICTION])


def replace_folder(partial: Path, final: Path) -> None:
    """Put a finished folder where ``final`` is; an older one there goes only after."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.old")
        os.replace(final, old)
    os.replace(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _log_input(run: Any, source: Source, digest: str, rows: int, nulls: dict[str, int]) -> None:
    """The input as a dataset version of the run (context ``input``), from what was counted
    while reading: a run's ``log_dataset`` would read the whole file again."""
    from sqlalchemy import select

    from prodml.store import now_ms
    from prodml.store import tables as t

    schema = [{"name": f.name, "type": logical_type(f.type), "arrow_type": str(f.type),
               "nullable": nulls[f.name] > 0 if f.name in nulls else None}
              for f in source.arrow_schema]
    store = run.store
    with store.write() as conn:
        conn.execute(store.insert(t.datasets).values(
            digest=digest, name=source.name, source=source.label,
            source_type=source.source_type, num_rows=rows, num_columns=len(schema),
            schema=schema, created_at=now_ms()).on_conflict_do_nothing(index_elements=["digest"]))
        dataset_id = conn.execute(select(t.datasets.c.id)
                                  .where(t.datasets.c.digest == digest)).scalar_one()
        conn.execute(store.insert(t.run_inputs).values(run_id=run.id, dataset_id=dataset_id,
                                                       context="input")
                     .on_conflict_do_nothing())
