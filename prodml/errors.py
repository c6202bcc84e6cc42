"""Errors users see: each names the field, the value and the rule that was broken.

The CLI prints ``str(error)`` on one line and exits non-zero; the server (later) turns the
same errors into 4xx JSON bodies via :meth:`ProdmlError.to_dict`.
"""

from __future__ import annotations

import reprlib
from typing import Any

# How much of a value an error quotes: enough to recognise it, never the whole of a client's
# megabyte body or a structure nested a thousand levels deep (whose plain repr overflows the
# stack, turning a 400 into a 500).
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel = 4
_QUOTE.maxstring = _QUOTE.maxother = 200
_QUOTE.maxlong = 60
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxdict = _QUOTE.maxset = _QUOTE.maxfrozenset = 20


def quote(value: Any) -> str:
    """``repr(value)``, bounded in length and depth: safe for anything a client sent.

    >>> quote([[[[[[1]]]]]]), quote("x" * 3), quote(10 ** 5000)
    ('[[[[[...]]]]]', "'xxx'", '<an integer of about 5000 digits>')
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<an integer of about {round(value.bit_length() * 0.30103)} digits>"
    try:
        return _QUOTE.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        return f"<{type(value).__name__}>"


def _shown(value: Any) -> str | None:
    """An error's ``value`` as its JSON form carries it: ``str(value)`` up to 200 characters;
    containers (whose ``str`` walks every element) quoted."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict, set, frozenset, bytes, bytearray, int)):
        return quote(value)
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a value whose str fails is still named
        return quote(value)
    return text if len(text) <= 200 else text[:200] + "..."


class ProdmlError(Exception):
    """Base of every error prodml raises on purpose.

    >>> e = NotFoundError("run", "abc123")
    >>> str(e)
    "run 'abc123' not found"
    >>> e.to_dict()["field"]
    'run'
    >>> import pickle; str(pickle.loads(pickle.dumps(e)))
    "run 'abc123' not found"
    """

    exit_code = 1

    def __init__(self, message: str, *, field: str | None = None, value: Any = None,
                 rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.rule = rule

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments; rebuild from the finished fields so
        # errors cross process boundaries (multiprocessing, Dask workers) intact.
        return (_rebuild, (type(self), self.message, self.field, self.value, self.rule,
                           dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, "field": self.field,
                "value": _shown(self.value), "rule": self.rule}


def _rebuild(kind: type, message: str, field: Any, value: Any, rule: Any,
             state: dict[str, Any]) -> ProdmlError:
    error = Exception.__new__(kind)
    ProdmlError.__init__(error, message, field=field, value=value, rule=rule)
    error.__dict__.update(state)
    return error


class NotFoundError(ProdmlError):
    """A run, experiment, model, version, alias or artifact does not exist."""

    def __init__(self, kind: str, key: Any, hint: str = "") -> None:
        message = f"{kind} {quote(key)} not found" + (f": {hint}" if hint else "")
        super().__init__(message, field=kind, value=key, rule="must exist")


class InvalidInputError(ProdmlError):
    """A value breaks a rule (wrong type, malformed reference, out of range...)."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        super().__init__(f"{field}={quote(value)}: {rule}", field=field, value=value, rule=rule)


class ParamChangedError(ProdmlError):
    """A param was logged again with a different value; params are write-once."""

    def __init__(self, run_id: str, key: str, old: str, new: str) -> None:
        super().__init__(
            f"param {key!r} of run {run_id} is already {old!r}; cannot change it to {new!r} "
            "(params are write-once: start a new run for new values)",
            field=f"params.{key}", value=new, rule="params are write-once")


class QuerySyntaxError(ProdmlError):
    """A search query could not be parsed; the message points at the bad token."""

    def __init__(self, query: str, position: int, problem: str) -> None:
        pointer = " " * position + "^"
        super().__init__(f"{problem} at position {position}\n  {query}\n  {pointer}",
                         field="query", value=query, rule=problem)
        self.position = position
        self.problem = problem

    def one_line(self) -> str:
        return f"{self.problem} at position {self.position} in query {self.value!r}"


class ArtifactIntegrityError(ProdmlError):
    """An artifact's bytes no longer match the SHA-256 the store recorded: nothing is loaded."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(
            f"artifact {uri} is corrupt or was tampered with: expected sha256 {expected}, "
            f"found {actual}; refusing to load it",
            field="artifact", value=uri, rule="bytes must match the recorded sha256")


class StoreUnavailableError(ProdmlError):
    """The database URL cannot be reached or opened.

    The server's fault, not the request's: HTTP 503 with ``Retry-After`` (seconds), so a
    client tries again rather than giving up on a request that was fine.
    """

    status_code = http_status = 503  # read by the protocols' and the plain routes' mappers
    retry_after_s = 5

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot open store {url}: {reason}", field="database_url", value=url,
                         rule="must be a reachable SQLite path or PostgreSQL URL")


class StoreWriteError(StoreUnavailableError):
    """A write to the store failed (disk full, I/O error, database gone): nothing of it was
    committed. A request whose answer must be logged first is refused with a 503.

    >>> e = StoreWriteError("sqlite:///p.db", "disk I/O error")
    >>> str(e), e.status_code, e.retry_after_s
    ('cannot write to store sqlite:///p.db: disk I/O error; nothing was committed, try again \
later', 503, 5)
    """

    def __init__(self, url: str, reason: str) -> None:
        ProdmlError.__init__(self, f"cannot write to store {url}: {reason}; nothing was "
                             "committed, try again later", field="store", value=url,
                             rule="a write must commit before it is acknowledged")
        self.reason = reason
