"""The Dask engine of batch predictions: the same :class:`ChunkScorer` on every partition.

Partitions come from ``dask.dataframe`` (``read_parquet``, ``read_csv``, ``read_json``, or a
frame in memory); ``map_partitions`` scores each in slices of ``chunk_rows`` and the worker
writes its answers as ``part-NNNNN.parquet`` into a hidden folder beside the output, which is
renamed to the output only when every partition has passed its checks. Workers therefore
need to see the output's folder (a shared filesystem), as with Dask's own ``to_parquet``.

With a scheduler address the job runs on that ``distributed`` cluster; without one, on the
local threaded scheduler (scikit-learn and Arrow release the GIL for the heavy parts).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from prodml.errors import InvalidInputError
from prodml.serving.batch import Progress, parquet_writer, replace_folder
from prodml.serving.batch_scoring import ChunkScorer, Scored
from prodml.serving.batch_source import Source

_PANDAS_TYPES = {"float": "float64", "integer": "Int64", "boolean": "boolean",
                 "string": "string", "category": "string"}


def dask_frame(source: Source, columns: list[str], chunk_rows: int, scorer: ChunkScorer
               ) -> Any:
    """The data as a Dask DataFrame of the ``columns`` the job reads."""
    import dask.dataframe as dd

    if source.table is not None:
        return dd.from_pandas(source.table.select(columns).to_pandas(), chunksize=chunk_rows)
    files = [str(p) for p in source.paths]
    if source.kind == "parquet":
        return dd.read_parquet(files, columns=columns, blocksize="64MiB")
    rules = scorer.schema.columns if scorer.schema is not None else {}
    dtypes = {n: _PANDAS_TYPES[c.type] for n, c in rules.items()
              if n in columns and c.type in _PANDAS_TYPES}
    if source.kind == "csv":
        return dd.read_csv(files, usecols=columns, dtype=dtypes, blocksize="64MiB")
    if source.kind == "json":
        return dd.read_json(files, lines=True, blocksize=2**26, dtype=dtypes)[columns]
    raise InvalidInputError("data", source.label, "the dask engine reads Parquet, CSV and "
                            "JSON-lines files")


def _score_partition(frame: Any, scorer: ChunkScorer, folder: str, chunk_rows: int,
                     partition_info: dict[str, Any] | None = None) -> Any:
    """Score one partition and write its part file; a one-row frame of what was counted."""
    import pandas as pd

    number = partition_info["number"] if partition_info else 0
    table = pa.Table.from_pandas(frame, preserve_index=False)
    done = Scored()
    writer = None
    try:
        for start in range(0, table.num_rows, chunk_rows):
            chunk = table.slice(start, chunk_rows)
            answers = scorer(chunk, start, partition=number)
            done.add(chunk)
            if writer is None:
                writer = parquet_writer(f"{folder}/part-{number:05d}.parquet", answers.schema)
            writer.write_table(answers)
    finally:
        if writer is not None:
            writer.close()
    return pd.DataFrame({"rows": [done.rows], "chunks": [done.chunks],
                         **{f"nulls.{n}": [done.nulls.get(n, 0)] for n in frame.columns}})


def run_dask(scorer: ChunkScorer, source: Source, final: Path, *, chunk_rows: int,
             scheduler: str | None, progress: Progress | None) -> Scored:
    """Score every partition, then rename the finished folder to ``final``."""
    import pandas as pd

    frame = dask_frame(source, scorer.read, chunk_rows, scorer)
    partial = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.partial")
    partial.mkdir()
    meta = pd.DataFrame({name: pd.Series(dtype="int64") for name in
                         ["rows", "chunks", *(f"nulls.{n}" for n in frame.columns)]})
    try:
        parts = frame.map_partitions(_score_partition, scorer, str(partial), chunk_rows,
                                     meta=meta).to_delayed()
        counts = _compute(parts, scheduler, progress, source.total_rows)
        done = Scored(rows=int(sum(c["rows"].sum() for c in counts)),
                      chunks=int(sum(c["chunks"].sum() for c in counts)),
                      nulls={n: int(sum(c[f"nulls.{n}"].sum() for c in counts))
                             for n in frame.columns})
        if not done.rows:
            raise InvalidInputError("data", source.label, "holds no rows to score")
        scorer.check_totals(done.rows, done.nulls)
        replace_folder(partial, final)
    except (ValueError, TypeError, OSError, pa.ArrowException) as exc:
        # pandas and Arrow parse errors from a partition (a bad value in a CSV block)
        raise InvalidInputError("data", source.label, "cannot be scored: "
                                + str(exc).splitlines()[0]) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return done


def _compute(parts: list[Any], scheduler: str | None, progress: Progress | None,
             total: int | None) -> list[Any]:
    """Each partition's counts, reporting rows as partitions finish."""
    rows = 0

    def finished(counts: Any) -> None:
        nonlocal rows
        rows += int(counts["rows"].sum())
        if progress is not None:
            progress(rows, total)

    if scheduler is None:
        import dask
        from dask.callbacks import Callback

        keys = {part.key for part in parts}

        class _Finished(Callback):
            def _posttask(self, key: Any, result: Any, *_: Any) -> None:
                if key in keys:
                    finished(result)

        with _Finished():
            return list(dask.compute(*parts, scheduler="threads"))
    from distributed import Client, as_completed

    with Client(scheduler, set_as_default=False) as client:
        futures = client.compute(parts)
        order = {future.key: i for i, future in enumerate(futures)}
        counts: list[Any] = [None] * len(futures)
        try:
            for future in as_completed(futures, loop=client.loop):
                counts[order[future.key]] = future.result()
                finished(counts[order[future.key]])
        except BaseException:
            client.cancel(futures)
            raise
        return counts
