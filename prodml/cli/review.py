"""``prodml review list|resolve``: the human review queue."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from prodml.cli.output import console, number, print_json, short, when

app = typer.Typer(help="The human review queue: cases the model left to a person.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _text(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return escape(text if len(text) <= width else text[:width - 1] + "…")


@app.command("list")
def list_command(
        endpoint: Annotated[str | None, typer.Option(help="Only this endpoint.")] = None,
        status: Annotated[str, typer.Option(help="open, resolved or all.")] = "open",
        limit: Annotated[int, typer.Option(help="At most this many items.")] = 50,
        as_json: JsonFlag = False) -> None:
    """Review items, oldest first, with the inputs a person needs to decide."""
    from prodml.serving.review import list_reviews

    items = list_reviews(endpoint, status=None if status == "all" else status, limit=limit,
                         with_inputs=True)
    if as_json:
        print_json([item.to_dict() for item in items])
        return
    if not items:
        console.print(f"no {'' if status == 'all' else status + ' '}review items"
                      + (f" for endpoint {endpoint}" if endpoint else ""), highlight=False)
        return
    table = Table(title=f"review items ({len(items)})", header_style="bold")
    for column in ("id", "prediction", "endpoint", "created", "status", "suggestion",
                   "confidence", "label", "inputs"):
        table.add_column(column, justify="right" if column in ("id", "confidence") else "left")
    for item in items:
        table.add_row(str(item.id), short(item.prediction_id), item.endpoint,
                      when(item.created_at), item.status, _text(item.suggestion, 20),
                      number(item.confidence),
                      "-" if item.label is None else _text(item.label, 20),
                      _text(item.inputs or {}))
    console.print(table)


def parse_label(text: str) -> Any:
    """A label from the command line: JSON when it parses (1, true, "a b"), else the text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


@app.command("resolve")
def resolve_command(
        item: Annotated[str, typer.Argument(help="Review item id, or the prediction id.")],
        label: Annotated[str, typer.Argument(
            help="The person's answer: JSON when it parses (1, true, '\"1\"'), else text.")],
        by: Annotated[str | None, typer.Option(
            "--by", help="Who decided (default: the current user).")] = None,
        as_json: JsonFlag = False) -> None:
    """Resolve a review item with a person's label (recorded as feedback)."""
    from prodml.serving.review import resolve_review
    from prodml.tracking.environment import user

    resolved = resolve_review(item, parse_label(label), by or user() or "unknown")
    if as_json:
        print_json(resolved.to_dict())
    else:
        console.print(f"review item {resolved.id} (prediction {resolved.prediction_id}) "
                      f"resolved by {resolved.resolver}: {_text(resolved.label)}",
                      highlight=False)
