"""``prodml labels import|agreement|disputes|consensus|hlp|issues``.

Every command but ``import`` and ``issues`` reads annotations from a FILE when one is given,
else from the store (narrowed by ``--instruction``, ``--labeler``, ``--dataset``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prodml.cli.output import console, print_json
from prodml.errors import InvalidInputError

app = typer.Typer(help="Labels: import annotations, agreement, disputes, consensus, human-level "
                  "performance, label errors.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
FileArg = Annotated[str | None, typer.Argument(
    help="Annotations file (CSV, Parquet, JSON lines); default: the store's annotations.")]
ItemOpt = Annotated[str, typer.Option(help="Column of the item id.")]
LabelerOpt = Annotated[str, typer.Option(help="Column of the labeler id.")]
LabelOpt = Annotated[str, typer.Option(help="Column of the label.")]
InstructionOpt = Annotated[str | None, typer.Option(
    "--instruction", help="Only annotations made under this instruction version.")]
OnlyLabelerOpt = Annotated[list[str] | None, typer.Option(
    "--only-labeler", help="Only this labeler's annotations (repeatable).")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", help="Only annotations of this dataset version (digest or data file).")]


def _annotations(file: str | None, item: str, labeler: str, label: str,
                 instruction: str | None = None, only: list[str] | None = None,
                 dataset: str | None = None) -> Any:
    from prodml.data.labels import as_annotations
    from prodml.tracking import annotations as store_api

    if file is None:
        ann = store_api.load(instruction=instruction, labeler=only or None, dataset=dataset)
        if len(ann) == 0:
            raise InvalidInputError("annotations", "the store", "holds none (that match): "
                                    "prodml labels import FILE first")
        return ann
    if not Path(file).exists():
        raise InvalidInputError("file", file, "file does not exist")
    ann = as_annotations(file, item=item, labeler=labeler, label=label)
    if instruction is not None or only:
        import polars as pl

        keep = pl.lit(True)
        if instruction is not None:
            keep = keep & (pl.col("instruction") == instruction)
        if only:
            keep = keep & pl.col("labeler").is_in(only)
        ann = as_annotations(ann.frame.filter(keep), metadata=ann.metadata)
    return ann


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1%}"


def _num(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


@app.command("import")
def import_command(
        file: Annotated[str, typer.Argument(help="CSV, Parquet or JSON-lines file of labels.")],
        item: ItemOpt = "item", labeler: LabelerOpt = "labeler", label: LabelOpt = "label",
        time: Annotated[str, typer.Option(help="Column of the time labelled.")] = "time",
        instruction: Annotated[str, typer.Option(
            help="Column of the instruction version.")] = "instruction",
        metadata: Annotated[list[str] | None, typer.Option(
            help="Metadata column to keep (repeatable; default: every other column).")] = None,
        dataset: Annotated[str | None, typer.Option(
            help="Dataset version the items are rows of: a digest or the data file.")] = None,
        row: Annotated[str | None, typer.Option(
            help="Column of the row number in that dataset (default: the item id).")] = None,
        as_json: JsonFlag = False) -> None:
    """Add a file of annotations to the store (all of it or, on an error, none)."""
    from prodml.tracking.annotations import import_annotations

    if not Path(file).exists():
        raise InvalidInputError("file", file, "file does not exist")
    done = import_annotations(file, item=item, labeler=labeler, label=label, time=time,
                              instruction=instruction, metadata=metadata, dataset=dataset,
                              row=row)
    if as_json:
        print_json(done.to_dict())
        return
    linked = f", rows of dataset {done.dataset_digest[:12]}" if done.dataset_digest else ""
    console.print(f"imported {done.rows} annotations of {done.items} items by {done.labelers} "
                  f"labelers from {escape(done.source)}{linked}", highlight=False)


@app.command()
def agreement(file: FileArg = None, item: ItemOpt = "item", labeler: LabelerOpt = "labeler",
              label: LabelOpt = "label",
              level: Annotated[str, typer.Option(
                  help="nominal, ordinal, interval or ratio.")] = "nominal",
              instruction: InstructionOpt = None, only_labeler: OnlyLabelerOpt = None,
              dataset: DatasetOpt = None, as_json: JsonFlag = False) -> None:
    """How consistently people label: kappas, alpha, per labeler, per class, by instruction."""
    from prodml.data.labels import agreement as measure

    report = measure(_annotations(file, item, labeler, label, instruction, only_labeler,
                                  dataset), level=level)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(f"{report.items} items, {report.annotations} labels, "
                  f"{len(report.labelers)} labelers, {len(report.classes)} classes "
                  f"({report.level})", highlight=False)
    console.print(f"observed agreement [bold]{_pct(report.observed)}[/]   Fleiss' kappa "
                  f"[bold]{_num(report.fleiss_kappa)}[/]   Krippendorff's alpha "
                  f"[bold]{_num(report.krippendorff_alpha)}[/]", highlight=False)
    if report.by_instruction:
        table = Table(title="by instruction version", header_style="bold")
        for column in ("instruction", "items", "observed", "Fleiss' kappa", "alpha"):
            table.add_column(column, justify="left" if column == "instruction" else "right")
        for version, v in report.by_instruction.items():
            table.add_row(escape(version), f"{v['items']:.0f}", _pct(v["observed"]),
                          _num(v["fleiss_kappa"]), _num(v["krippendorff_alpha"]))
        console.print(table)
    table = Table(title="labelers (least consistent first)", header_style="bold")
    for column in ("labeler", "labels", "with consensus", "with others", "kappa"):
        table.add_column(column, justify="left" if column == "labeler" else "right")
    for x in sorted(report.per_labeler, key=lambda x: (x.with_consensus, x.labeler)):
        table.add_row(escape(x.labeler), str(x.annotations), _pct(x.with_consensus),
                      _pct(x.with_others), _num(x.kappa))
    console.print(table)
    table = Table(title="classes", header_style="bold")
    for column in ("class", "share", "specific agreement", "kappa"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for c in report.per_class:
        table.add_row(escape(str(c.label)), _pct(c.share), _pct(c.specific_agreement),
                      _num(c.kappa))
    console.print(table)
    mixed = report.confused(5)
    if mixed:
        console.print("most mixed up: " + ", ".join(f"{escape(str(a))} / {escape(str(b))} "
                                                     f"({n} pairs)" for a, b, n in mixed),
                      highlight=False)


@app.command()
def disputes(file: FileArg = None, item: ItemOpt = "item", labeler: LabelerOpt = "labeler",
             label: LabelOpt = "label",
             top: Annotated[int, typer.Option(min=1, help="How many items to show.")] = 20,
             min_labels: Annotated[int, typer.Option(
                 help="Only items with at least this many labels.")] = 2,
             instruction: InstructionOpt = None, dataset: DatasetOpt = None,
             as_json: JsonFlag = False) -> None:
    """The most disputed items (entropy of the votes), with who said what and metadata."""
    from prodml.data.labels import disputes as find

    found = find(_annotations(file, item, labeler, label, instruction, None, dataset), top=top,
                 min_labels=min_labels)
    if as_json:
        print_json(found.to_dict())
        return
    table = Table(title=f"most disputed of {found.disputed} disputed items "
                        f"({found.items} items)", header_style="bold")
    meta = [c for c in found.table.columns if c not in
            ("item", "entropy", "count", "majority", "majority_share", "votes", "labels")]
    for column in ("item", "entropy", "votes", "labels", *meta):
        table.add_column(column, justify="right" if column == "entropy" else "left")
    for row in found.table.iter_rows(named=True):
        table.add_row(escape(str(row["item"])), f"{row['entropy']:.2f}", escape(row["votes"]),
                      escape(row["labels"] or ""), *(escape(str(row[c])) for c in meta))
    console.print(table)


@app.command()
def consensus(file: FileArg = None, item: ItemOpt = "item", labeler: LabelerOpt = "labeler",
              label: LabelOpt = "label",
              ties: Annotated[str, typer.Option(
                  help="prior, first, random, model or none.")] = "prior",
              probs: Annotated[str | None, typer.Option(
                  help="A model's probabilities (item column + one column per class): "
                  "CROWDLAB consensus.")] = None,
              output: Annotated[str | None, typer.Option(
                  "--output", "-o", help="Write the consensus labels here (.csv or "
                  ".parquet).")] = None,
              instruction: InstructionOpt = None, dataset: DatasetOpt = None,
              as_json: JsonFlag = False) -> None:
    """One label per item: majority vote (ties explicit) or CROWDLAB with --probs."""
    from prodml.data.frames import to_arrow
    from prodml.data.labels import consensus as decide

    ann = _annotations(file, item, labeler, label, instruction, None, dataset)
    pred = None if probs is None else to_arrow(probs).to_pandas()
    if pred is not None:
        pred.columns = [str(c) for c in pred.columns]
    result = decide(ann, method="crowdlab" if pred is not None else "majority", ties=ties,
                    pred_probs=pred)
    if output:
        path = Path(output)
        if path.suffix.lower() not in (".csv", ".parquet"):
            raise InvalidInputError("output", output, "must end in .csv or .parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        (result.table.write_csv if path.suffix.lower() == ".csv"
         else result.table.write_parquet)(path)
    if as_json:
        print_json({**result.to_dict(), "output": output})
        return
    console.print(f"{result.method} consensus of {result.table.height} items: {result.tied} "
                  f"tied (settled by {result.ties})", highlight=False)
    table = Table(title="labelers against the consensus", header_style="bold")
    for column in ("labeler", "labels", "agreement", "quality"):
        table.add_column(column, justify="left" if column == "labeler" else "right")
    for x in sorted(result.labelers, key=lambda x: (x.agreement, x.labeler)):
        table.add_row(escape(x.labeler), str(x.annotations), _pct(x.agreement), _num(x.quality))
    console.print(table)
    if output:
        console.print(f"wrote {output} ({result.table.height} rows)", highlight=False)


@app.command()
def hlp(file: FileArg = None, item: ItemOpt = "item", labeler: LabelerOpt = "labeler",
        label: LabelOpt = "label",
        truth: Annotated[str | None, typer.Option(
            help="Ground truth: a labeler's name, or a file with item and label columns "
            "(default: each labeler against the others).")] = None,
        slice_by: Annotated[list[str] | None, typer.Option(
            "--slice", help="Metadata column to slice by (repeatable).")] = None,
        aggregate: Annotated[str, typer.Option(help="mean, best or pooled.")] = "mean",
        instruction: InstructionOpt = None, dataset: DatasetOpt = None,
        as_json: JsonFlag = False) -> None:
    """Human-level performance: each labeler's accuracy, overall and per slice."""
    from prodml.data.labels import human_level

    ann = _annotations(file, item, labeler, label, instruction, None, dataset)
    given: Any = truth
    if truth is not None and truth not in set(ann.labelers.tolist()):
        if not Path(truth).exists():
            raise InvalidInputError("truth", truth, "is neither a labeler nor a file")
        from prodml.data.frames import to_arrow

        given = to_arrow(truth)
    result = human_level(ann, truth=given, slices=slice_by or None, aggregate=aggregate)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(result.summary(), highlight=False)


@app.command()
def issues(data: Annotated[str, typer.Argument(help="Labelled data file (CSV, Parquet...).")],
           label: Annotated[str, typer.Option("--label", "-y", help="Label column.")] = "y",
           features: Annotated[str | None, typer.Option(
               help="Feature columns, comma-separated (default: all but the label).")] = None,
           cv: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
           top: Annotated[int, typer.Option(min=1, help="How many issues to show.")] = 20,
           seed: Annotated[int, typer.Option(help="Random seed of the folds.")] = 0,
           as_json: JsonFlag = False) -> None:
    """Likely label errors (cleanlab confident learning on out-of-fold probabilities)."""
    from prodml.data.labels import issues as find

    if not Path(data).exists():
        raise InvalidInputError("data", data, "file does not exist")
    found = find(data, label=label, features=features.split(",") if features else None,
                 cv=cv, seed=seed)
    if as_json:
        print_json(found.to_dict())
        return
    console.print(f"{found.found} likely label errors in {found.rows} rows", highlight=False)
    table = Table(title=f"worst {min(top, found.found)}", header_style="bold")
    for column in ("row", "label", "suggested", "probability", "label quality"):
        table.add_column(column, justify="right")
    for row in found.table.head(top).iter_rows(named=True):
        table.add_row(str(row["row"]), escape(str(row["label"])),
                      escape(str(row["suggested"])), _pct(row["suggested_probability"]),
                      _num(row["quality"]))
    console.print(table)
