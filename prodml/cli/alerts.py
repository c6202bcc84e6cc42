"""``prodml alerts list|show|ack``: what the monitors found."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from prodml.cli.output import console, number, print_json, when

app = typer.Typer(help="Alerts raised by monitors: list, show, acknowledge.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("list")
def list_command(
        status: Annotated[str, typer.Option(help="firing, resolved or all.")] = "all",
        monitor: Annotated[str | None, typer.Option(help="Only this monitor's.")] = None,
        endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
        as_json: JsonFlag = False) -> None:
    """Alerts, newest first."""
    from prodml.errors import InvalidInputError
    from prodml.monitoring.store import list_alerts

    if status not in ("firing", "resolved", "all"):
        raise InvalidInputError("--status", status, "must be firing, resolved or all")
    alerts = list_alerts(monitor=monitor, endpoint=endpoint,
                         status=None if status == "all" else status, limit=limit)
    if as_json:
        print_json([a.to_dict() for a in alerts])
        return
    if not alerts:
        console.print("no " + ("" if status == "all" else status + " ") + "alerts",
                      highlight=False)
        return
    table = Table(title=f"alerts ({len(alerts)})", header_style="bold")
    for column in ("id", "status", "severity", "monitor", "rule", "window", "fired", "value",
                   "change", "acked"):
        table.add_column(column, justify="right" if column in ("id", "window", "value")
                         else "left")
    for a in alerts:
        colour = "red" if a.status == "firing" else "green"
        kind = (a.finding or {}).get("kind") or "-"
        table.add_row(str(a.id), f"[{colour}]{a.status}[/]", a.severity, escape(a.monitor),
                      escape(a.rule), str(a.window_index), when(a.fired_at), number(a.value),
                      kind, escape(a.acked_by) if a.acked_by else "-")
    console.print(table)


@app.command("show")
def show_command(alert: Annotated[str, typer.Argument(help="The alert's number.")],
                 as_json: JsonFlag = False) -> None:
    """One alert: what fired, when, the kind of change, what the sinks and actions did."""
    from prodml.monitoring.store import get_alert

    a = get_alert(alert)
    if as_json:
        print_json(a.to_dict())
        return
    colour = "red" if a.status == "firing" else "green"
    console.print(f"[bold]alert #{a.id}[/] [{colour}]{a.status}[/] ({a.severity}) — monitor "
                  f"{escape(a.monitor)}, endpoint {escape(a.endpoint)}", highlight=False)
    console.print(escape(a.message), highlight=False)
    lines = [("rule", a.rule), ("series", a.series),
             ("window", f"#{a.window_index} ({when(a.window_start)} .. {when(a.window_end)})"),
             ("started", when(a.started_at)), ("fired", when(a.fired_at)),
             ("resolved", when(a.resolved_at)),
             ("value", (f"{number(a.value)} (peak {number(a.peak)}, bounds "
                        f"[{number(a.lower)}, {number(a.upper)}], {a.breaches} breaching "
                        "windows)")),
             ("acked", f"{when(a.acked_at)} by {a.acked_by}" if a.acked else "no")]
    finding = a.finding or {}
    if finding:
        delay = finding.get("delay") or {}
        lines.append(("change", f"{finding.get('kind')} on {finding.get('series')}"
                      + (f" from window {finding['change_window']}"
                         if finding.get("change_window") is not None else "")
                      + (f", detected {delay.get('windows')} windows / "
                         f"{number(delay.get('seconds'))} s later" if delay else "")))
        if finding.get("detection"):
            d = finding["detection"]
            lines.append(("detection", (f"{d['detector']} at labelled prediction "
                                        f"{d['position']} ({d['prediction_id']})")))
    for report in a.actions:
        what = report.get("sink") or report.get("action")
        ok = {True: "[green]ok[/]", False: "[red]failed[/]"}.get(report.get("ok"), "pending")
        lines.append(("sink" if "sink" in report else "action",
                      f"{what}: {ok} {escape(str(report.get('detail', '')))}"))
    for key, value in lines:
        console.print(f"[bold]{key:10}[/] {value}", highlight=False)


@app.command("ack")
def ack_command(alert: Annotated[str, typer.Argument(help="The alert's number.")],
                by: Annotated[str | None, typer.Option(
                    "--by", help="Who is on it (default: the current user).")] = None,
                as_json: JsonFlag = False) -> None:
    """Acknowledge an alert: someone is on it (acknowledging twice keeps the first)."""
    from prodml.monitoring.store import ack_alert

    a = ack_alert(alert, by)
    if as_json:
        print_json(a.to_dict())
    else:
        console.print(f"alert #{a.id} acknowledged by {escape(a.acked_by or '')} at "
                      f"{when(a.acked_at)}", highlight=False)
