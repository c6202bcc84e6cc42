"""``prodml schema infer`` and ``prodml validate``: propose a schema, check data against it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prodml.cli.output import console, print_json
from prodml.data.schema import Schema, infer_schema
from prodml.data.validate import ValidationResult, validate
from prodml.errors import InvalidInputError

app = typer.Typer(help="Data schemas: infer one from data, then validate data against it.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DataArg = Annotated[str, typer.Argument(
    help="A .csv, .parquet, .jsonl, .json, .arrow or .feather file.")]


@app.callback()
def _group() -> None:
    """Data schemas: infer one from data, then validate data against it."""


@app.command()
def infer(data: DataArg,
          output: Annotated[Path | None, typer.Option(
              "-o", "--output", help="Write the schema here (YAML); without it, print it.")
          ] = None,
          max_categories: Annotated[int, typer.Option(
              min=0, help="Most distinct values a text column may have to get categories.")
          ] = 50,
          range_margin: Annotated[float, typer.Option(
              min=0.0, help="Widen observed numeric ranges by this share of their span.")
          ] = 0.1,
          min_rows: Annotated[int, typer.Option(min=0, help="Least rows valid data has.")] = 1,
          force: Annotated[bool, typer.Option(
              "--force", help="Overwrite an existing output file.")] = False,
          as_json: JsonFlag = False) -> None:
    """Infer a schema from DATA: types, presence, categories, ranges, lengths."""
    if output is not None and output.exists() and not force:
        raise InvalidInputError("--output", str(output), "exists (hand edits would be lost); "
                                "pass --force to overwrite it")
    schema = infer_schema(data, max_categories=max_categories, range_margin=range_margin,
                          min_rows=min_rows)
    if output is not None:
        schema.save(output)
    if as_json:
        print_json(schema.to_dict())
    elif output is None:
        sys.stdout.write(schema.to_yaml())
    else:
        console.print(_schema_table(schema, f"schema of {data}"))
        console.print(f"wrote {output}: review it, then run "
                      f"prodml validate DATA --schema {output}", highlight=False)


def _schema_table(schema: Schema, title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for column in ("column", "type", "nulls", "domain", "length"):
        table.add_column(column)
    for name, rules in schema.columns.items():
        nulls = "no" if not rules.nullable else f"≥ {rules.min_presence:.0%} present"
        if rules.categories is not None:
            domain = ", ".join(rules.categories[:6]) + (
                f" (+{len(rules.categories) - 6})" if len(rules.categories) > 6 else "")
        elif rules.min_value is not None or rules.max_value is not None:
            domain = f"[{rules.min_value}, {rules.max_value}]"
        else:
            domain = ""
        length = (f"{rules.min_length}–{rules.max_length}"
                  if rules.min_length is not None or rules.max_length is not None else "")
        table.add_row(name, rules.type, nulls, domain, length)
    return table


def validate_command(
        data: DataArg,
        schema: Annotated[Path, typer.Option(
            "--schema", "-s", help="The schema YAML (from prodml schema infer, maybe edited).")],
        as_json: JsonFlag = False,
        html: Annotated[Path | None, typer.Option(
            "--html", help="Also write a self-contained HTML report here.")] = None) -> None:
    """Validate DATA against a schema; exit 1 when an anomaly is an error (warnings: 0)."""
    result = validate(data, Schema.from_yaml(schema))
    if html is not None:
        _write_atomically(html, result.to_html(f"Validation of {data}"))
    if as_json:
        print_json(result.to_dict())
    else:
        _print_result(result, data, schema)
        if html is not None:
            console.print(f"report: {html}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


def _print_result(result: ValidationResult, data: str, schema: Path) -> None:
    if result.anomalies:
        table = Table(title=f"{data} against {schema}", header_style="bold")
        for column in ("severity", "column", "kind", "what", "examples"):
            table.add_column(column, overflow="fold")
        for a in result.anomalies:
            style = "red" if a.severity == "error" else "yellow"
            examples = ", ".join(f"{e['row']}: {e['value']!r}"
                                 for e in a.evidence.get("examples", []))
            table.add_row(f"[{style}]{a.severity}[/]", a.column or "(dataset)", a.kind,
                          a.message, f"rows {examples}" if examples else "")
        console.print(table)
    colour = "green" if result.ok else "red"
    console.print(f"[{colour}]{result.headline()}[/]", highlight=False)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


app.command("validate")(validate_command)
