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
import re
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
    for attribute in ("status_code", "http_status"):  # an error that knows its own status
        status = getattr(error, attribute, None)
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

    Bytes are shown as text when they are text; otherwise they are described, never echoed.

    >>> shorten("x" * 100, 10)
    'xxxxxxxxxx...'
    >>> shorten(b"abc"), shorten(b"\\x1f\\x8b\\x08\\x00rest")
    ('abc', '8 bytes of gzip data (1f 8b 08 00...): send Content-Encoding: gzip')
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = describe_bytes(value, limit)
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


def describe_bytes(raw: bytes | bytearray | memoryview, limit: int = 80) -> str:
    """The first ``limit`` characters of ``raw`` if it is text, else a short description of it.

    >>> describe_bytes(b"\\xff\\xfe\\x00\\x01")
    '4 bytes of binary data (ff fe 00 01)'
    """
    head = bytes(raw[:limit + 1])
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end is still text
        text = head[:exc.start].decode("utf-8") \
            if exc.reason == "unexpected end of data" and exc.start > len(head) - 4 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return text
    start = bytes(raw[:4]).hex(" ") + ("..." if len(raw) > 4 else "")
    if head.startswith(b"\x1f\x8b"):
        return f"{len(raw)} bytes of gzip data ({start}): send Content-Encoding: gzip"
    return f"{len(raw)} bytes of binary data ({start})"


#: How deep arrays and objects may nest in a JSON body. No request needs more, and a deeper
#: one is refused before anything walks it: walking it recursively (to quote it in an error,
#: to store it) would overflow the stack.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_SQUARE = bytes.maketrans(b"{}", b"[]")  # for depth, an object is a bracket like an array
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')


def check_depth(raw: bytes | memoryview, what: str = "body", limit: int = MAX_JSON_DEPTH
                ) -> None:
    """Refuse JSON text nested more than ``limit`` levels deep, before it is parsed.

    Counting brackets answers almost every body at once. Past ``limit`` brackets, the text is
    cut down to its brackets (strings out) and innermost pairs are removed a level a pass:
    C speed throughout, no Python loop over bytes or values.

    >>> check_depth(b'{"records": [{"a": 1}, {"a": "[[[["}]}', limit=3)
    >>> check_depth(b"[[[[1]]]]", limit=3)
    Traceback (most recent call last):
    ...
    prodml.errors.InvalidInputError: body='nested more than 3 levels': must not nest arrays and objects more than 3 levels deep
    """
    data = raw if isinstance(raw, bytes) else bytes(raw)
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    brackets = data.translate(_SQUARE, _NOT_STRUCTURE)
    if b"\\" not in brackets:  # strings without escapes or brackets are now "": drop them
        brackets = brackets.replace(b'""', b"")
    if b'"' in brackets or b"\\" in brackets:  # some string holds brackets or escapes
        brackets = _JSON_STRING.sub(b"", data).translate(_SQUARE, _NOT_STRUCTURE)
    for _ in range(limit):
        if not brackets:
            return
        inner = brackets.replace(b"[]", b"")  # one level a pass: no rescan of what it joins
        if len(inner) == len(brackets):
            return  # unbalanced: not JSON, which the parser says better
        brackets = inner
    if brackets:
        raise InvalidInputError(what, f"nested more than {limit} levels", "must not nest "
                                f"arrays and objects more than {limit} levels deep")


def parse_json(raw: bytes | memoryview, what: str = "body") -> Any:
    """JSON text to Python; NaN and Infinity (which Python's ``json.dumps`` writes) pass,
    for the request's checks to name the field; nesting past :data:`MAX_JSON_DEPTH` does not.

    >>> parse_json(b'{"x": [1, NaN]}')
    {'x': [1, nan]}
    """
    check_depth(raw, what)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
    try:  # orjson refuses NaN / Infinity tokens, which clients using Python's json send
        return json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInputError(what, shorten(raw), f"must be valid JSON ({problem})") from None
