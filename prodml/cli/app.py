"""The ``prodml`` entry point: command groups, and errors as one line with a non-zero exit."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from prodml.cli import deployments, models, runs
from prodml.cli import schema as schema_cli
from prodml.cli import split as split_cli
from prodml.cli import feedback as feedback_cli
from prodml.cli import labels as labels_cli
from prodml.cli import log as log_cli
from prodml.cli import review as review_cli
from prodml.cli import monitor as monitor_cli
from prodml.cli import alerts as alerts_cli
from prodml.cli import pipeline as pipeline_cli
from prodml.cli import tokens as tokens_cli
from prodml.cli.drift import drift_command
from prodml.cli.evaluate import evaluate_command
from prodml.cli.lineage import lineage_command
from prodml.cli.profile import profile_command
from prodml.cli.ui import ui_command
from prodml.cli.predict import predict_command
from prodml.cli.output import console, errors, print_json
from prodml.errors import ProdmlError, QuerySyntaxError

app = typer.Typer(name="prodml", no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Machine learning in production: track, register, serve, monitor.",
                  context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(labels_cli.app, name="labels")
app.add_typer(feedback_cli.app, name="feedback")
app.add_typer(review_cli.app, name="review")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(pipeline_cli.app, name="pipeline")
app.add_typer(tokens_cli.app, name="tokens")
app.add_typer(log_cli.app, name="log")
app.command("profile")(profile_command)
app.add_typer(schema_cli.app, name="schema")
app.command("validate")(schema_cli.validate_command)
app.command("split")(split_cli.split_command)
app.command("drift")(drift_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("serve")(deployments.serve_command)
app.command("deploy")(deployments.deploy_command)
app.command("rollback")(deployments.rollback_command)
app.command("promote")(deployments.promote_command)
app.command("switch")(deployments.switch_command)
app.command("pause")(deployments.pause_command)
app.command("resume")(deployments.resume_command)
app.add_typer(deployments.app, name="deployments")
app.command("ui")(ui_command)
app.command("lineage")(lineage_command)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
def demo(rows: Annotated[int, typer.Option(min=200, help="Loan applications to generate.")] = 6000,
         seed: Annotated[int, typer.Option(help="Random seed for data and models.")] = 42,
         serve: Annotated[bool, typer.Option(
             help="Serve the champion over HTTP, shadow and canary a challenger, watch later "
                  "traffic and retrain when the monitors fire.")] = True,
         fast: Annotated[bool, typer.Option(
             "--fast", help="Half the later traffic, and exit at the end (under 2 minutes).")
         ] = False,
         keep_serving: Annotated[bool | None, typer.Option(
             "--keep-serving/--no-keep-serving",
             help="Keep the dashboard up at the end until Ctrl-C (default: on a terminal, "
                  "unless --fast).")] = None,
         as_json: JsonFlag = False) -> None:
    """Run the loan-approval lifecycle demo on the configured store (SQLite by default)."""
    from prodml.demo.lifecycle import MODEL_NAME, run_demo
    from prodml.store import get_store

    store = get_store()
    if keep_serving is None:
        keep_serving = not fast and not as_json and sys.stdout.isatty()
    if as_json:
        print_json(run_demo(rows, seed, store=store, serve=serve, fast=fast).to_dict())
        return
    shown = []

    def hold(result: Any) -> None:  # the server is still up: show everything, then wait
        status.stop()
        _print_demo(result, MODEL_NAME)
        shown.append(True)
        _hold(result.dashboard_url)

    with console.status("starting") as status:
        result = run_demo(rows, seed, store=store, serve=serve, fast=fast,
                          hold=hold if keep_serving else None,
                          say=lambda m: (console.log(escape(m)), status.update(escape(m))))
    if not shown:
        _print_demo(result, MODEL_NAME)


def _print_demo(result: Any, model_name: str) -> None:
    table = Table(title="loan-approval runs (test set)", header_style="bold")
    table.add_column("role")
    table.add_column("run")
    for metric in ("accuracy", "f1", "roc_auc", "log_loss"):
        table.add_column(metric, justify="right")
    for role, metrics in result.metrics.items():
        table.add_row(role, result.runs[role][:8],
                      *[f"{metrics[m]:.4f}" for m in ("accuracy", "f1", "roc_auc", "log_loss")])
    console.print(table)
    for role, verdict in result.gates.items():
        state = "[green]blessed[/]" if verdict["blessed"] else "[red]not blessed[/]"
        failures = verdict["failures"]
        why = (f" — {len(failures)} conditions failed, e.g. {escape(failures[0])}"
               if failures else "")
        console.print(f"gate loan-release on {verdict['ref']} ({role}): {state}{why}",
                      highlight=False)
    console.print(f"evaluation report {result.evaluation_report}")
    console.print(f"[bold green]champion[/]: {model_name}@champion → {result.champion} "
                  f"(reloaded with verified SHA-256: test accuracy {result.champion_check:.4f})")
    profile = result.training_profile
    console.print(f"training profile of the champion: {profile['rows']} rows x "
                  f"{len(profile['columns'])} columns (artifact {profile['sha256'][:12]})")
    drifted = result.drift["drifted_columns"]
    console.print(f"a year later (+25% prices and wages): {len(drifted)} of "
                  f"{len(result.drift['methods'])} features drifted "
                  f"({', '.join(drifted) or 'none'}); dataset drift "
                  f"{'[bold red]detected[/]' if result.drift['dataset_drift'] else 'not detected'}"
                  " (at >= 50% of features)")
    console.print(f"drift report {result.drift_report}")
    if result.validation:
        columns = sorted({a.get("column") for a in result.validation["anomalies"]} - {None})
        console.print(f"schema check of that stretch: {result.validation['headline']}"
                      + (f" ({', '.join(columns)} out of the training ranges)" if columns
                         else "") + f"; report {result.validation['report']}",
                      highlight=False)
    _print_serving(result.serving)
    _print_retraining(result.retraining)
    console.print(f"[bold]summary[/]    {result.summary_report}")
    console.print(f"store      {result.store_url}")
    console.print(f"artifacts  {result.artifacts}")
    console.print("next       prodml runs list · prodml runs compare "
                  f"{result.runs['baseline'][:8]} {result.runs['candidate'][:8]} · "
                  f"prodml models show {model_name}@champion")


def _hold(url: str) -> None:
    """Keep the demo's server (and its dashboard) up until Ctrl-C."""
    import time

    console.print(f"[bold]dashboard[/]  {url}/ui — serving until Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")


def _print_retraining(act: dict) -> None:
    if not act:
        return
    console.print(f"alert {act.get('alert')} started retraining pipeline run "
                  f"{act.get('pipeline_run', '')[:8]} (strategy {act.get('strategy')}): "
                  + ", ".join(f"{s['step']} {s['status']}" for s in act.get("steps", [])),
                  highlight=False)
    if act.get("final"):
        console.print(f"[bold]after retraining, serving[/]: {act['final']}")


def _print_serving(act: dict) -> None:
    if not act:
        return
    if "history" not in act:
        console.print(f"challenger {act['challenger']} not blessed: not deployed")
        return
    agreement = act["shadow_agreement"]
    if agreement["agreement"] is not None:
        console.print(f"shadow {act['challenger']}: agreed with the champion on "
                      f"{agreement['agreement']:.1%} of {agreement['compared']} requests",
                      highlight=False)
    table = Table(title=f"rollout of endpoint {act['endpoint']} (deployment history)",
                  header_style="bold")
    for column in ("rev", "action", "by", "deployment", "why"):
        table.add_column(column)
    for event in act["history"]:
        table.add_row(str(event["revision"]), event["action"], event["actor"],
                      escape(event["to"] or "-"), escape(event["reason"] or ""))
    console.print(table)
    console.print("prediction log: " + ", ".join(f"{k}: {v}" for k, v in act["log"].items()),
                  highlight=False)
    console.print(f"[bold]serving now[/]: {act['final']}")


@app.command()
def info(as_json: JsonFlag = False) -> None:
    """Where the store and artifacts are, and the schema revision."""
    from prodml import __version__
    from prodml.store import get_store
    from prodml.tracking import registry
    from prodml.tracking import runs as runs_api

    store = get_store()
    details = {"version": __version__, "database_url": store.display_url,
               "artifacts": store.artifacts.location, "schema_revision": store.revision(),
               "experiments": len(runs_api.experiments(store=store)),
               "models": len(registry.list_models(store=store))}
    if as_json:
        print_json(details)
        return
    for key, value in details.items():
        console.print(f"[bold]{key:16}[/] {value}")


def _one_line(error: ProdmlError) -> str:
    if isinstance(error, QuerySyntaxError):
        return error.one_line()
    return " ".join(str(error).split())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. A prodml error prints one line on stderr and exits 1; never a traceback."""
    # Typer handles usage errors (exit 2) and --help itself and ends with SystemExit, which
    # passes through; what it lets escape is ours to turn into one line.
    try:
        app(args=argv, prog_name="prodml")
    except ProdmlError as error:
        errors.print(f"[red]error:[/] {_one_line(error)}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        errors.print("aborted")
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("PRODML_DEBUG"):
            raise
        errors.print(f"[red]internal error:[/] {type(error).__name__}: "
                     f"{' '.join(str(error).split())} (PRODML_DEBUG=1 shows the traceback)",
                     highlight=False, soft_wrap=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
