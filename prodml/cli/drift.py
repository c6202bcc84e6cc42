"""``prodml drift REFERENCE CURRENT``: compare two datasets (or saved profiles) for drift.

Exit status: 0 when compared (drift or not), 1 with ``--fail-on-drift`` when dataset drift is
found; bad input is one line on stderr and exit 1 (through ``prodml.cli.app.main``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prodml.cli.output import console, number, print_json
from prodml.errors import InvalidInputError

PROFILE_SUFFIX = ".profile"  # Profile.to_bytes() written to a file

app = typer.Typer(help="Data drift between a reference and a current dataset.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _load(path: Path) -> Any:
    if path.suffix.lower() == PROFILE_SUFFIX:
        from prodml.data.profile import Profile
        if not path.exists():
            raise InvalidInputError("path", str(path), "file does not exist")
        return Profile.from_bytes(path.read_bytes())
    return os.fspath(path)


def _column_methods(specs: list[str]) -> dict[str, str | tuple[str, float]]:
    """``col=method`` or ``col=method:threshold``, e.g. ``age=psi:0.2``."""
    methods: dict[str, str | tuple[str, float]] = {}
    for spec in specs:
        column, sep, rest = spec.partition("=")
        if not sep or not column or not rest:
            raise InvalidInputError("--column-method", spec, "must be COLUMN=METHOD or "
                                    "COLUMN=METHOD:THRESHOLD")
        method, sep, limit = rest.partition(":")
        if not sep:
            methods[column] = method
            continue
        try:
            methods[column] = (method, float(limit))
        except ValueError:
            raise InvalidInputError("--column-method", spec, "threshold must be a number")
    return methods


def drift_command(
        reference: Annotated[Path, typer.Argument(
            help="Reference data: .csv, .parquet, .jsonl, .arrow, or a saved .profile.")],
        current: Annotated[Path, typer.Argument(help="Current data, in the same forms.")],
        html: Annotated[Path | None, typer.Option(
            "--html", help="Write a self-contained HTML report here.")] = None,
        fail_on_drift: Annotated[bool, typer.Option(
            "--fail-on-drift", help="Exit 1 when dataset drift is found (for CI jobs).")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        column_method: Annotated[list[str] | None, typer.Option(
            "--column-method", help="COLUMN=METHOD[:THRESHOLD], repeatable; methods: ks, "
            "wasserstein, psi, jensenshannon, chisquare, chi2_contingency, z, l_infinity, "
            "anderson, cramer_von_mises.")] = None,
        columns: Annotated[str | None, typer.Option(
            help="Comma-separated columns to compare (default: all).")] = None,
        label: Annotated[str | None, typer.Option(
            help="Label column: reported apart as prior shift.")] = None,
        prediction: Annotated[str | None, typer.Option(
            help="Prediction column: reported apart as prediction drift.")] = None,
        drift_share: Annotated[float, typer.Option(
            help="Dataset drift when at least this share of columns drift.")] = 0.5,
        skew: Annotated[bool, typer.Option(
            "--skew", help="Name the sides training and serving (training-serving skew).")
        ] = False) -> None:
    """Compare CURRENT with REFERENCE column by column (Evidently's default methods)."""
    from prodml.data.drift import drift

    report = drift(_load(reference), _load(current),
                   columns=[c.strip() for c in columns.split(",")] if columns else None,
                   methods=_column_methods(column_method or []), drift_share=drift_share,
                   label=label, prediction=prediction, kind="skew" if skew else "drift")
    if html is not None:
        report.write_html(html)
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(_table(report))
        for name, why in report.skipped.items():
            console.print(f"[yellow]skipped[/] {name}: {why}")
        if html is not None:
            console.print(f"report     {html}")
    if fail_on_drift and report.dataset_drift:
        raise typer.Exit(1)


def _table(report: Any) -> Table:
    style = "bold red" if report.dataset_drift else "bold green"
    table = Table(title=f"[{style}]{report.headline()}[/]", header_style="bold")
    for column, right in (("column", False), ("kind", False), ("method", False),
                          ("score", True), ("threshold", True), ("drifted", False)):
        table.add_column(column, justify="right" if right else "left")
    ranked = sorted(report.columns, key=lambda c: -c.severity)
    roles = [c for c in (report.label, report.prediction) if c is not None]
    for c in [*ranked, *roles]:
        name = c.name if c.role == "feature" else \
            f"{c.name} ({'prior shift' if c.role == 'label' else 'prediction drift'})"
        table.add_row(name, c.kind, c.method, number(c.score), number(c.threshold),
                      "[red]yes[/]" if c.drifted else "no",
                      end_section=c is ranked[-1] if ranked and roles else False)
    if report.from_profiles:
        table.caption = "estimated from profiles' sketches"
    return table


app.command("drift")(drift_command)
