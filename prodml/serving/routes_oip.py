"""Open Inference Protocol v2 routes (KServe, Triton, MLServer clients), over the service.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``GET /v2/models/{name}[/versions/
{v}]`` (metadata), ``.../ready`` and ``POST .../infer``. An endpoint is a model; its versions
are the versions it serves. The codec is :mod:`prodml.serving.protocols.oip`; bad input is a
400 ``{"error": ...}`` naming the field and the rule, an unknown endpoint or version a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from prodml.errors import InvalidInputError
from prodml.serving import openapi as api
from prodml.serving.protocols import ROUTING_HEADER, oip, tensors
from prodml.serving.protocols.transport import protocol_route, read_body

router = APIRouter(route_class=protocol_route("oip", oip.error_body),
                   tags=["Open Inference Protocol v2"])

_JSON = "application/json"
_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"},
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "datatype": {"type": "string", "enum": list(tensors.DATATYPES)},
    "parameters": {"type": "object"},
    "data": {"type": "array"}}}
_INFER_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"},
    "parameters": {"type": "object"},
    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                           "properties": {"name": {"type": "string"},
                                                          "parameters": {"type": "object"}}}}}}
_INFER_DOC = {
    "requestBody": {"required": True, "content": {
        _JSON: {"schema": _INFER_REQUEST},
        # the binary tensor extension: JSON header, then each input's raw bytes
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    "parameters": [{"name": "Inference-Header-Content-Length", "in": "header",
                    "required": False, "schema": {"type": "integer", "minimum": 1},
                    "description": "length of the JSON header when binary tensors follow"}]}


def _NOT_READY(model: type, *errors: int) -> dict[int | str, dict[str, Any]]:  # noqa: N802
    """200 when ready, else 503 with the same body."""
    return api.answers(model, *errors, shape=api.OIP, store=False,
                       **{"503": api.body(model, description="Not ready")})


_METADATA = api.answers(api.ModelMetadata, 404, shape=api.OIP, store=False)
# JSON tensors, or (binary_data_output) a JSON header then each output's raw bytes
_INFERRED = api.answers(
    api.body(api.InferResponse, description="The outputs", **{
        "application/octet-stream": {"type": "string", "format": "binary"}}),
    404, shape=api.OIP, changes=True)


def _json(value: Any, status: int = 200) -> Response:
    import orjson

    return Response(orjson.dumps(value), status_code=status, media_type=_JSON)


def _version(version: str | None) -> int | None:
    if version is None:
        return None
    if not version.isascii() or not version.isdigit() or len(version) > 18 \
            or int(version) < 1:  # 18 digits: every 64-bit version, and no costly int()
        raise InvalidInputError("version", version, "must be a model version number (1, 2...)")
    return int(version)


@router.get("/v2", responses=api.answers(api.ServerMetadata, shape=api.OIP, store=False))
async def server_metadata() -> Response:
    """The server's name, version and protocol extensions."""
    from prodml import __version__

    return _json({"name": "prodml", "version": __version__,
                  "extensions": ["binary_tensor_data"]})


@router.get("/v2/health/live", responses=api.answers(api.Live, shape=api.OIP, store=False))
async def server_live() -> Response:
    """200 while the process answers."""
    return _json({"live": True})


@router.get("/v2/health/ready", responses=_NOT_READY(api.Ready))
async def server_ready(request: Request) -> Response:
    """200 when the store answers and every served endpoint can answer, 503 otherwise
    (a replica that serves no endpoint is not ready while its store is down either)."""
    service = request.app.state.service
    ready = getattr(service, "started", True) and getattr(service, "healthy", True) and all(
        service.ready(name) for name in service.endpoint_names())
    return _json({"ready": bool(ready)}, 200 if ready else 503)


async def _metadata(request: Request, name: str, version: str | None) -> Response:
    info = request.app.state.service.describe(name, _version(version))
    return _json({"name": info.name, "versions": [str(v) for v in info.versions],
                  "platform": info.platform, "inputs": oip.input_metadata(info.inputs),
                  "outputs": oip.output_metadata(info.outputs, info.classes)})


@router.get("/v2/models/{name}", responses=_METADATA)
async def model_metadata(request: Request, name: str) -> Response:
    """The endpoint's inputs (one tensor per column) and outputs."""
    return await _metadata(request, name, None)


@router.get("/v2/models/{name}/versions/{version}", responses=_METADATA)
async def model_version_metadata(request: Request, name: str, version: str) -> Response:
    """One served version's inputs and outputs."""
    return await _metadata(request, name, version)


async def _ready(request: Request, name: str, version: str | None) -> Response:
    service = request.app.state.service
    number = _version(version)
    service.describe(name, number)  # 404 for an endpoint or version not served
    ready = service.ready(name, number)
    return _json({"name": name, "ready": ready}, 200 if ready else 503)


@router.get("/v2/models/{name}/ready", responses=_NOT_READY(api.ModelReady, 404))
async def model_ready(request: Request, name: str) -> Response:
    """200 when the endpoint can answer."""
    return await _ready(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready",
            responses=_NOT_READY(api.ModelReady, 404))
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    """200 when the version is served and can answer."""
    return await _ready(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    service = request.app.state.service
    number = _version(version)
    info = service.describe(name, number)
    body = await read_body(request)
    outputs = [o["name"] for o in info.outputs]
    decoded = oip.decode_infer_request(body, request.headers, info.inputs,
                                       outputs=[*outputs, "confidence"])
    key = decoded.parameters.get("routing_key")
    if not isinstance(key, str):
        key = request.headers.get(ROUTING_HEADER)
    scored = await service.score(name, decoded.columns, version=number, routing_key=key,
                                 protocol="oip")
    payload, headers = oip.encode_infer_response(scored, decoded, name, number)
    return Response(payload, headers=headers)


@router.post("/v2/models/{name}/infer", openapi_extra=_INFER_DOC, responses=_INFERRED)
async def model_infer(request: Request, name: str) -> Response:
    """Predict: JSON tensors, or the binary tensor extension tritonclient sends by default."""
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_INFER_DOC,
             responses=_INFERRED)
async def model_version_infer(request: Request, name: str, version: str) -> Response:
    """Predict with one served version (bypasses routing)."""
    return await _infer(request, name, version)
