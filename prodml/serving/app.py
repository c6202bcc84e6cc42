"""The ASGI app that ``prodml serve`` runs under uvicorn.

Routes, thinly over :class:`~prodml.serving.service.ServingService` and the store:

- plain JSON: ``POST /endpoints/{name}/predict``; ``POST /feedback``;
- Open Inference Protocol v2 (``/v2/...``) and MLflow scoring (``/invocations``), when
  their routers are present;
- admin: deploy, rollback, switch, promote, pause, resume, and pipeline approvals under
  ``/admin/pipelines/...`` (:mod:`prodml.serving.pipeline_admin`), for a ``deployer``;
- every request first passes :mod:`prodml.serving.gate` (allowed Host, same-origin changes,
  JSON bodies, the caller's token and role), which records who acts;
- review queue, ``/metrics`` (Prometheus), OpenAPI at ``/openapi.json`` and Swagger UI at
  ``/docs`` (:mod:`prodml.serving.api_docs`, offline).

Every refusal is a 4xx with a JSON body naming the field, the value and the rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette._utils import get_route_path
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from prodml.access import Identity, Role, TokenVerifier
from prodml.config import Settings
from prodml.errors import (InvalidInputError, NotFoundError, ProdmlError,
                           StoreUnavailableError, StoreWriteError)
from prodml.serving import endpoints as eps
from prodml.serving import openapi as api
from prodml.serving.api_docs import include_api_docs
from prodml.serving.gate import AccessError, AccessPolicy, RequestGate, UnauthorizedError, \
    required_role
from prodml.serving.gate import error_body as refusal_body
from prodml.serving.metrics import CONTENT_TYPE, ServingMetrics
from prodml.serving.protocols import check_depth, error_headers, shorten, status_for
from prodml.serving.protocols import parse_json as parse_json_lenient
from prodml.serving.protocols.transport import decompress
from prodml.serving.service import ModelUnavailableError, ServingService
from prodml.store import Store, get_store
from prodml.store.engine import describe_error

log = logging.getLogger("prodml.serving")
MAX_BODY_BYTES = 16 * 1024 * 1024
ROUTING_HEADER = "x-prodml-routing-key"
_ROUTING_HEADER_BYTES = ROUTING_HEADER.encode()
_PREDICT_PATH = re.compile(r"/endpoints/([^/]+)/predict")  # as Starlette matches {name}


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def json_response(value: Any, status_code: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(_dumps(value), status_code=status_code, media_type="application/json",
                    headers=headers)


def status_of(error: ProdmlError) -> int:
    """The HTTP status of an error: one mapping for every route (see ``status_for``)."""
    return 413 if isinstance(error, PayloadTooLargeError) else status_for(error)


class PayloadTooLargeError(ProdmlError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes is over the limit of {limit}",
                         field="body", value=size, rule=f"at most {limit} bytes")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(size, limit)
        chunks.append(chunk)
    return _decoded(b"".join(chunks), request.headers.get("content-encoding"), limit)


async def receive_body(scope: Scope, receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """:func:`read_body` over plain ASGI; ``ClientDisconnect`` if the caller went away."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(int(declared), limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return _decoded(body, _header(scope, b"content-encoding"), limit)


def _decoded(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` (gzip, deflate) undone, never past ``limit``
    bytes; an encoding the server cannot undo is a 415."""
    return body if encoding is None else decompress(body, encoding, limit)


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (``name`` in lower case), as Starlette decodes it."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send(send: Send, status: int, body: bytes, content_type: bytes,
                extra: dict[str, str] | None = None) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    if extra:
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def identity_of(request: Request) -> Identity | None:
    """Who sent the request, as the gate found it (None: anonymous)."""
    return getattr(request.state, "identity", None)


class ServingApp(FastAPI):
    """FastAPI, with ``POST /endpoints/{name}/predict`` answered straight over ASGI.

    That route is the hot path, and FastAPI's per-request machinery (middleware, routing,
    dependency solving, Request and Response objects) cost more than scoring a
    micro-batched row does. The route stays declared (OpenAPI, ``/docs``) and does the same
    work through ``predict_answer``; the fast path steps aside once middleware is added.
    """

    fast_predict: Callable[[str, Scope, Receive, Send], Awaitable[None]] | None = None
    gate: RequestGate | None = None
    on_refusal: Callable[[str, int], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.gate is not None:
            try:
                identity = self.gate.check(scope, get_route_path(scope))
            except AccessError as exc:
                await self._refuse(scope, send, exc)
                return
            scope.setdefault("state", {})["identity"] = identity
        if scope["type"] == "http" and scope["method"] == "POST" \
                and self.fast_predict is not None and not self.user_middleware:
            found = _PREDICT_PATH.fullmatch(get_route_path(scope))
            if found is not None:
                await self.fast_predict(found.group(1), scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, error: AccessError) -> None:
        path = get_route_path(scope)
        if self.on_refusal is not None:
            self.on_refusal(_kind(path), error.http_status)
        if isinstance(error, UnauthorizedError) and scope["method"] == "GET" \
                and path.startswith("/ui"):  # a person at the dashboard: the sign-in page
            login = f"{scope.get('root_path', '').rstrip('/')}/ui/login"
            await _send(send, 303, b"", b"text/plain", {"Location": login})
            return
        extra = {"WWW-Authenticate": 'Bearer realm="prodml"'} \
            if isinstance(error, UnauthorizedError) else \
            {"Retry-After": "5"} if error.http_status == 503 else None
        await _send(send, error.http_status, refusal_body(error, path), b"application/json",
                    extra)


def parse_json(body: bytes, what: str = "body") -> Any:
    """Strict JSON (no NaN or Infinity tokens), nested at most ``MAX_JSON_DEPTH`` levels."""
    check_depth(body, what)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(what, shorten(body), f"must be valid JSON ({exc})") from None


def records_to_columns(records: list[Any]) -> dict[str, list[Any]]:
    """Rows (dicts) as columns; a field missing from a row is None there."""
    if not records:
        raise InvalidInputError("records", records, "must hold at least one record")
    names: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidInputError(f"records[{i}]", record, "must be an object of field values")
        names.update(dict.fromkeys(record))
    if len(records) == 1:
        return {k: [v] for k, v in records[0].items()}
    return {name: [r.get(name) for r in records] for name in names}


def create_app(store: Store | None = None, *, log_mode: str | None = None,
               endpoints: list[str] | None = None, admin_token: str | None = None,
               access: AccessPolicy | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, poll_interval: float | None = None,
               max_batch_rows: int = 256) -> FastAPI:
    """The server for the store's endpoints (all of them, or those named).

    ``admin_token`` and ``access`` default to the settings (``PRODML_ADMIN_TOKEN``,
    ``PRODML_ALLOWED_HOSTS``, ...; see :class:`~prodml.serving.gate.AccessPolicy`)."""
    store = store or get_store()
    settings = Settings.from_env()
    service = ServingService(store, log_mode=log_mode or os.environ.get("PRODML_LOG_MODE",
                                                                        "durable"),
                             endpoints=endpoints, poll_interval=poll_interval,
                             max_batch_rows=max_batch_rows)
    token = admin_token if admin_token is not None else settings.admin_token
    access = access or AccessPolicy(frozenset(settings.allowed_hosts),
                                    frozenset(settings.allowed_origins),
                                    settings.predict_access, settings.read_access)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from prodml.monitoring.scheduler import start_in_server

        await service.start()
        monitors = start_in_server(service)  # PRODML_MONITOR_EVERY / serve --monitor-every
        try:
            yield
        finally:  # uvicorn has stopped taking connections and let the requests in flight end
            try:
                await monitors.stop()
            finally:
                await service.stop()  # drain every version, then flush the log

    from prodml import __version__
    app = ServingApp(title="prodml", version=__version__, lifespan=lifespan,
                     description="Serve, ship safely and watch machine-learning models.",
                     docs_url=None, redoc_url=None)  # /docs: api_docs, from local files
    app.state.service = service
    app.state.store = store
    app.state.max_body_bytes = max_body_bytes
    service.metrics = metrics = ServingMetrics(service)
    app.state.metrics = metrics
    app.gate = RequestGate(TokenVerifier(store, env_admin_token=token), access)
    app.on_refusal = metrics.refused
    app.state.access = access

    @app.exception_handler(ProdmlError)
    async def prodml_error(request: Request, exc: ProdmlError) -> Response:
        code = status_of(exc)
        metrics.refused(_kind(request.url.path), code)
        return json_response(exc.to_dict(), code, headers=error_headers(exc))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    async def store_error(request: Request, exc: Exception) -> Response:
        """The store could not be read, or a write (feedback, a deployment change...) could
        not commit, or no pooled connection came free in time: 503 with Retry-After, the
        server's state and not the request's fault."""
        reason = describe_error(exc)
        error = StoreUnavailableError(store.display_url, reason) \
            if request.method in ("GET", "HEAD") else StoreWriteError(store.display_url, reason)
        log.warning("%s %s: %s", request.method, request.url.path, error)
        return await prodml_error(request, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        metrics.refused(_kind(request.url.path), 400)  # bad input, as everywhere else
        return json_response({"error": "InvalidInputError", "message": f"{field}: "
                              f"{first.get('msg', 'invalid')}", "field": field,
                              "value": str(first.get("input"))[:200],
                              "rule": first.get("msg")}, 400)

    def admin(request: Request) -> str:
        """Who makes an admin change: the gate has checked the token and its role already;
        refused here too, should a route ever be mounted where the gate does not look."""
        identity = identity_of(request)
        if identity is None:
            raise UnauthorizedError("this route needs a token", field="authorization",
                                    value=None, rule="send 'Authorization: Bearer <token>'")
        return identity.name

    # ---- plain JSON ---------------------------------------------------------------------
    async def predict_answer(name: str, body: bytes, header_key: str | None) -> bytes:
        """The predict route's work, whichever way the request came in: the JSON answer."""
        # NaN / Infinity tokens parse, so that the request's checks name the field they are in
        payload = parse_json_lenient(body)
        if not isinstance(payload, dict):
            raise InvalidInputError("body", type(payload).__name__,
                                    "must be an object: {\"records\": [...]} or one record")
        key = payload.get("routing_key") if isinstance(payload.get("routing_key"), str) \
            else header_key
        if "records" in payload:
            records = payload["records"]
            if not isinstance(records, list):
                raise InvalidInputError("records", type(records).__name__, "must be a list")
            single = False
        else:
            record = payload.get("record", payload)
            if not isinstance(record, dict):
                raise InvalidInputError("record", type(record).__name__,
                                        "must be an object of field values")
            if "routing_key" in record:
                record = {k: v for k, v in record.items() if k != "routing_key"}
            records, single = [record], True
        scored = await service.score(name, records_to_columns(records), routing_key=key)
        rows = scored.records()
        head = {"endpoint": name, "model_name": scored.model_name,
                "model_version": scored.model_version, "route": scored.route,
                "revision": scored.revision, "mode": scored.mode}
        return _dumps({**head, **rows[0]} if single else {**head, "predictions": rows})

    @app.post("/endpoints/{name}/predict", tags=["predict"], openapi_extra=_PREDICT_BODY,
              responses=api.answers(_PREDICTED, 404, changes=True))
    async def predict(name: str, request: Request) -> Response:
        """Predict one record (``{"record": {...}}`` or the record itself) or many
        (``{"records": [...]}``); the answer names the version, the route and an id per row."""
        body = await read_body(request, max_body_bytes)
        return Response(await predict_answer(name, body, request.headers.get(ROUTING_HEADER)),
                        media_type="application/json")

    async def fast_predict(name: str, scope: Scope, receive: Receive, send: Send) -> None:
        """``predict`` straight over ASGI (see :class:`ServingApp`): the same answers and
        the same refusals, without FastAPI's per-request machinery."""
        try:
            body = await receive_body(scope, receive, max_body_bytes)
            status, headers = 200, None
            answer = await predict_answer(name, body, _header(scope, _ROUTING_HEADER_BYTES))
        except ProdmlError as exc:
            status, headers = status_of(exc), error_headers(exc)
            metrics.refused("predict", status)
            answer = _dumps(exc.to_dict())
        except ClientDisconnect:
            return
        except Exception:  # as Starlette's ServerErrorMiddleware: a 500, then re-raised
            await _send(send, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
            raise
        await _send(send, status, answer, b"application/json", headers)

    app.fast_predict = fast_predict

    @app.post("/feedback", tags=["feedback"], openapi_extra=_FEEDBACK_BODY,
              responses=api.answers(api.FeedbackRecorded, 404, changes=True))
    async def feedback(request: Request) -> Response:
        """Labels (``{"prediction_id", "label"}``) or outcome events (``{"prediction_id",
        "event", "value"}``) for earlier predictions: one object or a list."""
        from prodml.serving.feedback import record_feedback

        actor = admin(request)  # a labeler at least (the gate checked the role)
        payload = parse_json(await read_body(request, max_body_bytes))
        items = payload if isinstance(payload, list) else [payload]
        count = await asyncio.to_thread(record_feedback, items, source="api", actor=actor,
                                        store=store)
        return json_response({"recorded": count})

    # ---- endpoints and deployments ------------------------------------------------------
    @app.get("/endpoints", tags=["deployments"], responses=api.answers(api.list_of(api.Endpoint)))
    async def list_endpoints() -> Response:
        return json_response([e.to_dict() for e in eps.list_endpoints(store=store)])

    @app.get("/endpoints/{name}", tags=["deployments"], responses=api.answers(api.Endpoint, 404))
    async def get_endpoint(name: str) -> Response:
        return json_response(eps.get_endpoint(name, store=store).to_dict())

    @app.get("/endpoints/{name}/history", tags=["deployments"],
             responses=api.answers(api.list_of(api.DeploymentEvent), 404))
    async def endpoint_history(name: str, limit: int = Query(100, ge=1, le=10_000)
                               ) -> Response:
        return json_response([e.to_dict() for e in eps.history(name, limit=limit, store=store)])

    @app.post("/endpoints/{name}/deploy", tags=["admin"], openapi_extra=_DEPLOY_BODY,
              responses=api.answers(api.Endpoint, 404, 409, changes=True))
    async def deploy(name: str, request: Request, actor: str = Depends(admin)) -> Response:
        """Deploy ``model`` with a ``strategy`` (direct, shadow, canary, blue-green), or a
        whole deployment tree as ``spec``."""
        body = parse_json(await read_body(request, max_body_bytes))
        if not isinstance(body, dict):
            raise InvalidInputError("body", type(body).__name__, "must be an object")
        options = {k: v for k, v in body.items()
                   if k in ("percent", "steps", "step_every_requests", "step_every_seconds",
                            "routing_key", "guards", "mode", "threshold", "smoke")}
        target = body.get("spec") or body.get("model")
        if target is None:
            raise InvalidInputError("model", None, "give a model reference or a spec")
        # Only an admin may deploy past a failed blessing requirement (with a reason).
        identity = identity_of(request)
        # off the event loop: checking a deployment (a fallback rule folded, blessings read,
        # the store written) must not hold up the predictions this loop answers
        endpoint = await asyncio.to_thread(
            eps.deploy, name, target, body.get("strategy", "direct"),
            reason=body.get("reason"), actor=actor, fallback=body.get("fallback"),
            pii=body.get("pii"), require_blessing=body.get("require_blessing"),
            override_reason=body.get("override_blessing"),
            allow_override=bool(identity and identity.may(Role.admin)), store=store,
            **options)
        await service.refresh()
        return json_response(endpoint.to_dict())

    async def _admin_change(name: str, request: Request, actor: str, action: str) -> Response:
        reason = await read_reason(request)
        if action == "rollback":
            endpoint = await asyncio.to_thread(eps.rollback, name, reason=reason, actor=actor,
                                               store=store)
        elif action == "switch":
            endpoint = await _smoke_then_switch(service, name, reason, actor, store)
        elif action == "promote":
            endpoint = await asyncio.to_thread(eps.promote, name, reason=reason, actor=actor,
                                               store=store)
        else:
            endpoint = await asyncio.to_thread(eps.set_paused, name, action == "pause",
                                               reason=reason, actor=actor, store=store)
        await service.refresh()
        return json_response(endpoint.to_dict())

    for action in ("rollback", "switch", "promote", "pause", "resume"):
        def route(action: str = action) -> Any:
            async def handler(name: str, request: Request, actor: str = Depends(admin)
                              ) -> Response:
                return await _admin_change(name, request, actor, action)
            handler.__name__ = f"{action}_endpoint"
            handler.__doc__ = f"{action.capitalize()} the endpoint's deployment (admin)."
            return handler
        app.post(f"/endpoints/{{name}}/{action}", tags=["admin"], openapi_extra=_REASON_BODY,
                 responses=api.answers(api.Endpoint, 404, 409, changes=True))(route())

    async def read_reason(request: Request) -> str | None:
        body = await read_body(request, max_body_bytes)
        parsed = parse_json(body) if body.strip() else None
        reason = parsed.get("reason") if isinstance(parsed, dict) else None
        if reason is not None and not isinstance(reason, str):
            raise InvalidInputError("reason", reason, "must be text")
        return reason

    # approve / reject a pipeline step waiting for approval, resume the run (background)
    from prodml.serving.pipeline_admin import include_pipeline_admin
    include_pipeline_admin(app, store=store, admin=admin, read_reason=read_reason,
                           respond=json_response)

    # ---- review queue -------------------------------------------------------------------
    @app.get("/reviews", tags=["review"], responses=api.answers(api.list_of(api.ReviewItem)))
    async def reviews(endpoint: str | None = None,
                      status: Literal["open", "resolved", "all"] = "open",
                      limit: int = Query(100, ge=1, le=10_000)) -> Response:
        from prodml.serving.review import list_reviews

        items = list_reviews(endpoint=endpoint, status=status, limit=limit, store=store)
        return json_response([i.to_dict() if hasattr(i, "to_dict") else i for i in items])

    @app.post("/reviews/{item}/resolve", tags=["review"], openapi_extra=_RESOLVE_BODY,
              responses=api.answers(api.ReviewItem, 404, changes=True))
    async def resolve(item: str, request: Request) -> Response:
        from prodml.serving.review import resolve_review

        resolver = admin(request)  # a labeler at least (the gate checked the role)
        body = parse_json(await read_body(request, max_body_bytes))
        if not isinstance(body, dict) or "label" not in body:
            raise InvalidInputError("label", None, "give the person's answer as 'label'")
        named = body.get("resolver")
        if named is not None and named != resolver:
            raise InvalidInputError("resolver", named, f"must be the caller's own identity "
                                    f"({resolver!r}): the token says who resolves")
        done = resolve_review(item, body["label"], resolver=resolver, store=store)
        return json_response(done.to_dict() if hasattr(done, "to_dict") else done)

    # ---- health and metrics -------------------------------------------------------------
    @app.get("/metrics", tags=["health"], response_class=PrometheusText,
             responses=api.answers(api.text("Prometheus' text format", api.PROMETHEUS),
                                   store=False))
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    _include_protocols(app)
    _include_dashboard(app)
    api.install(app, open_paths=lambda method, path: required_role(method, path, access) is None)
    include_api_docs(app)
    return app


async def _smoke_then_switch(service: ServingService, name: str, reason: str | None,
                             actor: str, store: Store) -> eps.Endpoint:
    """Flip a blue-green pair after the idle side answers its smoke records."""
    from prodml.serving import deployment as d

    endpoint = eps.get_endpoint(name, store=store)
    pair = d.find(endpoint.spec, d.BlueGreen)
    if pair is not None and pair.smoke:
        idle = next(d.leaves(pair.idle)).model
        version = int(idle.rpartition("/")[2])
        try:
            await service.score(name, records_to_columns(list(pair.smoke)), version=version)
        except ProdmlError as exc:
            raise InvalidInputError("smoke", idle, f"the idle side failed its smoke check: "
                                    f"{exc}") from None
    return eps.switch(name, reason=reason, actor=actor, store=store)


def _include_protocols(app: FastAPI) -> None:
    """Mount the Open Inference Protocol and MLflow scoring routers."""
    for module, attr in (("prodml.serving.routes_oip", "router"),
                         ("prodml.serving.routes_mlflow", "router")):
        try:
            imported = __import__(module, fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        app.include_router(getattr(imported, attr))


def _include_dashboard(app: FastAPI) -> None:
    """Mount the dashboard at ``/ui`` (``/`` leads there). Imported here, not at the top:
    the dashboard sits above serving and only this app puts the two together."""
    from fastapi.responses import RedirectResponse

    from prodml.ui.routes import router

    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/ui")


def _kind(path: str) -> str:
    if path.startswith("/v2"):
        return "oip"
    if path.endswith("/invocations"):
        return "mlflow"
    if path.endswith("/predict"):
        return "predict"
    return "other"


class PrometheusText(Response):
    media_type = CONTENT_TYPE


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": schema}}}}


_RECORD = {"type": "object", "additionalProperties": True}
_PREDICTED = api.body({"anyOf": [api.ref(api.Prediction), api.ref(api.Predictions)]},
                      description="One record's answer, or one row per record")
_PREDICT_BODY = _body({"oneOf": [
    {"type": "object", "properties": {"records": {"type": "array", "items": _RECORD},
                                      "routing_key": {"type": "string"}},
     "required": ["records"]},
    {"type": "object", "properties": {"record": _RECORD}, "required": ["record"]},
    _RECORD]})
_FEEDBACK_ITEM = {"type": "object", "properties": {
    "prediction_id": {"type": "string"}, "label": {}, "event": {"type": "string"},
    "value": {"type": "number"}}, "required": ["prediction_id"]}
_FEEDBACK_BODY = _body({"oneOf": [_FEEDBACK_ITEM, {"type": "array", "items": _FEEDBACK_ITEM}]})
_DEPLOY_BODY = _body({"type": "object", "properties": {
    "model": {"type": "string"}, "spec": {"type": "object"},
    "strategy": {"type": "string", "enum": ["direct", "shadow", "canary", "blue-green"]},
    "percent": {"type": "number"}, "steps": {"type": "array", "items": {"type": "number"}},
    "step_every_requests": {"type": "integer"}, "step_every_seconds": {"type": "number"},
    "routing_key": {"type": "string"}, "guards": {"type": "object"},
    "mode": {"type": "string", "enum": ["shadow", "assist", "partial", "full"]},
    "threshold": {"type": "number"}, "fallback": {"type": "string"},
    "reason": {"type": "string"}, "pii": {"type": "array", "items": {"type": "string"}},
    "require_blessing": {"type": "boolean"}, "override_blessing": {"type": "string"}}})
_REASON_BODY = _body({"type": "object", "properties": {"reason": {"type": "string"}}},
                     required=False)
_RESOLVE_BODY = _body({"type": "object", "properties": {"label": {},
                                                        "resolver": {"type": "string"}},
                       "required": ["label"]})
