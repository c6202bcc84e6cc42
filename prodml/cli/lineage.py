"""``prodml lineage REF --up|--down [--depth N] [--json]``: where a record came from, or
everything it touched.

Exit status: 0 with the graph; 2 when the store knows no record by ``REF`` (one line on
stderr naming it, through ``prodml.cli.app.main``); 1 for other bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from prodml.cli.output import console, print_json


def lineage_command(
        ref: Annotated[str, typer.Argument(
            help="A prediction id, model (loan/3, loan@champion, models:/loan/3), run id, "
                 "dataset digest, artifact:ID, pipeline run id, source path or URI, or "
                 "KIND:KEY (endpoint:loan, labeler:ann, execution:5).")],
        down: Annotated[bool, typer.Option(
            "--down/--up", help="Follow what it touched (--down) or where it came from "
                                "(--up, the default).")] = False,
        depth: Annotated[int | None, typer.Option(
            min=0, help="At most this many hops from REF.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the graph as JSON.")
                           ] = False) -> None:
    """Lineage of one record: up to its data, sources and labelers, or down to the models,
    endpoints and predictions it reached."""
    from prodml.pipelines.lineage import lineage

    graph = lineage(ref, "down" if down else "up", depth)
    if as_json:
        print_json(graph.to_dict())
        return
    console.print(escape(graph.to_text()), highlight=False, soft_wrap=True)
    counts = {}
    for node in graph.nodes.values():
        counts[node.kind] = counts.get(node.kind, 0) + 1
    summary = ", ".join(f"{n} {kind.replace('_', ' ')}{'s' if n > 1 and kind[-1] != 's' else ''}"
                        for kind, n in sorted(counts.items()))
    console.print(f"[dim]{'downstream' if down else 'upstream'} of {escape(ref)}: "
                  f"{summary}[/]", highlight=False)
