"""``prodml predict TARGET DATA -o OUT``: batch predictions into a Parquet file, as a run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from prodml.cli.output import console, errors, print_json, short


def predict_command(
        target: Annotated[str, typer.Argument(
            help="Endpoint name (its primary version scores) or model reference (loan/2, "
                 "loan@champion).")],
        data: Annotated[str, typer.Argument(
            help="CSV, Parquet, JSON-lines or Arrow file, a folder of them, or a glob.")],
        output: Annotated[Path, typer.Option(
            "-o", "--output", help="Parquet file to write (a folder with --engine dask).")],
        chunk_rows: Annotated[int, typer.Option(
            "--chunk-rows", min=1, help="Rows read, checked and predicted at a time.")
        ] = 100_000,
        engine: Annotated[str, typer.Option(
            "--engine", help="local (chunks in this process) or dask (partitions).")
        ] = "local",
        scheduler: Annotated[str | None, typer.Option(
            "--scheduler", help="Dask distributed scheduler address (tcp://host:8786); "
                                "without it, Dask's local threads.")] = None,
        id_column: Annotated[str | None, typer.Option(
            "--id-column", help="Input column copied to the output beside each answer.")
        ] = None,
        keep: Annotated[list[str] | None, typer.Option(
            "--keep", help="Another input column to copy to the output (repeatable).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")
                           ] = False,
) -> None:
    """Score a data file with an endpoint or a model version; the job is recorded as a run
    with its input (digest) and output (SHA-256)."""
    from prodml.serving.batch import EXPERIMENT, predict_batch

    options = {"output": output, "chunk_rows": chunk_rows, "engine": engine,
               "scheduler": scheduler, "id_column": id_column, "keep_columns": keep or ()}
    if as_json:
        print_json(predict_batch(target, data, **options).to_dict())
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    columns = (TextColumn("[bold]predict[/] {task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("rows"), TextColumn("{task.fields[speed]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=True,
                  disable=not errors.is_terminal) as bar:
        task = bar.add_task(f"{target} {data}", total=None, speed="")

        # Speed counts from the first chunk's end: the start pays for loading the model.
        first: list[tuple[float, int]] = []

        def advance(done: int, total: int | None) -> None:
            now = time.perf_counter()
            first[:] = first or [(now, done)]
            took, rows = now - first[0][0], done - first[0][1]
            bar.update(task, completed=done, total=total,
                       speed=f"{rows / took:,.0f} rows/s" if took > 0 else "")

        result = predict_batch(target, data, progress=advance, **options)
    via = f" (endpoint {result.endpoint})" if result.endpoint else ""
    console.print(f"scored {result.rows:,} rows with [bold]{result.model}[/]{via} in "
                  f"{result.seconds:.2f} s ({result.rows_per_s:,.0f} rows/s, "
                  f"{result.chunks} chunks, {result.engine})", highlight=False)
    console.print(f"output  {result.output}" + (f" (sha256 {result.output_sha256[:12]})"
                                                if result.output_sha256 else
                                                f" ({len(result.artifacts)} files)"),
                  highlight=False)
    console.print(f"run     {short(result.run_id or '')} (experiment {EXPERIMENT}; "
                  f"input digest {result.input_digest[:12]})", highlight=False)
