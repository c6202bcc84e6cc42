"""The dashboard's pages under ``/ui``: server-rendered HTML over the store's records.

Each page reads through the library's functions (endpoints, history, reviews, runs, the
registry) and :mod:`prodml.ui.queries` for the log's aggregates, and renders one Jinja2
template (autoescaped). Charts travel as JSON in the page and are drawn by plotly.js,
streamed from the installed plotly package (no CDN: the dashboard works offline).

Changes go through the existing HTTP API, never through these routes: the rollback button
posts to ``/endpoints/{name}/rollback``, the review form to ``/reviews/{id}/resolve`` and a pipeline
step's Approve / Reject buttons to ``/admin/pipelines/{run_id}/steps/{step}/approve|reject``
then ``/admin/pipelines/{run_id}/resume`` (which runs the pipeline on in the background).

The handlers are plain functions, so FastAPI runs them on its thread pool: a page being
rendered never holds up the predictions served by the same event loop.

Signing in (``POST /ui/session`` with ``{"token"}``) keeps the token in an HttpOnly,
SameSite=Strict cookie, which the server's gate reads like a bearer token; every page then
carries the session's CSRF token, which the page's script sends with each change.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from prodml.access import Identity, Role
from prodml.errors import InvalidInputError, NotFoundError, ProdmlError
from prodml.serving.gate import SESSION_COOKIE, UnauthorizedError, csrf_token
from prodml.store import Store, now_ms
from prodml.ui import charts, pipeline_queries, queries, reports, views

HERE = Path(__file__).parent
STATIC = HERE / "static"
OWN_STATIC = {"dashboard.css": "text/css; charset=utf-8",
              "dashboard.js": "text/javascript; charset=utf-8"}
# Scripts and styles from this server only; the page's chart data is JSON, never run.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store"}
# A stored report runs in a sandbox (an opaque origin): its scripts draw its charts but
# cannot read this origin's storage (the admin token) or call the admin API as the page.
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts",
                  "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

router = APIRouter(prefix="/ui", include_in_schema=False)
PIPELINE_LINEAGE_DEPTH = 6  # hops each way on a pipeline run's page
RECORD_LINEAGE_DEPTH = 12  # hops each way on a model version or run page (a whole pipeline)


# -- rendering --------------------------------------------------------------------------------
def _when(ms: Any) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 else f"{value:.2e}"
    return str(value)


def _percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.1%}" if value >= 0.001 or value == 0 else f"{value:.3%}"


def _size(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _duration(ms: Any) -> str:
    seconds = int(ms) // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _json_script(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` as
    escapes, so no text in the data can close the block."""
    from markupsafe import Markup

    text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
                        ).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2,
                        default=str).decode()


environment = Environment(loader=FileSystemLoader(HERE / "templates"),
                          autoescape=select_autoescape(default=True, default_for_string=True),
                          trim_blocks=True, lstrip_blocks=True, auto_reload=False)
environment.filters.update(when=_when, num=_num, percent=_percent, size=_size,
                           duration=_duration, json_script=_json_script,
                           json_text=_json_text)


def _plotly_version() -> str:
    try:
        from plotly import __version__
    except ImportError:  # pragma: no cover - plotly is a dependency
        return "0"
    return __version__


environment.globals["plotly_version"] = _plotly_version()


def _store(request: Request) -> Store:
    return request.app.state.store


def render(request: Request, template: str, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    identity: Identity | None = getattr(request.state, "identity", None)
    session = request.cookies.get(SESSION_COOKIE)
    html = environment.get_template(template).render(
        base=base, ui=f"{base}/ui", store_url=_store(request).display_url,
        identity=identity, csrf=csrf_token(session) if identity and session else None,
        can_deploy=bool(identity and identity.may(Role.deployer)),
        can_label=bool(identity and identity.may(Role.labeler)), **context)
    return HTMLResponse(html, status_code, headers=PAGE_HEADERS)


def not_found(request: Request, error: ProdmlError) -> HTMLResponse:
    return render(request, "error.html", 404, title="Not found", message=str(error))


# -- signing in -------------------------------------------------------------------------------
@router.post("/session")
async def sign_in(request: Request) -> Response:
    """Check a token and keep it as this browser's session (an HttpOnly cookie)."""
    from prodml.serving.protocols.transport import read_body

    try:  # a sign-in is a token in a small JSON object: 4 KiB is plenty
        body = orjson.loads(await read_body(request, 4096))
    except orjson.JSONDecodeError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not 0 < len(token) <= 256:
        raise InvalidInputError("token", None, "give the token as {\"token\": \"...\"}")
    identity = request.app.gate.verifier.identify(token.strip())
    if identity is None:
        raise UnauthorizedError("the token is not valid or was revoked", field="token",
                                value=token[:8] + "...", rule="must be an active token")
    response = Response(orjson.dumps({"name": identity.name, "role": str(identity.role)}),
                        media_type="application/json")
    response.set_cookie(SESSION_COOKIE, token.strip(), httponly=True, samesite="strict",
                        path="/")
    return response


@router.delete("/session")
async def sign_out() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/login")
def login(request: Request) -> HTMLResponse:
    return render(request, "login.html", title="Sign in")


# -- pages ------------------------------------------------------------------------------------
@router.get("")
def overview(request: Request) -> HTMLResponse:
    from prodml.serving import endpoints as eps

    store = _store(request)
    since = now_ms() - 3_600_000
    recent = queries.recent_counts(store, since)
    reviews = queries.open_review_counts(store)
    firing = queries.alerts(store, status="firing", limit=200)
    rows = []
    for endpoint in eps.list_endpoints(store=store):
        row = views.endpoint_row(endpoint)
        row.update(requests_1h=recent.get(endpoint.name, 0),
                   open_reviews=reviews.get(endpoint.name, 0),
                   alerts=sum(1 for a in firing if a["endpoint"] == endpoint.name))
        rows.append(row)
    return render(request, "overview.html", title="Overview", endpoints=rows, alerts=firing,
                  alert_runs=pipeline_queries.runs_for_alerts(store, [a["id"] for a in firing]))


@router.get("/")
def overview_slash(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/ui")


@router.get("/endpoints/{name}")
def endpoint_page(request: Request, name: str, span: str = "24h") -> HTMLResponse:
    from prodml.serving import endpoints as eps
    from prodml.serving.review import list_reviews

    store = _store(request)
    try:
        endpoint = eps.get_endpoint(name, store=store)
    except NotFoundError as error:
        return not_found(request, error)
    events = eps.history(name, limit=1000, store=store)  # as far back as rollback looks
    window = queries.choose_window(store, name, span)
    traffic = queries.traffic(store, name, window)
    marks = [e for e in views.timeline(events) if window.start <= e["time"] < window.until]
    figures: dict[str, Any] = {}
    if traffic.total:
        figures = {"latency": charts.latency(traffic, marks),
                   "throughput": charts.throughput(traffic, marks),
                   "errors": charts.errors(traffic, marks),
                   "confidence": charts.confidence(traffic, marks),
                   **charts.outputs(traffic)}
    monitor_rows = queries.monitors(store, name)
    monitor_figures = charts.monitor_figures(
        queries.monitor_series(store, name, window.since),
        queries.drift_thresholds(monitor_rows)) if monitor_rows else {}
    figures.update(monitor_figures)
    alerts = queries.alerts(store, endpoint=name, status=None, limit=20)
    return render(
        request, "endpoint.html", title=name, endpoint=views.endpoint_row(endpoint),
        history=views.timeline(events[:100]), rollback=views.rollback_target(events),
        window=window, spans=list(queries.SPANS_MS), traffic=traffic, charts=figures,
        last_prediction=None if traffic.total else queries.last_prediction(store, name),
        reviews=list_reviews(endpoint=name, status="open", limit=50, with_inputs=True,
                             store=store),
        monitors=monitor_rows, monitor_charts=list(monitor_figures),
        alerts=alerts, alert_runs=pipeline_queries.runs_for_alerts(
            store, [a["id"] for a in alerts]))


@router.get("/runs")
def runs_page(request: Request, q: str = "", experiment: str | None = None) -> HTMLResponse:
    from prodml.tracking import runs

    store = _store(request)
    error = None
    try:
        found = runs.search(q, experiment=experiment or None, max_results=200, store=store)
    except ProdmlError as exc:
        found, error = [], str(exc)
    keys = sorted({k for r in found for k in r.metrics})[:6]
    return render(request, "runs.html", 400 if error else 200, title="Runs", runs=found,
                  metric_keys=keys, q=q,
                  experiment=experiment or "", experiments=runs.experiments(store=store),
                  error=error)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> HTMLResponse:
    from prodml.tracking import runs

    store = _store(request)
    try:
        record = runs.get(run_id, store=store)
    except NotFoundError as error:
        return not_found(request, error)
    figures, steps = {}, {}
    for i, key in enumerate(sorted(record.metrics)[:40]):
        points = runs.history(record.id, key, store=store)
        steps[key] = len(points)
        if len(points) > 1:
            figures[f"metric-{i}"] = charts.metric_steps(key, points)
    graph = _lineage(request, store, f"run:{record.id}", figures, RECORD_LINEAGE_DEPTH)
    return render(request, "run.html", title=f"Run {record.id[:8]}", run=record,
                  charts=figures, steps=steps, metric_keys=sorted(record.metrics)[:40],
                  models=queries.models_of_run(store, record.id), lineage=graph,
                  lineage_ref=record.id[:8],
                  pipelines=pipeline_queries.runs_of_tracked_run(store, record.id))


@router.get("/models")
def models_page(request: Request) -> HTMLResponse:
    from prodml.tracking import registry

    store = _store(request)
    versions: dict[str, list[Any]] = {}
    for version in registry.search(store=store):
        versions.setdefault(version.name, []).append(version)
    return render(request, "models.html", title="Models",
                  models=registry.list_models(store=store), versions=versions,
                  blessed=queries.blessings(store))


@router.get("/models/{name}/{version}")
def model_version_page(request: Request, name: str, version: str) -> HTMLResponse:
    from prodml.serving import endpoints as eps
    from prodml.tracking import registry

    store = _store(request)
    try:
        if not version.isdigit():
            raise NotFoundError("model version", f"{name}/{version}")
        found = registry.get(f"{name}/{version}", store=store)
    except (NotFoundError, InvalidInputError) as error:
        return not_found(request, error)
    evaluations = registry.evaluations(found.ref, store=store)
    serving = []
    for endpoint in eps.list_endpoints(store=store):
        row = views.endpoint_row(endpoint)
        shares = [share for share in row["split"] if share["model"] == found.ref]
        if shares:
            serving.append({**row, "shares": shares})
    figures: dict[str, Any] = {}
    graph = _lineage(request, store, found.ref, figures, RECORD_LINEAGE_DEPTH)
    return render(request, "model_version.html", title=found.ref, version=found,
                  evaluations=evaluations, serving=serving, charts=figures, lineage=graph,
                  lineage_ref=found.ref,
                  pipelines=pipeline_queries.runs_of_model_version(store, found.ref))


def _lineage(request: Request, store: Store, ref: str, figures: dict[str, Any],
             depth: int | None = None) -> dict[str, Any]:
    """The record's lineage graph (figure under ``figures["lineage"]``) and its rows."""
    from prodml.ui.lineage_chart import lineage_view

    view = lineage_view(store, ref, f"{request.scope.get('root_path', '').rstrip('/')}/ui",
                        depth)
    figures["lineage"] = view["figure"]
    return view


@router.get("/pipelines")
def pipelines_page(request: Request, pipeline: str = "", status: str = "") -> HTMLResponse:
    store = _store(request)
    rows = pipeline_queries.pipeline_runs(store, pipeline=pipeline or None,
                                          status=status or None)
    alerts = pipeline_queries.alerts_by_id(store, {
        i for r in rows if (i := pipeline_queries.alert_id(r["triggered_by"])) is not None})
    return render(request, "pipelines.html", title="Pipelines", runs=rows, alerts=alerts,
                  names=pipeline_queries.pipeline_names(store), pipeline=pipeline,
                  status=status, statuses=pipeline_queries.RUN_STATUSES)


@router.get("/pipelines/{run_id}")
def pipeline_run_page(request: Request, run_id: str) -> HTMLResponse:
    from prodml.pipelines import get_run

    store = _store(request)
    try:
        run = get_run(run_id, store=store)
    except (NotFoundError, InvalidInputError) as error:
        return not_found(request, error)
    alert = pipeline_queries.alert_id(run.triggered_by)
    cached = pipeline_queries.execution_runs(store, {e.cached_from for e in run.executions
                                                     if e.cached_from is not None})
    figures: dict[str, Any] = {}
    # a few hops: the run's own records and what they came from or reached; values shared
    # by many runs would otherwise pull in every run that ever made them
    graph = _lineage(request, store, f"pipeline_run:{run.id}", figures, PIPELINE_LINEAGE_DEPTH)
    return render(request, "pipeline_run.html", title=f"Pipeline run {run.id[:8]}", run=run,
                  alert=pipeline_queries.alerts_by_id(store, {alert}).get(alert)
                  if alert is not None else None, cached_runs=cached, charts=figures,
                  lineage=graph, lineage_ref=f"pipeline_run:{run.id[:8]}")


@router.get("/reports")
def reports_page(request: Request) -> HTMLResponse:
    store = _store(request)
    return render(request, "reports.html", title="Reports", reports=reports.list_reports(store),
                  folder=reports.reports_folder(store))


@router.get("/reports/{name}")
def report(request: Request, name: str) -> Response:
    path = reports.report_path(_store(request), name)
    if path is None:
        return not_found(request, NotFoundError("report", name))
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)


# -- static files -----------------------------------------------------------------------------
@router.get("/static/plotly.min.js")
def plotly_js() -> Response:
    """The installed plotly package's own plotly.min.js, streamed from where it lies."""
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    bundled = files("plotly") / "package_data" / "plotly.min.js"
    if bundled.is_file():
        return FileResponse(str(bundled), media_type="text/javascript; charset=utf-8",
                            headers=headers)
    from plotly.offline import get_plotlyjs  # another layout of the package: ask plotly
    return Response(get_plotlyjs(), media_type="text/javascript; charset=utf-8",
                    headers=headers)


@router.get("/static/{name}")
def static(request: Request, name: str) -> Response:
    if name not in OWN_STATIC:  # only our own files, by name: nothing else is reachable
        return not_found(request, NotFoundError("file", name))
    return FileResponse(STATIC / name, media_type=OWN_STATIC[name],
                        headers={"Cache-Control": "public, max-age=300",
                                 "X-Content-Type-Options": "nosniff"})
