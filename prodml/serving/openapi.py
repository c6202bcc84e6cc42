"""What ``/openapi.json`` (and ``/docs``) says each route answers, in one place.

The routes hand back ``Response`` objects they build themselves (orjson, the protocols'
codecs), so FastAPI cannot infer what they send: each route declares it with ``responses=``
built here. :func:`answers` gives every status a route can send, with its body:

- the success, with its schema (the models below) and media type (JSON, or text for the
  probes and ``/metrics``);
- the refusals of the request gate (:mod:`prodml.serving.gate`), which any route can send:
  400 (a ``Host`` that is not this server's), 401 (no token, or a bad one), and for changes
  403 (another origin, a missing CSRF token, a role too low) and 415 (not JSON);
- the route's own errors (400 bad input, 404, 409, 413, 503...), in the shape of the route's
  protocol: plain ``{error, message, field, value, rule}``, OIP's ``{"error"}`` or MLflow's
  ``{"error_code", "message"}``. A 503 may carry ``Retry-After``; a 401 ``WWW-Authenticate``.

A request FastAPI itself rejects (a query parameter out of range) is a 400 like any bad input,
so the document lists no 422. :func:`install` puts the models under ``components``, declares
the bearer token, and drops the 422 entries FastAPI adds on its own.

>>> sorted(answers(Endpoint, 404)) == [200, 400, 401, 404, 503]
True
>>> sorted(answers(Endpoint, 404, changes=True))
[200, 400, 401, 403, 404, 413, 415, 503]
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

PLAIN, OIP, MLFLOW = "plain", "oip", "mlflow"
JSON = "application/json"
TEXT = "text/plain"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"  # metrics.CONTENT_TYPE


# -- error bodies -------------------------------------------------------------------------------
class Error(BaseModel):
    """A refusal of the plain JSON routes: what was wrong, where, and the rule it broke."""

    error: str = Field(description="the kind of error (InvalidInputError, NotFoundError...)")
    message: str
    field: str | None = Field(description="the field, header or parameter at fault")
    value: str | None = Field(description="the value given (shortened)")
    rule: str | None = Field(description="the rule the value broke")


class OipError(BaseModel):
    """A refusal in the Open Inference Protocol's shape, with the field and rule when known."""

    error: str
    field: str | None = None
    rule: str | None = None


class MlflowError(BaseModel):
    """A refusal in MLflow's scoring server's shape."""

    error_code: str = Field(description="BAD_REQUEST, RESOURCE_DOES_NOT_EXIST, "
                                        "TEMPORARILY_UNAVAILABLE, UNAUTHENTICATED...")
    message: str
    field: str | None = None
    rule: str | None = None


# -- answers ------------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Endpoint(_Open):
    """An endpoint and what it serves now."""

    name: str
    spec: dict[str, Any] = Field(description="the deployment tree (strategy, models, steps)")
    revision: int
    paused: bool
    fallback: str | None
    policy: dict[str, Any] = Field(description="require_blessing, pii, retention...")
    summary: str
    models: list[str]
    created_at: int = Field(description="milliseconds since the epoch")
    updated_at: int


class DeploymentEvent(_Open):
    """One change of an endpoint's deployment: who, when, why, from what to what."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: int
    endpoint: str
    revision: int
    time: int = Field(description="milliseconds since the epoch")
    actor: str
    action: str
    reason: str | None
    from_: dict[str, Any] | None = Field(alias="from")
    to: dict[str, Any] | None
    from_summary: str | None
    to_summary: str | None


class PredictedRow(_Open):
    prediction_id: str
    prediction: Any
    confidence: float | None
    status: str = Field(description="ok, or review (a person decides: prediction is null)")
    probabilities: dict[str, float | None] | None = Field(None, description="per class")
    suggestion: Any = Field(None, description="the model's answer, when a person decides")


class _Answered(_Open):
    endpoint: str
    model_name: str | None
    model_version: int | None
    route: str = Field(description="primary, canary, fallback, human...")
    revision: int | None
    mode: str


class Prediction(_Answered, PredictedRow):
    """The answer to one record: who answered, and the row."""


class Predictions(_Answered):
    """The answer to ``{"records": [...]}``: who answered, and one row per record."""

    predictions: list[PredictedRow]


class FeedbackRecorded(_Open):
    recorded: int = Field(description="labels and events recorded")


class ReviewItem(_Open):
    """A case in the review queue."""

    id: int
    prediction_id: str
    endpoint: str
    created_at: int
    status: str = Field(description="open or resolved")
    suggestion: Any
    confidence: float | None
    resolved_at: int | None
    resolver: str | None
    label: Any
    inputs: dict[str, Any] | None


class StepDecision(_Open):
    """A pipeline step approved or rejected, and the steps still undecided."""

    run_id: str
    step: str
    approval: dict[str, Any]
    undecided: list[str]


class ResumeStarted(_Open):
    run_id: str
    pipeline: str
    status: str = Field(description="resuming")


class ServerMetadata(_Open):
    name: str
    version: str
    extensions: list[str]


class Live(_Open):
    live: bool


class Ready(_Open):
    ready: bool


class ModelReady(_Open):
    name: str
    ready: bool


class TensorMetadata(_Open):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(_Open):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class OutputTensor(_Open):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size, classes...")
    data: list[Any] | None = Field(None, description="absent when sent as binary")


class InferResponse(_Open):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = Field(description="prediction_ids, route, statuses")
    outputs: list[OutputTensor]


class MlflowPredictions(_Open):
    predictions: list[Any]
    prediction_ids: list[str]
    model_version: int | None
    route: str
    statuses: list[str] | None = None


MODELS: tuple[type[BaseModel], ...] = (
    Error, OipError, MlflowError, Endpoint, DeploymentEvent, PredictedRow, Prediction,
    Predictions, FeedbackRecorded, ReviewItem, StepDecision, ResumeStarted, ServerMetadata,
    Live, Ready, ModelReady, TensorMetadata, ModelMetadata, OutputTensor, InferResponse,
    MlflowPredictions)
_ERRORS = {PLAIN: Error, OIP: OipError, MLFLOW: MlflowError}
_WHY = {400: "Bad input (the body names the field and the rule), or a Host that is not "
             "this server's",
        401: "No token, or a token that is not valid (send 'Authorization: Bearer <token>')",
        403: "A change from another origin, without the dashboard's CSRF token, or by a role "
             "too low",
        404: "No such endpoint, version or record", 409: "In conflict with the current state",
        413: "The body is over the server's limit",
        415: "A content type (or encoding) the route does not read",
        503: "The server cannot answer now (no model or fallback could, or the store cannot "
             "commit): try again after Retry-After seconds"}
_HEADERS = {401: {"WWW-Authenticate": {"description": "Bearer realm=\"prodml\"",
                                       "schema": {"type": "string"}}},
            503: {"Retry-After": {"description": "seconds to wait before trying again",
                                  "schema": {"type": "string"}}}}


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: type[BaseModel] | dict[str, Any], media: str = JSON,
         description: str = "Success", **more: dict[str, Any]) -> dict[str, Any]:
    """One ``responses=`` entry: a body of ``media`` (a model or a JSON schema), and more
    media types as ``{media: schema}``."""
    content = {media: {"schema": schema if isinstance(schema, dict) else ref(schema)}}
    for other, extra in more.items():
        content[other] = {"schema": extra}
    return {"description": description, "content": content}


def list_of(model: type[BaseModel], description: str = "Success") -> dict[str, Any]:
    return body({"type": "array", "items": ref(model)}, description=description)


def text(description: str = "Success", media: str = TEXT) -> dict[str, Any]:
    return body({"type": "string"}, media, description)


def answers(ok: type[BaseModel] | dict[str, Any], *errors: int, shape: str = PLAIN,
            changes: bool = False, status: int = 200, store: bool = True,
            **entries: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: ``ok`` (a model or a ready entry) at ``status``, the
    gate's refusals (those of a change when ``changes``), ``errors`` in the protocol's
    ``shape``, 413 for a body read, 503 when the route reads or writes the store (``store``),
    and ``entries`` (status as text) for answers whose body differs from the usual."""
    codes = {400, 401, *errors}
    if changes:
        codes |= {403, 413, 415}
    if store:
        codes.add(503)
    out: dict[int | str, dict[str, Any]] = {
        status: ok if isinstance(ok, dict) else body(ok)}
    for code in sorted(codes):
        if str(code) in entries:
            continue
        out[code] = {**body(_ERRORS[shape], description=_WHY[code]),
                     **({"headers": _HEADERS[code]} if code in _HEADERS else {})}
    for code, entry in entries.items():
        out[int(code)] = entry
    return out


def install(app: FastAPI, *, open_paths: Any) -> None:
    """Make ``app.openapi()`` publish :data:`MODELS` and the bearer token, without FastAPI's
    422s. ``open_paths(method, path)`` says whether a route may be called without a token."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version,
                           openapi_version=app.openapi_version, description=app.description,
                           routes=app.routes, tags=app.openapi_tags, servers=app.servers)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for model in MODELS:
            found = model.model_json_schema(by_alias=True, mode="serialization",
                                            ref_template="#/components/schemas/{model}")
            schemas.update(found.pop("$defs", {}))
            schemas[model.__name__] = found
        spec["components"]["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "a token from 'prodml tokens create' (or the admin token "
                           "'prodml serve' made under PRODML_HOME)"}}
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                operation.get("responses", {}).pop("422", None)
                needed = [{"bearer": []}]
                operation["security"] = [{}, *needed] if open_paths(method.upper(), path) \
                    else needed
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
