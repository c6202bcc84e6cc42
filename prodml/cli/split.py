"""``prodml split DATA -o OUTDIR``: write train/validation/test parts and show their balance."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from prodml.cli.output import console, errors, print_json
from prodml.errors import InvalidInputError

if TYPE_CHECKING:
    from prodml.data.split import SplitResult

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError("ratios", text, "must be comma-separated numbers, e.g. "
                                "0.6,0.2,0.2") from None


def _balance_table(result: SplitResult) -> Table:
    table = Table(title=f"split ({result.method}, seed {result.seed})", header_style="bold")
    headers = [f"{result.label}={c}" if isinstance(result.label, str) else c
               for c in result.classes]
    for column in ("part", "rows", "share", "target", *headers):
        table.add_column(column, justify="left" if column == "part" else "right")
    for row in result.balance().iter_rows(named=True):
        cells = [f"{row[f'count_{c}']} ({_percent(row[f'share_{c}'])})" for c in result.classes]
        table.add_row(row["split"], str(row["rows"]), _percent(row["share"]),
                      _percent(row["target"]), *cells,
                      style="bold" if row["split"] == "all" else "")
    return table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def split_command(
        data: Annotated[str, typer.Argument(
            help="CSV, Parquet, JSON-lines or Arrow file to split.")],
        output: Annotated[str, typer.Option(
            "--output", "-o", help="Folder to write the parts to (created if missing).")],
        label: Annotated[list[str] | None, typer.Option(
            "--label", "-y", help="Column to stratify by; repeat it for a multi-label split "
            "over 0/1 columns.")] = None,
        ratios: Annotated[str, typer.Option(
            help="Shares of the parts, summing to 1.")] = "0.6,0.2,0.2",
        names: Annotated[str | None, typer.Option(
            help="Names of the parts, comma-separated (default: train,validation,test; "
            "train,test for two ratios).")] = None,
        groups: Annotated[str | None, typer.Option(
            help="Column whose groups must each stay in one part (no leakage).")] = None,
        seed: Annotated[int, typer.Option(help="Random seed: same seed, same parts.")] = 0,
        file_format: Annotated[str, typer.Option(
            "--format", help="File format of the parts: parquet or csv.")] = "parquet",
        as_json: JsonFlag = False) -> None:
    """Split a data file into parts that keep each class's share, and write them."""
    from prodml.data.split import DEFAULT_NAMES, SplitWarning, split  # Polars: only when used

    if file_format not in ("parquet", "csv"):
        raise InvalidInputError("format", file_format, "must be 'parquet' or 'csv'")
    with warnings.catch_warnings():  # shown below, once, as one line each
        warnings.simplefilter("ignore", SplitWarning)
        result = split(data, label=None if not label else label[0] if len(label) == 1 else label,
                       ratios=_numbers(ratios),
                       names=DEFAULT_NAMES if names is None else tuple(names.split(",")),
                       groups=groups, seed=seed)
    paths = result.save(output, format=file_format)
    if as_json:
        print_json({**result.to_dict(), "files": {name: str(p) for name, p in paths.items()}})
        return
    console.print(_balance_table(result))
    for name, path in paths.items():
        console.print(f"wrote {path} ({result.rows[name]} rows)", highlight=False)
    for note in result.warnings:
        errors.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
