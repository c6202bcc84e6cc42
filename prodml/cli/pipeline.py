"""``prodml pipeline run|runs|show|approve|resume``: pipelines from the command line.

Exit codes a CI job can act on: 0 the run succeeded, 1 it failed (the error on one line),
2 the command was wrong (no such file or pipeline, an unknown ``--param``), 3 the run waits
for an approval (the line says which step and how to approve it).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prodml.cli.output import console, errors, print_json, when
from prodml.errors import InvalidInputError

app = typer.Typer(help="Pipelines: run them, list and show their runs, approve waiting "
                       "steps and resume.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 1, 2, 3


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value is JSON when it parses as JSON, else the text itself.

    >>> parse_params(["n=3", "name=loan", "weights=[1, 2]", "when=2024-01-01"])
    {'n': 3, 'name': 'loan', 'weights': [1, 2], 'when': '2024-01-01'}
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError("--param", pair, "must be KEY=VALUE")
        try:
            params[key.strip()] = json.loads(text)
        except ValueError:
            params[key.strip()] = text
    return params


def _usage_error(error: Exception) -> None:
    errors.print(f"[red]error:[/] {escape(' '.join(str(error).split()))}", highlight=False,
                 soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


@app.command("run")
def run_command(
        target: Annotated[str, typer.Argument(
            metavar="FILE[:NAME]", help="A Python file (or module) and the pipeline in it; "
                                        "NAME may be left out when it defines one.")],
        param: Annotated[list[str] | None, typer.Option(
            "--param", "-p", help="KEY=VALUE (JSON when it parses, else text); repeatable.")
        ] = None,
        engine: Annotated[str, typer.Option(
            help="local (threads), processes (worker processes) or dask.")] = "local",
        scheduler: Annotated[str | None, typer.Option(
            help="Dask scheduler address (tcp://host:8786); none: a local cluster.")] = None,
        no_cache: Annotated[bool, typer.Option(
            "--no-cache", help="Run every step even when an earlier execution matches.")
        ] = False,
        as_json: JsonFlag = False) -> None:
    """Run a pipeline and record every step; exit 1 if it failed, 3 if it waits."""
    from prodml.pipelines.loading import load_pipeline

    try:
        pipeline = load_pipeline(target)
        params = parse_params(param or [])
        pipeline.resolve_params(params)
        if engine not in ("local", "processes", "dask"):
            raise InvalidInputError("--engine", engine, "must be local, processes or dask")
        if scheduler is not None and engine != "dask":
            raise InvalidInputError("--scheduler", scheduler, "needs --engine dask")
    except InvalidInputError as error:
        _usage_error(error)
    run = pipeline.run(params, engine=engine,  # type: ignore[arg-type]
                       scheduler=scheduler, cache=not no_cache, triggered_by="cli")
    _report(run, as_json)


@app.command("resume")
def resume_command(
        run_id: Annotated[str, typer.Argument(help="The waiting run (or a prefix).")],
        engine: Annotated[str | None, typer.Option(
            help="local, processes or dask (default: the engine the run started on).")
        ] = None,
        scheduler: Annotated[str | None, typer.Option(
            help="Dask scheduler address; none: a local cluster.")] = None,
        as_json: JsonFlag = False) -> None:
    """Run a waiting run on after its steps were approved."""
    from prodml.pipelines.approvals import resume

    _report(resume(run_id, engine=engine, scheduler=scheduler), as_json)


@app.command("approve")
def approve_command(
        run_id: Annotated[str, typer.Argument(help="The waiting run (or a prefix).")],
        step: Annotated[str, typer.Argument(help="The step waiting for approval.")],
        by: Annotated[str | None, typer.Option(help="Who approves (default: you).")] = None,
        reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
        reject: Annotated[bool, typer.Option(
            "--reject", help="Reject instead: the step fails when the run resumes.")] = False,
        as_json: JsonFlag = False) -> None:
    """Approve (or reject) a waiting step; then `prodml pipeline resume RUN_ID`."""
    from prodml.pipelines import approvals

    decide = approvals.reject if reject else approvals.approve
    approval = decide(run_id, step, by=by, reason=reason)
    if as_json:
        print_json(approval)
        return
    console.print(f"step {escape(step)} {approval['decision']} by {escape(approval['by'])}; "
                  f"next: prodml pipeline resume {escape(run_id)}", highlight=False)


@app.command("runs")
def runs_command(
        pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's runs.")] = None,
        status: Annotated[str | None, typer.Option(
            help="Only runs with this status (running, succeeded, failed, waiting).")] = None,
        limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")
                         ] = 50,
        as_json: JsonFlag = False) -> None:
    """Pipeline runs, newest first."""
    from prodml.pipelines.results import runs

    found = runs(pipeline, status=status, limit=limit)
    if as_json:
        print_json([{k: v for k, v in r.to_dict().items() if k != "executions"}
                    | {"steps": _tally(r)} for r in found])
        return
    if not found:
        console.print("no pipeline runs (prodml pipeline run FILE.py)")
        return
    table = Table(title=f"pipeline runs ({len(found)})", header_style="bold")
    for column in ("run", "pipeline", "status", "steps", "started", "duration", "by"):
        table.add_column(column)
    for r in found:
        table.add_row(r.id[:8], escape(r.pipeline), _status(r.status),
                      ", ".join(f"{n} {s}" for s, n in _tally(r).items()), when(r.created_at),
                      _seconds(r.created_at, r.ended_at), escape(r.triggered_by or ""))
    console.print(table)


@app.command("show")
def show_command(run_id: Annotated[str, typer.Argument(help="A run id (or a prefix).")],
                 logs: Annotated[bool, typer.Option(
                     "--logs", help="Also print what each step printed and logged.")] = False,
                 as_json: JsonFlag = False) -> None:
    """One run: its steps with status, cache source, duration, inputs and outputs."""
    from prodml.pipelines.results import get_run

    run = get_run(run_id)
    if as_json:
        print_json(run.to_dict())
        return
    console.print(f"[bold]{escape(run.pipeline)}[/] run {run.id} {_status(run.status)} — "
                  f"started {when(run.created_at)} by {escape(run.triggered_by or '-')}, "
                  f"{_seconds(run.created_at, run.ended_at)}", highlight=False)
    console.print(f"params {escape(json.dumps(run.params))} · engine "
                  f"{run.spec.get('engine', 'local')} · {escape(str(run.spec.get('target')))}",
                  highlight=False)
    _steps_table(run, details=True)
    for e in run.executions if logs else []:
        if e.logs:
            console.rule(f"{escape(e.step)} ({e.status})")
            console.print(e.logs.rstrip("\n"), highlight=False, markup=False)
    if run.error:
        console.print(f"[red]error:[/] {escape(run.error)}", highlight=False)


def _report(run: Any, as_json: bool) -> None:
    if as_json:
        print_json(run.to_dict())
    else:
        _steps_table(run, details=False)
        tally = ", ".join(f"{n} {s}" for s, n in _tally(run).items())
        console.print(f"run {run.id[:8]} of {escape(run.pipeline)} {_status(run.status)} "
                      f"({tally}) in {_seconds(run.created_at, run.ended_at)}",
                      highlight=False)
    if run.status == "failed":
        errors.print(f"[red]error:[/] {escape(' '.join((run.error or '').split()))}",
                     highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAILED)
    if run.status == "waiting":
        for step in run.waiting_for:
            errors.print(f"waiting: step {escape(step)} awaits approval (prodml pipeline "
                         f"approve {run.id[:8]} {escape(step)}, then prodml pipeline resume "
                         f"{run.id[:8]})", highlight=False, soft_wrap=True)
        sys.exit(EXIT_WAITING)


def _steps_table(run: Any, details: bool) -> None:
    table = Table(header_style="bold")
    columns = ["step", "status", "duration", "cached from", "outputs"]
    if details:
        columns[4:4] = ["inputs"]
        columns.append("run")
    for column in columns:
        table.add_column(column)
    for e in run.executions:
        outputs = ", ".join(f"{o.name}={o.type}:{o.digest[:10]}" for o in e.outputs)
        row = [escape(e.step), _status(e.status),
               "-" if e.duration_s is None else f"{e.duration_s:.3f}s",
               str(e.cached_from or "-"), escape(outputs or "-")]
        if details:
            row[4:4] = [escape(", ".join(f"{i.name}={i.type}:{i.digest[:10]}"
                                         for i in e.inputs) or "-")]
            row.append(e.run_id[:8] if e.run_id else "-")
        table.add_row(*row)
    console.print(table)


def _tally(run: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in run.executions:
        counts[e.status] = counts.get(e.status, 0) + 1
    return counts


def _status(status: str) -> str:
    colour = {"succeeded": "green", "cached": "cyan", "failed": "red", "waiting": "yellow",
              "skipped": "dim"}.get(status)
    return f"[{colour}]{status}[/]" if colour else status


def _seconds(start: int | None, end: int | None) -> str:
    return "-" if start is None or end is None else f"{(end - start) / 1000:.2f}s"
