"""HTTP plumbing shared by the protocol routers.

:func:`read_body` reads a request body under a size limit, decompressing gzip or deflate when
asked; :func:`protocol_route` makes a route class whose handlers answer prodml's errors in
the protocol's own error shape (OIP ``{"error"}``, MLflow ``{"error_code", "message"}``).

The limit applies to what is read from the socket *and* to what decompression produces, so a
small compressed bomb is refused as surely as a large body. It is the app's
``app.state.max_body_bytes`` (``create_app(max_body_bytes=...)``), 16 MiB when unset.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from prodml.errors import InvalidInputError, ProdmlError

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class PayloadTooLargeError(InvalidInputError):
    """The body (or what it decompresses to) is larger than the server accepts: HTTP 413."""

    status_code = 413

    def __init__(self, size: int | str, limit: int) -> None:
        super().__init__("body", f"{size} bytes", f"must be at most {limit} bytes (the "
                         "server's max_body_bytes); send fewer rows per request")


class UnsupportedMediaTypeError(InvalidInputError):
    """A Content-Type or Content-Encoding the protocol does not read: HTTP 415."""

    status_code = 415


def body_limit(app_state: Any) -> int:
    limit = getattr(app_state, "max_body_bytes", None)
    return limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_BODY_BYTES


async def read_body(request: Any, limit: int | None = None) -> bytes:
    """The body of a Starlette request, refused past ``limit`` bytes before it is all read."""
    limit = body_limit(request.app.state) if limit is None else limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"more than {limit}", limit)
        chunks.append(chunk)
    return decompress(b"".join(chunks), request.headers.get("content-encoding"), limit)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate, identity), never producing more than ``limit``.

    >>> import gzip
    >>> decompress(gzip.compress(b"hello"), "gzip", 100)
    b'hello'
    >>> try:
    ...     decompress(gzip.compress(b"x" * 1000), "gzip", 100)
    ... except PayloadTooLargeError as e:
    ...     print(e.status_code, e.value)
    413 more than 100 bytes
    """
    coding = (encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedMediaTypeError("Content-Encoding", encoding,
                                        "must be gzip, deflate or identity")
    # deflate on the wire is the zlib format (RFC 9110); some clients send raw deflate.
    windows = (16 + zlib.MAX_WBITS,) if "gzip" in coding else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    problem = ""
    for wbits in windows:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            problem = str(exc)
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLargeError(f"more than {limit}", limit)
        if not inflater.eof:
            problem = "the stream ends early"
            continue
        return out
    raise InvalidInputError("body", f"{len(body)} bytes",
                            f"is not valid {coding} data ({problem})")


def protocol_route(kind: str, error_body: Callable[[Exception, int], bytes]) -> type:
    """An ``APIRoute`` class answering :class:`ProdmlError` as ``error_body`` says.

    ``kind`` labels refusals in the server's metrics (``app.state.metrics.refused``). Other
    exceptions propagate: they are bugs, and a 500 is the honest answer to those.
    """
    from fastapi.routing import APIRoute
    from starlette.responses import Response

    from prodml.serving.protocols import error_headers, status_for

    class ProtocolRoute(APIRoute):
        def get_route_handler(self) -> Callable[..., Any]:
            handler = super().get_route_handler()

            async def answer_errors(request: Any) -> Any:
                try:
                    return await handler(request)
                except ProdmlError as exc:
                    status = status_for(exc)
                    metrics = getattr(request.app.state, "metrics", None)
                    if metrics is not None:
                        metrics.refused(kind, status)
                    return Response(error_body(exc, status), status_code=status,
                                    media_type="application/json",
                                    headers=error_headers(exc))

            return answer_errors

    ProtocolRoute.__name__ = f"{kind.upper()}Route"
    return ProtocolRoute
