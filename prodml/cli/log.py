"""``prodml log``: the prediction log's retention: ``retention`` sets or shows an endpoint's
policy, ``prune`` enforces it (or a cutoff given here) now."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.markup import escape

from prodml.cli.output import console, print_json
from prodml.errors import InvalidInputError

app = typer.Typer(help="The prediction log: retention and pruning.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ``2024-01-31``, ``2024-01-31T12:00:00`` (UTC unless
    it names a zone) or a number of milliseconds."""
    if text.strip().isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError("before", text, "must be a date (2024-01-31), a time "
                                "(2024-01-31T12:00:00) or milliseconds since the epoch"
                                ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


@app.command("retention")
def retention_command(
        endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
        retention: Annotated[str | None, typer.Argument(
            help="How long to keep predictions: an age (90d, 36h, 2w), a row count "
                 "('1000000 rows'), or off. Leave out to show the current policy.")] = None,
        archive: Annotated[bool, typer.Option(
            "--archive/--no-archive", help="Write pruned rows to Parquet in the artifact "
                                           "store first.")] = False,
        keep_labelled: Annotated[bool, typer.Option(
            "--keep-labelled/--no-keep-labelled",
            help="Keep rows that have a label (for retraining), whatever their age.")] = False,
        actor: Annotated[str | None, typer.Option(help="Who makes the change.")] = None,
        as_json: JsonFlag = False) -> None:
    """Set (or show) ENDPOINT's retention of its prediction log."""
    from prodml.serving.retention import get_retention, set_retention

    if retention is None:
        policy = get_retention(endpoint)
    else:
        policy = set_retention(endpoint, retention, archive=archive,
                               keep_labelled=keep_labelled, actor=actor)
    if as_json:
        print_json({"endpoint": endpoint, **policy.to_dict()})
        return
    if policy.retention is None:
        console.print(f"{escape(endpoint)}: no retention (the log is kept whole)",
                      highlight=False)
        return
    extras = [w for w, on in (("archived first", policy.archive),
                              ("labelled rows kept", policy.keep_labelled)) if on]
    console.print(f"{escape(endpoint)}: keep {escape(str(policy.retention))}"
                  + (f" ({', '.join(extras)})" if extras else ""), highlight=False)


@app.command("prune")
def prune_command(
        endpoint: Annotated[str | None, typer.Argument(
            help="The endpoint (default: every endpoint with a retention policy).")] = None,
        before: Annotated[str | None, typer.Option(
            help="Prune rows logged before this date, time (UTC) or ms since the epoch.")
        ] = None,
        older_than: Annotated[str | None, typer.Option(
            "--older-than", help="Prune rows older than this age (90d, 36h, 2w).")] = None,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Say what would be pruned; change nothing.")] = False,
        actor: Annotated[str | None, typer.Option(help="Who prunes (recorded).")] = None,
        as_json: JsonFlag = False) -> None:
    """Prune the prediction log as the endpoint's retention policy says, or up to a cutoff
    given here (archiving and keeping labelled rows as the policy says)."""
    from prodml.serving.retention import prune, prune_all

    cutoff = parse_time(before) if before is not None else None
    if endpoint is None:
        if cutoff is not None or older_than is not None:
            raise InvalidInputError("endpoint", None, "name the endpoint to prune with "
                                    "--before or --older-than")
        results = prune_all(dry_run=dry_run, actor=actor)
    else:
        results = [prune(endpoint, before=cutoff, older_than=older_than, dry_run=dry_run,
                         actor=actor)]
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    if not results:
        console.print("no endpoint has a retention policy; nothing pruned", highlight=False)
    for result in results:
        console.print(escape(result.summary()), highlight=False)
