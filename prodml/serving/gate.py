"""The checks every request passes before any route sees it.

A browser tab next to the server is the attacker this answers (docs/security.md):

1. **Host**: the ``Host`` header must name this server: a loopback name (``localhost``,
   ``127.0.0.1``, ``[::1]``, ``*.localhost``) or one allowed in the settings. A page that
   rebinds its own DNS name to 127.0.0.1 sends its own name, and is refused (DNS rebinding).
2. **Origin**: a request that changes state (any method but GET, HEAD, OPTIONS) from a page
   of another origin is refused: a browser always sends ``Origin`` on such requests, other
   clients (curl, tritonclient, the SDKs) send none. ``Sec-Fetch-Site: cross-site`` is refused
   too.
3. **Content type**: the JSON-only routes (admin, feedback, reviews, sign-in) take
   ``application/json`` only, and the plain predict route refuses the three content types a
   page may send without asking first (forms, multipart, text/plain).
4. **Identity and role**: ``Authorization: Bearer <token>``, or the dashboard's session
   cookie with its ``X-CSRF-Token`` on changes. Each route needs a role (:func:`required_role`):
   anything that changes state needs ``deployer`` unless it is listed as a prediction,
   labelling, sign-in or admin route, so a route added later is closed until someone opens it.

The identity lands in ``scope["state"]["identity"]`` for the route to record who acted.
The checks run over plain ASGI in :class:`~prodml.serving.app.ServingApp`, before the fast
predict path, in one pass over the headers.

>>> policy = AccessPolicy()
>>> required_role("POST", "/endpoints/loan/deploy", policy)
<Role.deployer: 3>
>>> required_role("POST", "/feedback", policy)
<Role.labeler: 2>
>>> required_role("POST", "/endpoints/loan/predict", policy) is None
True
>>> host_allowed("evil.example:8000", policy), host_allowed("127.0.0.1:8000", policy)
(False, True)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError

from prodml.access import Identity, Role, TokenVerifier
from prodml.errors import InvalidInputError, ProdmlError, StoreUnavailableError

SESSION_COOKIE = "prodml_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ACCESS_MODES = ("open", "token")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes a load balancer or an orchestrator probes without credentials.
_ALWAYS_OPEN = re.compile(r"/(?:v2/health/(?:live|ready)|ping|health|version|"
                          r"ui/login|ui/static/.*|favicon\.ico)")
_PREDICT = re.compile(r"/(?:endpoints/[^/]+/(?:predict|invocations)|invocations|"
                      r"v2/models/[^/]+(?:/versions/[^/]+)?/infer)")
_LABEL = re.compile(r"/(?:feedback|reviews/[^/]+/resolve)")
_SIGN_IN = "/ui/session"
_IPV4_LOOPBACK = re.compile(r"127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}")  # 127.0.0.0/8
_ADMIN = re.compile(r"/admin/(?:tokens|retention|log)(?:/.*)?")
# A page may send these without a CORS preflight; the JSON routes never read them.
_SIMPLE_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data",
                         "text/plain")


class AccessError(ProdmlError):
    """A request refused before any route saw it."""

    http_status = 400

    def __init__(self, message: str, *, field: str, value: Any, rule: str) -> None:
        super().__init__(message, field=field, value=value, rule=rule)


class UnknownHostError(AccessError):
    http_status = 400


class UnauthorizedError(AccessError):
    http_status = 401


class ForbiddenError(AccessError):
    http_status = 403


class UnsupportedMediaTypeError(AccessError):
    http_status = 415


class IdentityUnavailableError(AccessError):
    """The store holding the tokens cannot be read: the server's trouble, not the caller's."""

    http_status = 503


@dataclass(frozen=True)
class AccessPolicy:
    """What the server lets in (settings: ``PRODML_ALLOWED_HOSTS``, ``PRODML_ALLOWED_ORIGINS``,
    ``PRODML_PREDICT_ACCESS``, ``PRODML_READ_ACCESS``).

    ``allowed_hosts``: host names besides the loopback ones (``*`` allows any, for a server
    behind a proxy that checks Host itself); ``allowed_origins``: other origins whose pages
    may change state (``https://ops.example.com``); ``predict_access`` and ``read_access``:
    ``open`` (anyone who reaches the server) or ``token`` (a viewer token at least).
    """

    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    predict_access: str = "open"
    read_access: str = "open"

    def __post_init__(self) -> None:
        for name in ("predict_access", "read_access"):
            if getattr(self, name) not in ACCESS_MODES:
                raise InvalidInputError(name, getattr(self, name), "must be open or token")
        object.__setattr__(self, "allowed_hosts",
                           frozenset(_host_name(h) for h in self.allowed_hosts if h))
        object.__setattr__(self, "allowed_origins",
                           frozenset(o.rstrip("/").lower() for o in self.allowed_origins if o))


def required_role(method: str, path: str, policy: AccessPolicy) -> Role | None:
    """The least role a request needs (None: anyone)."""
    if method in _SAFE_METHODS:
        if _ALWAYS_OPEN.fullmatch(path) or policy.read_access == "open":
            return None
        return Role.viewer
    if _PREDICT.fullmatch(path):
        return None if policy.predict_access == "open" else Role.viewer
    if _LABEL.fullmatch(path):
        return Role.labeler
    if path == _SIGN_IN:
        return None
    if _ADMIN.fullmatch(path):
        return Role.admin
    return Role.deployer


def needs_json(method: str, path: str) -> bool:
    """Whether a change to ``path`` must come as ``application/json`` (or with no body)."""
    return method not in _SAFE_METHODS and _PREDICT.fullmatch(path) is None


def host_allowed(host: str, policy: AccessPolicy) -> bool:
    return _host_allowed(host, policy.allowed_hosts)


@lru_cache(maxsize=1024)
def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    name = _host_name(host)
    return ("*" in allowed or name in LOOPBACK_HOSTS or name.endswith(".localhost")
            or _IPV4_LOOPBACK.fullmatch(name) is not None or name in allowed)


def _host_name(host: str) -> str:
    """``Host`` without its port, lower case: ``[::1]:8000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def csrf_token(session_token: str) -> str:
    """The CSRF token for a dashboard session: derived from the session's secret, so only a
    page that was served to the session's holder knows it (a cross-site page cannot read
    the HttpOnly cookie nor the page)."""
    return hmac.new(session_token.encode(), b"prodml-csrf", hashlib.sha256).hexdigest()[:32]


class RequestGate:
    """Host, origin, content type, identity and role, for one app."""

    def __init__(self, verifier: TokenVerifier, policy: AccessPolicy) -> None:
        self.verifier = verifier
        self.policy = policy

    def check(self, scope: dict[str, Any], path: str | None = None) -> Identity | None:
        """The caller's identity (None: anonymous, where the route allows it); raises an
        :class:`AccessError` for a request to refuse. ``path``: the route's path (without
        the root path) when it differs from ``scope["path"]``."""
        method = scope.get("method", "GET")
        path = scope.get("path", "/") if path is None else path
        headers = _headers(scope)
        host = headers.get(b"host")
        if host is not None and not host_allowed(host, self.policy):
            raise UnknownHostError(
                f"Host {host!r} is not a name of this server", field="host", value=host,
                rule="must be a loopback name or one of PRODML_ALLOWED_HOSTS (DNS rebinding "
                     "protection)")
        unsafe = method not in _SAFE_METHODS
        if unsafe:
            self._same_origin(headers, host)
            self._content_type(method, path, headers)
        identity, token, by_cookie = self._identify(headers)
        role = required_role(method, path, self.policy)
        if by_cookie and unsafe and role is not None and not hmac.compare_digest(
                headers.get(CSRF_HEADER.encode(), "").encode("latin-1"),
                csrf_token(token or "").encode()):
            raise ForbiddenError(
                "a change made with the dashboard's session needs its CSRF token",
                field="x-csrf-token", value=None,
                rule="must be the token of the page's session (sent by the dashboard)")
        if role is not None:
            if identity is None:
                raise UnauthorizedError(
                    f"{method} {path} needs a token with role {role} or higher",
                    field="authorization", value=None,
                    rule=f"send 'Authorization: Bearer <token>' of a {role} (prodml tokens "
                         "create)")
            if not identity.may(role):
                raise ForbiddenError(
                    f"{identity.name!r} is a {identity.role}; {method} {path} needs {role}",
                    field="role", value=str(identity.role), rule=f"must be {role} or higher")
        return identity

    def _same_origin(self, headers: dict[bytes, str], host: str | None) -> None:
        origin = headers.get(b"origin")
        if origin is not None:
            if origin.rstrip("/").lower() in self.policy.allowed_origins:
                return
            parts = urlsplit(origin)
            if host is not None and parts.scheme in ("http", "https") \
                    and parts.netloc.lower() == host.lower():
                return
            raise ForbiddenError(
                f"a change from the page at {origin!r} is refused", field="origin",
                value=origin, rule="changes come from this server's own pages, from "
                                   "PRODML_ALLOWED_ORIGINS, or from clients that are not "
                                   "browsers")
        if headers.get(b"sec-fetch-site") == "cross-site":
            raise ForbiddenError("a change from another site is refused",
                                 field="sec-fetch-site", value="cross-site",
                                 rule="changes come from this server's own pages")

    def _content_type(self, method: str, path: str, headers: dict[bytes, str]) -> None:
        kind = headers.get(b"content-type", "").partition(";")[0].strip().lower()
        if needs_json(method, path):
            if not kind:
                if headers.get(b"content-length", "0").strip() in ("0", "") \
                        and b"transfer-encoding" not in headers:
                    return
            elif kind == "application/json" or (kind.startswith("application/")
                                                and kind.endswith("+json")):
                return
            raise UnsupportedMediaTypeError(
                f"{method} {path} takes JSON", field="content-type", value=kind or None,
                rule="must be application/json")
        if kind in _SIMPLE_CONTENT_TYPES:
            raise UnsupportedMediaTypeError(
                f"Content-Type {kind} is not a body this route reads", field="content-type",
                value=kind,
                rule="must be application/json (or the protocol's own: text/csv for MLflow "
                     "scoring, application/octet-stream for OIP binary tensors)")

    def _identify(self, headers: dict[bytes, str]) -> tuple[Identity | None, str | None, bool]:
        given = headers.get(b"authorization")
        if given is not None:
            scheme, _, token = given.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise UnauthorizedError("Authorization must be 'Bearer <token>'",
                                        field="authorization", value=scheme or None,
                                        rule="must be 'Bearer <token>'")
            identity = self._verify(token)
            if identity is None:
                raise UnauthorizedError("the token is not valid or was revoked",
                                        field="authorization", value=token[:8] + "...",
                                        rule="must be an active token (prodml tokens list)")
            return identity, token, False
        cookie = headers.get(b"cookie")
        if cookie is not None:
            token = _cookie(cookie, SESSION_COOKIE)
            if token:
                identity = self._verify(token)
                if identity is not None:
                    return identity, token, True
        return None, None, False

    def _verify(self, token: str) -> Identity | None:
        try:
            return self.verifier.identify(token)
        except (SQLAlchemyError, StoreUnavailableError) as exc:
            raise IdentityUnavailableError(
                f"cannot check the token: the store cannot be read "
                f"({type(exc).__name__}); try again later", field="authorization",
                value=None, rule="the store must be reachable") from None


def _headers(scope: dict[str, Any]) -> dict[bytes, str]:
    """The request's headers that the gate reads, decoded as Starlette does (latin-1)."""
    wanted = _WANTED
    return {k: v.decode("latin-1") for k, v in scope.get("headers", ()) if k in wanted}


_WANTED = frozenset({b"host", b"origin", b"sec-fetch-site", b"content-type",
                     b"content-length", b"transfer-encoding", b"authorization", b"cookie",
                     CSRF_HEADER.encode()})


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip().strip('"') or None
    return None


def error_body(error: AccessError, path: str) -> bytes:
    """The refusal in the shape the route's protocol uses for errors."""
    import orjson

    if path.startswith("/v2"):
        return orjson.dumps({"error": error.message})
    if path.endswith("/invocations"):
        # 503 (the token store cannot be read): what MLflow's own server says for it
        code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                503: "TEMPORARILY_UNAVAILABLE"}.get(error.http_status, "BAD_REQUEST")
        return orjson.dumps({"error_code": code, "message": error.message})
    return orjson.dumps(error.to_dict())
