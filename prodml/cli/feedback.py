"""``prodml feedback import``: ground truth and outcome events from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodml.cli.output import console, print_json

app = typer.Typer(help="Feedback for logged predictions: labels and outcome events.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("import")
def import_command(
        file: Annotated[Path, typer.Argument(
            help="CSV, Parquet or JSON lines with prediction_id and label, or event "
                 "(and an optional value).")],
        source: Annotated[str, typer.Option(help="Where the feedback came from.")] = "import",
        as_json: JsonFlag = False) -> None:
    """Record every row of FILE as feedback, or none if any row is wrong."""
    from prodml.serving.feedback import import_feedback
    from prodml.tracking.environment import user

    # Whoever can write the store is trusted with it; the OS user is who that is here.
    recorded = import_feedback(file, source=source, actor=user())
    if as_json:
        print_json({"file": str(file), "recorded": recorded, "source": source})
    else:
        console.print(f"recorded {recorded} feedback items from {file}", highlight=False)
