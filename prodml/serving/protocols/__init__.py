"""Wire protocols: bytes on the wire to columns of Python values and back.

- :mod:`~prodml.serving.protocols.oip`: Open Inference Protocol v2 (KServe, Triton, MLServer),
  JSON tensors and the binary tensor extension tritonclient sends by default;
- :mod:`~prodml.serving.protocols.mlflow_scoring`: MLflow's scoring server (``dataframe_split``,
  ``dataframe_records``, ``instances``, ``inputs``, CSV);
- :mod:`~prodml.serving.protocols.transport`: reading a body under a size limit, and the
  route class that answers errors in each protocol's own shape.

The codecs are pure functions over bytes: no HTTP framework, no store, no model. They turn a
bad request into an :class:`~prodml.errors.InvalidInputError` naming the field and the rule;
the routers map those to 4xx replies in each protocol's error shape.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from prodml.errors import InvalidInputError, NotFoundError, ProdmlError

#: A client pins its route (canary stickiness) with this header, or ``routing_key`` in the
#: request's parameters.
ROUTING_HEADER = "x-prodml-routing-key"


def status_for(error: ProdmlError) -> int:
    """The HTTP status for an error raised while reading or answering a request.

    >>> status_for(InvalidInputError("age", "x", "must be a number"))
    400
    >>> status_for(NotFoundError("endpoint", "loan"))
    404
    """
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status
    if isinstance(error, NotFoundError):
        return 404
    # The service's "no model and no fallback could answer" is the server's state, not the
    # request's fault (name-matched: the codecs import nothing from the service).
    return 503 if type(error).__name__ == "ModelUnavailableError" else 400


def error_headers(error: ProdmlError) -> dict[str, str] | None:
    """Headers an error's reply carries: ``Retry-After`` when the server's state, not the
    request, is at fault and trying again later can work (a store that cannot commit).

    >>> from prodml.errors import StoreWriteError
    >>> error_headers(StoreWriteError("sqlite:///p.db", "disk I/O error"))
    {'Retry-After': '5'}
    >>> error_headers(InvalidInputError("age", "x", "must be a number")) is None
    True
    """
    seconds = getattr(error, "retry_after_s", None)
    return {"Retry-After": str(int(seconds))} if isinstance(seconds, (int, float)) else None


def shorten(value: Any, limit: int = 80) -> Any:
    """A value short enough to quote in an error message (bodies can be megabytes).

    >>> shorten("x" * 100, 10)
    'xxxxxxxxxx...'
    >>> shorten(b"abc")
    'abc'
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value[:limit + 1]).decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


def parse_json(raw: bytes | memoryview, what: str = "body") -> Any:
    """JSON text to Python; NaN and Infinity (which Python's ``json.dumps`` writes) pass.

    >>> parse_json(b'{"x": [1, NaN]}')
    {'x': [1, nan]}
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
    try:  # orjson refuses NaN / Infinity tokens, which clients using Python's json send
        return json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInputError(what, shorten(raw), f"must be valid JSON ({problem})") from None
