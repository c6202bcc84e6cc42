"""``prodml monitor add|list|run|series|remove``: monitors of the prediction log."""

from __future__ import annotations

import math
import threading
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prodml.cli.output import console, number, print_json, when

app = typer.Typer(help="Monitors: windows over an endpoint's prediction log, their series "
                       "and alerts.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _window(spec: Any) -> str:
    window = spec.window
    if window.predictions is not None:
        return f"{window.predictions} predictions"
    unit = next(u for u in ("seconds", "minutes", "hours") if getattr(window, u) is not None)
    return f"{getattr(window, unit):g} {unit}"


@app.command("add")
def add_command(
        file: Annotated[str, typer.Argument(help="The monitor's YAML (or JSON) file.")],
        disabled: Annotated[bool, typer.Option(
            "--disabled", help="Save it without running it on schedule.")] = False,
        as_json: JsonFlag = False) -> None:
    """Validate a monitor spec and save it (replacing a monitor of the same name)."""
    from prodml.monitoring.store import save_monitor

    info = save_monitor(file, enabled=not disabled)
    if as_json:
        print_json(info.to_dict())
        return
    spec = info.spec
    checks = [g for g in ("software", "input", "output", "drift", "prior_shift", "performance",
                          "estimated_performance", "concept_drift")
              if getattr(spec.checks, g) is not None]
    console.print(f"monitor [bold]{escape(info.name)}[/] of endpoint {escape(info.endpoint)} "
                  f"saved: windows of {_window(spec)}, checks {', '.join(checks)}, "
                  f"{len(spec.alerts)} alert rule{'s' * (len(spec.alerts) != 1)}, sinks "
                  f"{', '.join(s.type for s in spec.sinks) or 'none'}", highlight=False)


@app.command("list")
def list_command(
        endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's.")] = None,
        as_json: JsonFlag = False) -> None:
    """The monitors, how far each got, and their firing alerts."""
    from prodml.monitoring.store import list_alerts, list_monitors

    monitors = list_monitors(endpoint)
    firing: dict[str, int] = {}
    for alert in list_alerts(status="firing", limit=10_000):
        firing[alert.monitor] = firing.get(alert.monitor, 0) + 1
    if as_json:
        print_json([{**m.to_dict(), "firing": firing.get(m.name, 0)} for m in monitors])
        return
    if not monitors:
        console.print("no monitors" + (f" for endpoint {endpoint}" if endpoint else "")
                      + " (prodml monitor add FILE.yaml)", highlight=False)
        return
    table = Table(title=f"monitors ({len(monitors)})", header_style="bold")
    for column in ("name", "endpoint", "window", "windows", "open", "last run", "firing",
                   "state"):
        table.add_column(column, justify="right" if column in ("windows", "open", "firing")
                         else "left")
    for m in monitors:
        state = "[red]" + escape(m.last_error[:60]) + "[/]" if m.last_error else (
            "enabled" if m.enabled else "disabled")
        table.add_row(escape(m.name), escape(m.endpoint), _window(m.spec), str(m.windows),
                      str(m.pending_rows), when(m.last_run_at), str(firing.get(m.name, 0)),
                      state)
    console.print(table)


@app.command("run")
def run_command(
        name: Annotated[str | None, typer.Argument(help="A monitor (default: every enabled "
                                                        "monitor).")] = None,
        every: Annotated[str | None, typer.Option(
            help="Run again at this interval until interrupted: 30s, 1m, 1h.")] = None,
        full: Annotated[bool, typer.Option(
            "--full", help="Start over from the beginning of the log (recompute every "
                           "window).")] = False,
        lag: Annotated[str, typer.Option(
            help="Leave the newest predictions (commits still in flight) to the next run."
        )] = "2s",
        as_json: JsonFlag = False) -> None:
    """Read what is new in the log, close complete windows, store their series, move alerts."""
    from prodml.monitoring.runner import run_all, run_monitor
    from prodml.monitoring.scheduler import parse_interval, run_every

    lag_ms = round(parse_interval(lag) * 1000) if lag not in ("0", "0s") else 0

    def show(run: Any) -> None:
        if as_json:
            print_json(run.to_dict())
        else:
            _print_run(run)

    if every is None:
        runs = [run_monitor(name, full=full, lag_ms=lag_ms)] if name else (
            [run_monitor(n, full=True, lag_ms=lag_ms) for n in _names()] if full
            else run_all(lag_ms=lag_ms))
        if as_json:
            print_json([r.to_dict() for r in runs] if name is None else runs[0].to_dict())
            return
        if not runs:
            console.print("no enabled monitors (prodml monitor add FILE.yaml)")
        for run in runs:
            _print_run(run)
        return
    seconds = parse_interval(every)
    if full:
        for run in ([run_monitor(name, full=True, lag_ms=lag_ms)] if name else
                    [run_monitor(n, full=True, lag_ms=lag_ms) for n in _names()]):
            show(run)
    if not as_json:
        console.print(f"running {'monitor ' + name if name else 'every enabled monitor'} "
                      f"every {every} (Ctrl-C stops)", highlight=False)
    run_every(seconds, monitor=name, on_run=show, stop=threading.Event(), lag_ms=lag_ms)


def _names() -> list[str]:
    from prodml.monitoring.store import list_monitors
    return [m.name for m in list_monitors() if m.enabled]


def _print_run(run: Any) -> None:
    if run.skipped:
        console.print(f"monitor {escape(run.monitor)}: skipped ({escape(run.skipped)})",
                      highlight=False)
        return
    windows = run.windows
    span = (f"windows {windows[0]['index']}..{windows[-1]['index']}" if len(windows) > 1
            else f"window {windows[0]['index']}" if windows else "no window closed")
    console.print(f"monitor [bold]{escape(run.monitor)}[/]: read {run.read} new predictions, "
                  f"{span}, {len(run.settled)} settled with labels, {run.pending_rows} in the "
                  f"open window ({run.seconds:.2f} s)", highlight=False)
    for event in run.events:
        colour = "red" if event["status"] == "firing" else "green"
        kind = (event.get("finding") or {}).get("kind")
        console.print(f"  [{colour}]{event['status']}[/] alert #{event['id']} at window "
                      f"{event['window_index']}: {escape(event['message'])}"
                      + (f" ({kind})" if kind and kind != "none" else ""), highlight=False)
    for detection in run.detections:
        console.print(f"  concept drift: {detection['detector']} fired at labelled prediction "
                      f"{detection['position']} (window {detection['window_index']})",
                      highlight=False)
    for note in run.notes:
        console.print(f"  [yellow]note[/]: {escape(note)}", highlight=False)


@app.command("series")
def series_command(
        name: Annotated[str, typer.Argument(help="A monitor, or an endpoint (all its "
                                                 "monitors).")],
        series: Annotated[list[str] | None, typer.Option(
            "--series", "-s", help="Series names or patterns (drift_score[*]); repeatable.")
        ] = None,
        last: Annotated[int, typer.Option(help="Only the last N windows.", min=1)] = 20,
        as_json: JsonFlag = False) -> None:
    """A monitor's stored series, one row per window."""
    import polars as pl

    from prodml.monitoring.store import monitor_series

    frames = [monitor_series(name, s) for s in series] if series else [monitor_series(name)]
    frame = pl.concat(frames).unique(maintain_order=True) if len(frames) > 1 else frames[0]
    if frame.height:
        keep = frame["window_index"].unique().sort().tail(last)
        frame = frame.filter(pl.col("window_index").is_in(keep.implode()))
    if as_json:
        print_json([{k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in row.items()} for row in frame.iter_rows(named=True)])
        return
    if frame.height == 0:
        console.print(f"no series stored for {escape(name)} yet (prodml monitor run)",
                      highlight=False)
        return
    wide = frame.pivot(on="series", index=["monitor", "window_index", "window_end", "rows"],
                       values="value", aggregate_function="first").sort("monitor",
                                                                        "window_index")
    names = [c for c in wide.columns if c not in ("monitor", "window_index", "window_end",
                                                  "rows")]
    if len(names) > 12 and not series:
        console.print(f"{len(names)} series; showing 12 (choose with --series)",
                      highlight=False)
        names = names[:12]
    table = Table(title=f"series of {escape(name)}", header_style="bold")
    for column in ("monitor", "window", "end", "rows", *names):
        table.add_column(escape(column), justify="left" if column in ("monitor", "end")
                         else "right")
    for row in wide.iter_rows(named=True):
        table.add_row(escape(row["monitor"]), str(row["window_index"]), when(row["window_end"]),
                      str(row["rows"]), *[number(row[n]) for n in names])
    console.print(table)


@app.command("remove")
def remove_command(name: Annotated[str, typer.Argument(help="The monitor.")],
                   as_json: JsonFlag = False) -> None:
    """Delete a monitor and its series (its alerts stay, as history)."""
    from prodml.monitoring.store import delete_monitor

    delete_monitor(name)
    if as_json:
        print_json({"removed": name})
    else:
        console.print(f"monitor {escape(name)} removed", highlight=False)
