"""``prodml profile DATA``: what a dataset looks like, column by column."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prodml.cli.output import console, number, print_json


def profile_command(
        data: Annotated[Path, typer.Argument(help="CSV, Parquet, JSON-lines or Arrow file.")],
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Also save the full profile (sketches included) here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False
) -> None:
    """Profile a data file: types, missing values, moments, quantiles, distinct and top values."""
    from prodml.data.profile import profile

    with console.status(f"profiling {data}"):
        result = profile(data)
    if output is not None:
        output.write_bytes(result.to_bytes())
    if as_json:
        print_json(result.to_dict())
        return
    table = Table(title=f"{data} ({result.rows} rows)", header_style="bold")
    categorical = any(c.kind != "numeric" for c in result.columns.values())
    for column in ("column", "type", "missing", "distinct", "mean", "std", "min", "p50", "max",
                   *(["top values"] if categorical else [])):
        table.add_column(column, justify="left" if column in ("column", "type", "top values")
                         else "right")
    for col in result.columns.values():
        if col.kind == "numeric":
            p50 = col.quantiles([0.5])[0]
            stats = [number(col.mean), number(col.std), number(col.min), number(p50),
                     number(col.max), *([""] if categorical else [])]
        else:
            top = ", ".join(f"{v} ({c})" for v, c in col.top_values(3))
            stats = ["", "", "", "", "", top]
        share = f"{col.missing / col.count:.1%}" if col.count else "-"
        table.add_row(col.name, col.logical_type, share, f"{col.distinct:,.0f}", *stats)
    console.print(table)
    if output is not None:
        console.print(f"saved {output} ({output.stat().st_size:,} bytes)")
