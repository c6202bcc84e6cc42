"""``prodml evaluate MODEL_REF DATA``: slice metrics, fairness and a gate, kept with the version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prodml.cli.output import console, number, print_json
from prodml.errors import InvalidInputError


def parse_slice(text: str) -> Any:
    """``col``, ``a*b`` (a cross), ``col:0,30,60`` (bin edges) or ``col:4`` (quantile bins).

    >>> parse_slice("age:0,30,60"), parse_slice("zip*age"), parse_slice("city")
    (('age', [0.0, 30.0, 60.0]), ('zip', 'age'), 'city')
    """
    if "*" in text:
        return tuple(part.strip() for part in text.split("*"))
    name, sep, spec = text.partition(":")
    if not sep:
        return name
    try:
        edges = [float(v) for v in spec.split(",")]
    except ValueError:
        raise InvalidInputError("--slice", text, "bins must be numbers: col:0,30,60 or "
                                "col:4") from None
    return (name, int(edges[0])) if len(edges) == 1 else (name, edges)


def features_of(version: Any, frame: Any, label: str) -> Any:
    """The columns the model expects (its signature), else every column but the label."""
    if version.signature is not None:
        missing = [c for c in version.signature.names if c not in frame.columns]
        if missing:
            raise InvalidInputError("data", ", ".join(missing), f"columns required by "
                                    f"{version.ref}'s signature are missing")
        return frame[version.signature.names]
    return frame.drop(columns=[label])


def evaluate_command(
        model_ref: Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS.")],
        data: Annotated[Path, typer.Argument(help="Labelled data: CSV, Parquet, JSON lines.")],
        label: Annotated[str, typer.Option("--label", "-y", help="The label column.")],
        slice_: Annotated[list[str] | None, typer.Option(
            "--slice", help="col, a*b, col:0,30,60 (bins) or col:4 (quantiles); repeatable."
        )] = None,
        protected: Annotated[list[str] | None, typer.Option(
            help="Protected attribute for the fairness audit (repeatable).")] = None,
        gate_spec: Annotated[Path | None, typer.Option(
            "--gate", help="Gate spec (YAML): exit 1 when the version is not blessed.")] = None,
        baseline: Annotated[str | None, typer.Option(
            help="Model to compare with for change bounds (e.g. loan@champion).")] = None,
        html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
        attach: Annotated[bool, typer.Option(
            help="Keep the evaluation (and blessing) with the version.")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Evaluate a registered model on labelled data; with --gate, bless it or exit 1."""
    from prodml.data.frames import digest_file, to_arrow
    from prodml.evaluation.evaluate import evaluate
    from prodml.evaluation.gates import gate
    from prodml.tracking import registry

    version = registry.get(model_ref)
    frame = to_arrow(data).to_pandas()
    if label not in frame.columns:
        raise InvalidInputError("--label", label, f"is not a column of {data}")
    slices = [parse_slice(s) for s in slice_ or []]

    def run(ref: str) -> Any:
        v = registry.get(ref)
        return evaluate(registry.load(v.ref), frame, label=label, slices=slices,
                        protected=protected or None,
                        features=list(features_of(v, frame, label).columns))

    result = run(version.ref)
    blessing = None
    if gate_spec is not None:
        baselines = {"baseline": run(baseline)} if baseline else {}
        blessing = gate(result, gate_spec, baselines=baselines)
    if attach:
        registry.attach_evaluation(version.ref, result, blessing, name=data.name,
                                   dataset_digest=digest_file(data))
    if html is not None:
        html.write_text(result.to_html())
    if as_json:
        print_json({"ref": version.ref, "result": result.to_dict(),
                    "blessing": blessing.to_dict() if blessing else None})
    else:
        _print(version.ref, result, blessing, html)
    if blessing is not None and not blessing.blessed:
        raise typer.Exit(1)


def _print(ref: str, result: Any, blessing: Any, html: Path | None) -> None:
    names = [m for m in ("accuracy", "f1", "roc_auc", "mae", "rmse", "r2")
             if m in result.overall.metrics][:4]
    table = Table(title=f"{ref} on {result.overall.count} rows", header_style="bold")
    table.add_column("slice")
    table.add_column("rows", justify="right")
    for m in names:
        table.add_column(m, justify="right")
    for s in (result.overall, *result.slices, *result.critical):
        table.add_row(s.name + (" (small)" if s.small else ""), str(s.count),
                      *[number(s.metrics.get(m)) for m in names])
    console.print(table)
    for attribute, report in (result.fairness or {}).items():
        console.print(f"fairness {attribute}: demographic parity ratio "
                      f"{number(report.demographic_parity_ratio)}, equalized odds difference "
                      f"{number(report.equalized_odds_difference)} "
                      f"({'ok' if report.ok else 'parity violated'})")
    if blessing is not None:
        console.print(blessing.summary(), highlight=False, markup=False)
    if html is not None:
        console.print(f"report {html}")
