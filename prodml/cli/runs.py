"""``prodml runs list|show|search|compare``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from prodml.cli.output import console, number, print_json, short, when
from prodml.tracking import runs as runs_api
from prodml.tracking.records import RunRecord

app = typer.Typer(help="Tracked runs: list, inspect, search and compare.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _runs_table(records: list[RunRecord], title: str) -> Table:
    metric_names = sorted({k for r in records for k in r.metrics})[:4]
    table = Table(title=title, header_style="bold")
    for column in ("run", "experiment", "name", "status", "started", *metric_names):
        table.add_column(column, justify="right" if column in metric_names else "left",
                         no_wrap=column in ("run", "status"))
    for r in records:
        style = {"FAILED": "red", "RUNNING": "yellow", "KILLED": "magenta"}.get(r.status, "")
        table.add_row(short(r.id), r.experiment, r.name, f"[{style}]{r.status}[/]" if style
                      else r.status, when(r.start_time)[5:16],
                      *[number(r.metrics.get(m)) for m in metric_names])
    return table


def _show_list(records: list[RunRecord], title: str, as_json: bool) -> None:
    if as_json:
        print_json([r.to_dict() for r in records])
    elif not records:
        console.print(f"{title}: no runs")
    else:
        console.print(_runs_table(records, f"{title} ({len(records)})"))


@app.command("list")
def list_runs(experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
              status: Annotated[str | None, typer.Option(
                  help="Only runs with this status (RUNNING, FINISHED, FAILED, KILLED).")] = None,
              limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
              as_json: JsonFlag = False) -> None:
    """List the newest runs."""
    query = f"status = '{status.upper()}'" if status else ""
    _show_list(runs_api.search(query, experiment=experiment, max_results=limit), "runs",
               as_json)


@app.command()
def search(query: Annotated[str, typer.Argument(
               help="e.g. \"metrics.f1 > 0.8 and (params.model = 'gbm' or tags.team = 'risk')\"")],
           experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
           order_by: Annotated[list[str] | None, typer.Option(
               "--order-by", help="e.g. 'metrics.f1 desc' (repeatable).")] = None,
           max_results: Annotated[int, typer.Option(help="At most this many runs.")] = 100,
           as_json: JsonFlag = False) -> None:
    """Search runs with AND, OR, NOT and parentheses over metrics, params, tags, attributes."""
    _show_list(runs_api.search(query, experiment=experiment, order_by=order_by,
                               max_results=max_results), "matching runs", as_json)


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
         as_json: JsonFlag = False) -> None:
    """Everything recorded about one run."""
    r = runs_api.get(run_id)
    if as_json:
        print_json(r.to_dict())
        return
    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold")
    overview.add_column()
    duration = f"{r.wall_time_s:.2f} s wall, {r.cpu_time_s:.2f} s CPU" if r.wall_time_s else "-"
    memory = f"{r.peak_memory_bytes / 2**20:.0f} MiB" if r.peak_memory_bytes else "-"
    code = (f"{r.code.commit[:12]} on {r.code.branch}" + (" (dirty)" if r.code.dirty else "")
            if r.code.commit else "not in a git repository")
    for label, value in (("run", r.id), ("experiment", r.experiment), ("name", r.name),
                         ("status", r.status), ("started", when(r.start_time)),
                         ("ended", when(r.end_time)), ("time", duration),
                         ("peak memory", memory), ("code", code),
                         ("host", f"{r.user}@{r.host}"),
                         ("python", str(r.environment.get("python", "-")))):
        overview.add_row(label, value)
    console.print(overview)
    for title, values in (("params", r.params), ("metrics", r.metrics), ("tags", r.tags)):
        if values:
            table = Table(title=title, header_style="bold")
            table.add_column("name")
            table.add_column("value", justify="right" if title == "metrics" else "left")
            for key in sorted(values):
                table.add_row(key, number(values[key]))
            console.print(table)
    if r.datasets:
        table = Table(title="datasets", header_style="bold")
        for column in ("context", "name", "rows", "columns", "digest", "source"):
            table.add_column(column)
        for d in r.datasets:
            table.add_row(d.context or "", d.name, str(d.num_rows), str(d.num_columns),
                          d.digest[:12], d.source)
        console.print(table)
    if r.artifacts:
        table = Table(title="artifacts", header_style="bold")
        for column in ("path", "size", "sha256"):
            table.add_column(column)
        for a in r.artifacts:
            table.add_row(a.path, str(a.size), a.sha256[:12])
        console.print(table)
    if r.error:
        console.print(f"[red]error:[/] {r.error.splitlines()[0]}")


@app.command()
def compare(run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
            only_diff: Annotated[bool, typer.Option(
                "--only-diff", help="Show only what differs.")] = False,
            as_json: JsonFlag = False) -> None:
    """Params, metrics and tags of runs side by side; differences highlighted."""
    comparison = runs_api.compare(run_ids)
    if as_json:
        print_json(comparison.to_dict())
        return
    table = Table(title="run comparison (differences in yellow)", header_style="bold")
    table.add_column("kind")
    table.add_column("name")
    for r in comparison.runs:
        table.add_column(f"{short(r.id)}\n{r.name}", justify="right")
    for row in comparison.rows:
        if only_diff and not row.differs:
            continue
        style = "yellow" if row.differs else ""
        table.add_row(row.kind, row.name, *[number(v) for v in row.values], style=style)
    console.print(table)
