"""MLflow scoring routes: what ``mlflow models serve`` answers, over the service.

``POST /endpoints/{name}/invocations`` (and ``POST /invocations`` when the server serves one
endpoint), ``GET /ping`` and ``/health`` (200 when the endpoints can answer), ``GET
/version``. The codec is :mod:`prodml.serving.protocols.mlflow_scoring`; errors are
``{"error_code": "BAD_REQUEST", "message": ...}`` with 400 (bad input), 404 (unknown
endpoint), 413 (body too large) or 415 (content type).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving import openapi as api
from prodml.serving.protocols import ROUTING_HEADER, mlflow_scoring
from prodml.serving.protocols.transport import protocol_route, read_body

router = APIRouter(route_class=protocol_route("mlflow", mlflow_scoring.error_body),
                   tags=["MLflow scoring"])

_ROWS = {"type": "array", "items": {}}
_INVOCATION = {"type": "object", "properties": {
    "dataframe_split": {"type": "object", "required": ["data"], "properties": {
        "columns": {"type": "array", "items": {"type": "string"}},
        "index": {"type": "array"},
        "data": {"type": "array", "items": {"type": "array"}}}},
    "dataframe_records": {"type": "array", "items": {"type": "object"}},
    "instances": _ROWS,
    "inputs": {"oneOf": [{"type": "object"}, _ROWS]},
    "params": {"type": "object"}}}
_INVOCATION_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _INVOCATION},
    "text/csv": {"schema": {"type": "string"}}}}}
# A gate refusal (bad Host, bad token) on the probes is plain JSON: only scoring is MLflow's.
_PROBE = api.answers(api.text("Ready: every served endpoint can answer"), store=False,
                     **{"503": api.text("Not ready")})
_SCORED = api.answers(api.MlflowPredictions, 404, shape=api.MLFLOW, changes=True)


@router.get("/ping", response_class=PlainTextResponse, responses=_PROBE)
async def ping(request: Request) -> Response:
    """200 when every served endpoint can answer (MLflow's health check), 503 otherwise."""
    service = request.app.state.service
    names = service.endpoint_names()
    ok = bool(names) and all(service.ready(name) for name in names)
    return Response("\n", status_code=200 if ok else 503, media_type="text/plain")


@router.get("/health", response_class=PlainTextResponse, responses=_PROBE)
async def health(request: Request) -> Response:
    """The same answer as ``/ping``."""
    return await ping(request)


@router.get("/version", response_class=PlainTextResponse,
            responses=api.answers(api.text("prodml's version"), store=False))
async def version() -> Response:
    """The server's version (prodml's)."""
    from prodml import __version__

    return Response(__version__, media_type="text/plain")


async def _invoke(request: Request, name: str) -> Response:
    service = request.app.state.service
    info = service.describe(name)
    body = await read_body(request)
    invocation = mlflow_scoring.decode_invocation(body, request.headers.get("content-type"),
                                                  info.inputs)
    key = invocation.params.get("routing_key")
    if not isinstance(key, str):
        key = request.headers.get(ROUTING_HEADER)
    scored = await service.score(name, invocation.columns, routing_key=key, protocol="mlflow")
    return Response(mlflow_scoring.encode_predictions(scored), media_type="application/json")


@router.post("/invocations", openapi_extra=_INVOCATION_DOC, responses=_SCORED)
async def invocations(request: Request) -> Response:
    """Score with the one endpoint this server serves (MLflow's ``/invocations``)."""
    names = request.app.state.service.endpoint_names()
    if not names:
        raise NotFoundError("endpoint", None, "this server serves no endpoints")
    if len(names) > 1:
        raise InvalidInputError("endpoint", None, f"this server serves {len(names)} endpoints ("
                                + ", ".join(names) + "): POST /endpoints/{name}/invocations")
    return await _invoke(request, names[0])


@router.post("/endpoints/{name}/invocations", openapi_extra=_INVOCATION_DOC,
             responses=_SCORED)
async def endpoint_invocations(request: Request, name: str) -> Response:
    """Score with the named endpoint, in MLflow's request and response shapes."""
    return await _invoke(request, name)
