"""``prodml serve``, ``deploy``, ``rollback``, ``promote``, ``switch``, ``pause``, ``resume``
and ``prodml deployments status|history``."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.table import Table

from prodml.cli.output import console, print_json, when
from prodml.errors import InvalidInputError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Reason = Annotated[Optional[str], typer.Option("--reason", help="Why: kept in the history.")]
Actor = Annotated[Optional[str], typer.Option("--by", help="Who (default: the OS user).")]

app = typer.Typer(no_args_is_help=True, help="Endpoints, their deployments and history.")


def serve_command(
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
        endpoint: Annotated[Optional[list[str]], typer.Option(
            "--endpoint", help="Serve only these endpoints (default: all).")] = None,
        log_mode: Annotated[str, typer.Option(
            help="durable: a 2xx means the prediction is committed; fast: buffered, "
                 "flushed every 100 ms.")] = "durable",
        access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
        monitor_every: Annotated[Optional[str], typer.Option(
            help="Run every enabled monitor in the background at this interval (30s, 1m).")
                                 ] = None,
        allowed_host: Annotated[Optional[list[str]], typer.Option(
            "--allowed-host", help="A host name clients use for this server, besides "
                                   "loopback ones (repeat; '*' for any, behind a proxy).")
                                ] = None,
        allowed_origin: Annotated[Optional[list[str]], typer.Option(
            "--allowed-origin", help="Another origin whose pages may make changes "
                                     "(https://ops.example.com; repeat).")] = None,
        predict_access: Annotated[Optional[str], typer.Option(
            help="open (default) or token: prediction routes need a viewer token.")] = None,
        read_access: Annotated[Optional[str], typer.Option(
            help="open or token: pages and read APIs need a viewer token (default: open "
                 "on a loopback address, token on any other).")] = None,
        allow_fallback: Annotated[Optional[list[str]], typer.Option(
            "--allow-fallback", help="A 'module:function' (or 'module:*') fallback rule this "
            "server may import; repeat for more. Added to PRODML_FALLBACK_ALLOW. None by "
            "default: fallback rules are expressions only.")] = None,
        fallback_timeout_ms: Annotated[Optional[float], typer.Option(
            help="Time a fallback rule may take per record (default 50, "
                 "PRODML_FALLBACK_TIMEOUT_MS).")] = None,
        drain_timeout: Annotated[Optional[float], typer.Option(
            help="Seconds a replaced version, or the server on SIGTERM, may take to answer "
                 "the requests it holds (default 30, PRODML_DRAIN_TIMEOUT).")] = None) -> None:
    """Serve the store's endpoints over HTTP (uvicorn): OIP v2, MLflow scoring, plain JSON."""
    import uvicorn

    from prodml.serving.gate import LOOPBACK_HOSTS, AccessPolicy

    if log_mode not in ("durable", "fast"):
        raise InvalidInputError("--log-mode", log_mode, "must be durable or fast")
    if monitor_every is not None:
        from prodml.monitoring.scheduler import ENV, parse_interval
        parse_interval(monitor_every)  # a bad interval fails here, not in every worker
        os.environ[ENV] = monitor_every
    os.environ["PRODML_LOG_MODE"] = log_mode
    _fallback_settings(allow_fallback or [], fallback_timeout_ms)
    os.environ["PRODML_SERVE_ENDPOINTS"] = ",".join(endpoint or [])
    if drain_timeout is not None:
        os.environ["PRODML_DRAIN_TIMEOUT"] = repr(drain_timeout)
    loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
    from prodml.config import Settings
    configured = Settings.from_env()
    hosts = [*configured.allowed_hosts, *(allowed_host or [])]
    if not loopback and host not in ("0.0.0.0", "::"):
        hosts.append(host)  # the address it was asked to listen on is a name of it
    origins = [*configured.allowed_origins, *(allowed_origin or [])]
    predict_access = predict_access or configured.predict_access
    read_access = read_access or os.environ.get("PRODML_READ_ACCESS") \
        or ("open" if loopback else "token")
    AccessPolicy(frozenset(hosts), frozenset(origins), predict_access, read_access)  # checks
    os.environ.update({"PRODML_ALLOWED_HOSTS": ",".join(hosts),
                       "PRODML_ALLOWED_ORIGINS": ",".join(origins),
                       "PRODML_PREDICT_ACCESS": predict_access,
                       "PRODML_READ_ACCESS": read_access})
    from prodml.access import ensure_local_admin
    from prodml.store import get_store
    store = get_store()  # migrate once here, not racing in every worker
    os.environ.setdefault("PRODML_DATABASE_URL", store.database_url)
    settings = Settings.from_env()  # a bad PRODML_DRAIN_TIMEOUT fails here, not in a worker
    local = ensure_local_admin(store, settings.home, env_admin_token=settings.admin_token)
    console.print(f"serving {store.display_url} on http://{host}:{port} "
                  f"({workers} worker{'s' * (workers > 1)}, {log_mode} log) · docs at /docs",
                  highlight=False)
    if local is not None:
        console.print(f"admin token {'made' if local.created else 'kept'} in {local.path} "
                      "(owner-only); sign in to the dashboard with it, or make others with "
                      "prodml tokens create", highlight=False)
    if host in ("0.0.0.0", "::") and not hosts:
        console.print("listening on every interface: clients must use a loopback name "
                      "until you name others with --allowed-host", highlight=False)
    if os.environ["PRODML_FALLBACK_ALLOW"]:
        console.print("fallback rules may import: " + os.environ["PRODML_FALLBACK_ALLOW"],
                      highlight=False)
    uvicorn.run("prodml.serving.asgi:app_factory", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=access_log,
                # On SIGTERM uvicorn stops taking connections and waits this long for the
                # requests in flight; then the service drains its models and the log.
                timeout_graceful_shutdown=max(1, round(settings.drain_timeout_s)))


def _fallback_settings(allow: list[str], timeout_ms: float | None) -> None:
    """Hand the fallback allow-list and time limit to the workers (through the environment,
    as the other serve options), refusing a malformed entry here rather than in each."""
    from prodml.config import FALLBACK_ALLOW_ENTRY, parse_fallback_allow

    for entry in allow:
        if not FALLBACK_ALLOW_ENTRY.fullmatch(entry.strip()):
            raise InvalidInputError("--allow-fallback", entry,
                                    "must be 'module:function' or 'module:*'")
    merged = parse_fallback_allow(",".join([os.environ.get("PRODML_FALLBACK_ALLOW", ""),
                                            *allow]))
    os.environ["PRODML_FALLBACK_ALLOW"] = ",".join(dict.fromkeys(merged))
    if timeout_ms is not None:
        if not 0 < timeout_ms < float("inf"):
            raise InvalidInputError("--fallback-timeout-ms", timeout_ms, "must be positive")
        os.environ["PRODML_FALLBACK_TIMEOUT_MS"] = repr(timeout_ms)


def deploy_command(
        endpoint: Annotated[str, typer.Argument(help="Endpoint name, e.g. loan.")],
        model: Annotated[Optional[str], typer.Argument(
            help="Model reference: loan/3, loan@champion.")] = None,
        strategy: Annotated[str, typer.Option(
            help="direct, shadow, canary or blue-green.")] = "direct",
        percent: Annotated[float, typer.Option(help="Shadow: share of traffic mirrored.")
                           ] = 100.0,
        steps: Annotated[Optional[str], typer.Option(
            help="Canary: rising weights, e.g. 5,25,50,100.")] = None,
        step_requests: Annotated[Optional[int], typer.Option(
            help="Canary: candidate requests per step.")] = None,
        step_seconds: Annotated[Optional[float], typer.Option(
            help="Canary: seconds per step.")] = None,
        routing_key: Annotated[Optional[str], typer.Option(
            help="Canary: input field that keeps a caller on one side.")] = None,
        max_error_rate: Annotated[Optional[float], typer.Option(help="Canary guard.")] = None,
        max_p99_ms: Annotated[Optional[float], typer.Option(help="Canary guard.")] = None,
        max_disagreement: Annotated[Optional[float], typer.Option(help="Canary guard.")
                                    ] = None,
        mode: Annotated[Optional[str], typer.Option(
            help="Automation: shadow, assist, partial or full.")] = None,
        threshold: Annotated[Optional[float], typer.Option(
            help="Partial automation: confidence under which a person decides.")] = None,
        fallback: Annotated[Optional[str], typer.Option(
            help="Rule answering when the model is paused or failing: an expression or "
                 "module:function.")] = None,
        spec: Annotated[Optional[str], typer.Option(
            "--file", "-f", help="A deployment tree in YAML or JSON instead of MODEL.")] = None,
        pii: Annotated[Optional[str], typer.Option(
            "--pii", help="Input columns holding personal data, e.g. email,phone: stored "
                          "hashed on every route, added to the endpoint's marks.")] = None,
        require_blessing: Annotated[Optional[bool], typer.Option(
            "--require-blessing/--no-require-blessing",
            help="Refuse versions without a passing gate here from now on.")] = None,
        override_blessing: Annotated[Optional[str], typer.Option(
            "--override-blessing", help="Deploy an unblessed version anyway; the reason "
                                        "is kept in the history.")] = None,
        reason: Reason = None, actor: Actor = None, as_json: JsonFlag = False) -> None:
    """Deploy a model to an endpoint with a strategy; the change is recorded with who and why."""
    from prodml.serving import endpoints as eps

    options: dict = {}
    if strategy == "shadow":
        options["percent"] = percent
    if steps:
        try:
            options["steps"] = [float(s) for s in steps.split(",")]
        except ValueError:
            raise InvalidInputError("--steps", steps, "must be numbers separated by commas"
                                    ) from None
    for key, value in (("step_every_requests", step_requests),
                       ("step_every_seconds", step_seconds), ("routing_key", routing_key),
                       ("mode", mode), ("threshold", threshold)):
        if value is not None:
            options[key] = value
    guards = {k: v for k, v in (("max_error_rate", max_error_rate),
                                ("max_latency_p99_ms", max_p99_ms),
                                ("max_disagreement", max_disagreement)) if v is not None}
    if guards:
        options["guards"] = guards
    if spec is not None:
        from pathlib import Path

        from prodml.specs import read_spec
        if not Path(spec).exists():
            raise InvalidInputError("--file", spec, "file does not exist")
        target, _ = read_spec(Path(spec).read_text(), spec)  # YAML is a superset of JSON
    elif model is not None:
        target = model
    else:
        raise InvalidInputError("model", None, "give a model reference or --file SPEC")
    result = eps.deploy(endpoint, target, strategy, reason=reason, actor=actor,
                        fallback=fallback, pii=pii, require_blessing=require_blessing,
                        override_reason=override_blessing,
                        **(options if spec is None else {}))
    _show(result, as_json, "deployed")


def _show(endpoint, as_json: bool, verb: str) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        print_json(endpoint.to_dict())
        return
    console.print(f"{verb} [bold]{endpoint.name}[/] (revision {endpoint.revision}): "
                  f"{endpoint.describe()}", highlight=False)


def rollback_command(endpoint: str, reason: Reason = None, actor: Actor = None,
                     as_json: JsonFlag = False) -> None:
    """Undo the last deployment change (a canary back to its primary, a switch back)."""
    from prodml.serving import endpoints as eps
    _show(eps.rollback(endpoint, reason=reason, actor=actor), as_json, "rolled back")


def promote_command(endpoint: str, reason: Reason = None, actor: Actor = None,
                    as_json: JsonFlag = False) -> None:
    """Give a running canary's candidate all traffic now."""
    from prodml.serving import endpoints as eps
    _show(eps.promote(endpoint, reason=reason, actor=actor), as_json, "promoted")


def switch_command(endpoint: str, reason: Reason = None, actor: Actor = None,
                   as_json: JsonFlag = False) -> None:
    """Flip a blue-green pair (a running server checks the idle side's smoke records)."""
    from prodml.serving import endpoints as eps
    _show(eps.switch(endpoint, reason=reason, actor=actor), as_json, "switched")


def pause_command(endpoint: str, reason: Reason = None, actor: Actor = None,
                  as_json: JsonFlag = False) -> None:
    """Pause the endpoint's models: its fallback rule answers until resumed."""
    from prodml.serving import endpoints as eps
    _show(eps.set_paused(endpoint, True, reason=reason, actor=actor), as_json, "paused")


def resume_command(endpoint: str, reason: Reason = None, actor: Actor = None,
                   as_json: JsonFlag = False) -> None:
    """Let the endpoint's models answer again."""
    from prodml.serving import endpoints as eps
    _show(eps.set_paused(endpoint, False, reason=reason, actor=actor), as_json, "resumed")


@app.command("status")
def status(endpoint: Annotated[Optional[str], typer.Argument()] = None,
           as_json: JsonFlag = False) -> None:
    """Every endpoint (or one) with its deployment, revision and state."""
    from prodml.serving import endpoints as eps

    found = [eps.get_endpoint(endpoint)] if endpoint else eps.list_endpoints()
    if as_json:
        print_json([e.to_dict() for e in found])
        return
    table = Table(header_style="bold")
    for column in ("endpoint", "deployment", "revision", "paused", "fallback", "updated"):
        table.add_column(column)
    for e in found:
        table.add_row(e.name, d_summary(e), str(e.revision), "yes" if e.paused else "no",
                      e.fallback or "-", when(e.updated_at))
    console.print(table)


def d_summary(endpoint) -> str:  # type: ignore[no-untyped-def]
    from prodml.serving import deployment as d
    return d.describe(endpoint.spec)


@app.command("history")
def history_command(endpoint: str, limit: Annotated[int, typer.Option(min=1)] = 50,
                    as_json: JsonFlag = False) -> None:
    """The endpoint's changes, newest first: who, when, why, from, to."""
    from prodml.serving import endpoints as eps

    events = eps.history(endpoint, limit=limit)
    if as_json:
        print_json([e.to_dict() for e in events])
        return
    table = Table(header_style="bold")
    for column in ("rev", "time", "action", "by", "replica", "to", "reason"):
        table.add_column(column)
    for e in events:
        info = e.to_dict()
        table.add_row(str(e.revision), when(e.time), e.action, e.actor, e.replica or "-",
                      info["to_summary"] or "-", e.reason or "")
    console.print(table)
