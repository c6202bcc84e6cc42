"""The prediction log's payload: the rows of one commit as one Arrow IPC stream.

One ``prediction_batches`` row holds the rows of one endpoint that were committed together,
as one Arrow IPC stream with the columns ``prediction_id``; the log's own fields as in the
``predictions`` table (``time``, ``model_name``, ``model_version``, ``route``, ``revision``,
``routing_key``, ``parent_id``, ``status``, ``prediction`` as JSON text, ``confidence``,
``latency_ms``, ``error``); then ``input.<name>`` per feature and ``proba.<class>`` per
class. The prefixes keep inputs apart from everything else whatever they are called;
readers strip them. With the log's fields in the payload too, reading a window of the log
back is a few blob reads (``prediction_batches`` by endpoint and time), not a million SQL
rows; the ``predictions`` table is the index that SQL joins and lookups use.

Building a column never fails a commit: rows that disagree on keys get nulls where a key is
missing; a column whose values mix types within one commit is stored as text (strings as
they are, other values as JSON); a value that cannot even be written as JSON is stored as
null and named in the row's ``problems``, so the prediction itself is still logged.

Inputs marked as PII are replaced by ``hash_pii(value)`` before they reach Arrow: an
HMAC-SHA256 (hex) keyed by ``PRODML_PII_KEY``, or else by a random key created once in
``$PRODML_HOME/pii.key``. Equal values give equal hashes, so counts, joins and drift still
work on them; the clear value is never written.

>>> key = b"k" * 32
>>> hash_pii("alice@example.com", key=key) == hash_pii("alice@example.com", key=key)
True
>>> len(hash_pii(12345, key=key)), hash_pii(None, key=key)
(64, None)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

ID = "prediction_id"
INPUT = "input."
PROBA = "proba."
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_ARROW_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


def to_json(value: Any) -> str | None:
    """The log's JSON text of an answer or a label (``None`` stays SQL NULL).

    Predictions and labels go through this one encoder, so equal values give equal text
    and SQL can compare them (``predictions.prediction = feedback.value``).

    >>> to_json("approve"), to_json(1), to_json([0.5, 1]), to_json(None)
    ('"approve"', '1', '[0.5,1]', None)
    """
    if value is None:
        return None
    return orjson.dumps(value, option=JSON_OPTIONS).decode()


# -- PII -------------------------------------------------------------------------------------
_key_lock = threading.Lock()
_keys: dict[tuple[str | None, str], bytes] = {}


def pii_key() -> bytes:
    """The key PII inputs are hashed with: ``PRODML_PII_KEY``, else ``$PRODML_HOME/pii.key``.

    The key file is created once (32 random bytes, hex, mode 600) by whichever process needs
    it first; processes that start together all end up with the same key.
    """
    from prodml.config import Settings

    env = os.environ.get("PRODML_PII_KEY")
    path = Settings.from_env().home / "pii.key"
    cache_key = (env, str(path))
    with _key_lock:
        if cache_key not in _keys:
            _keys[cache_key] = env.encode() if env else _key_file(path)
        return _keys[cache_key]


def _key_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside then linked into place: link fails if another process won the race,
        # and nobody ever reads a half-written key.
        draft = path.with_name(f".pii.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        finally:
            os.close(fd)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return bytes.fromhex(path.read_text().strip())


def hash_pii(value: Any, *, key: bytes | None = None) -> str | None:
    """HMAC-SHA256 (hex) of a PII value: strings as UTF-8, other values as their JSON text.

    ``None`` stays ``None`` (a missing value says nothing about a person).
    """
    if value is None:
        return None
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bytes):
        data = value
    else:
        try:
            data = orjson.dumps(value, option=JSON_OPTIONS)
        except TypeError:
            data = str(value).encode()
    return hmac.digest(key if key is not None else pii_key(), data, hashlib.sha256).hex()


def mask_json(text: str | None, pii: frozenset[str], key: bytes | None = None) -> str | None:
    """A label's JSON text with the values under PII names hashed, at any depth.

    Labels and review answers are free JSON: an object label may carry a PII column of the
    endpoint (``{"email": ..., "fraud": true}``), which must not be stored in clear either.

    >>> masked = mask_json('{"email": "ann@x.io", "ok": 1}', frozenset({"email"}), b"k" * 32)
    >>> masked == '{"email":"%s","ok":1}' % hash_pii("ann@x.io", key=b"k" * 32)
    True
    >>> mask_json('"approve"', frozenset({"email"}))
    '"approve"'
    """
    if text is None or not pii or text[:1] not in ("{", "["):
        return text
    secret = key if key is not None else pii_key()

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: hash_pii(v, key=secret) if k in pii else walk(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value
    return to_json(walk(orjson.loads(text)))


# -- encoding --------------------------------------------------------------------------------
LOG_FIELDS: dict[str, pa.DataType] = {
    "time": pa.int64(), "model_name": pa.string(), "model_version": pa.int64(),
    "route": pa.string(), "revision": pa.int64(), "routing_key": pa.string(),
    "parent_id": pa.string(), "status": pa.string(), "prediction": pa.string(),
    "confidence": pa.float64(), "latency_ms": pa.float64(), "error": pa.string(),
}


@dataclass
class Columns:
    """The input and probability columns of some records, and each row's problems."""

    names: list[str]
    arrays: list[pa.Array]
    problems: dict[int, list[str]]


def encode_inputs(records: Sequence[Any], pii: frozenset[str] = frozenset(),
                  key: bytes | None = None) -> Columns:
    """The ``input.*`` and ``proba.*`` columns of ``records`` (PredictionRecord-like)."""
    problems: dict[int, list[str]] = {}
    names: dict[Any, Any] = {}  # the union of the rows' keys, in order (values unused)
    classes: dict[Any, Any] = {}
    inputs: list[Mapping[Any, Any]] = []
    for i, record in enumerate(records):
        row = record.inputs
        if type(row) is not dict and not isinstance(row, Mapping):
            problems.setdefault(i, []).append(
                f"inputs not logged: expected a mapping, got {type(row).__name__}")
            row = {}
        inputs.append(row)
        names.update(row)
        if record.probabilities:
            classes.update(record.probabilities)
    fields: list[str] = []
    arrays: list[pa.Array] = []
    seen: set[str] = set()
    for name in names:
        field = INPUT + str(name)
        if field in seen:  # e.g. keys 1 and "1" in one commit: the first one is kept
            continue
        seen.add(field)
        values = [row.get(name) for row in inputs]
        if name in pii:
            secret = key if key is not None else pii_key()
            values = [hash_pii(v, key=secret) for v in values]
        fields.append(field)
        arrays.append(_column(values, f"input {name!r}", problems))
    for cls in classes:
        field = PROBA + str(cls)
        if field in seen:
            continue
        seen.add(field)
        fields.append(field)
        arrays.append(_probabilities([(r.probabilities or {}).get(cls) for r in records],
                                     f"probability of {cls!r}", problems))
    return Columns(fields, arrays, problems)


def encode(rows: Sequence[Mapping[str, Any]], columns: Columns) -> bytes:
    """One Arrow IPC stream: the ``predictions`` rows' fields, then ``columns``.

    >>> from types import SimpleNamespace as R
    >>> records = [R(id="a", inputs={"age": 30, "city": "Oslo"},
    ...              probabilities={"0": 0.2, "1": 0.8}),
    ...            R(id="b", inputs={"age": "41"}, probabilities=None)]
    >>> columns = encode_inputs(records)
    >>> rows = [{"id": r.id, "time": 1, "status": "ok"} for r in records]
    >>> table = decode(encode(rows, columns))
    >>> table.select(["prediction_id", "time", "input.age", "input.city", "proba.1"]).to_pydict()
    {'prediction_id': ['a', 'b'], 'time': [1, 1], 'input.age': ['30', '41'], \
'input.city': ['Oslo', None], 'proba.1': [0.8, None]}
    """
    names = [ID, *LOG_FIELDS, *columns.names]
    arrays = [pa.array([row["id"] for row in rows], pa.string()),
              *(pa.array([row.get(name) for row in rows], kind)
                for name, kind in LOG_FIELDS.items()),
              *columns.arrays]
    table = pa.Table.from_arrays(arrays, names=names)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _column(values: list[Any], what: str, problems: dict[int, list[str]]) -> pa.Array:
    try:
        return pa.array(values)
    except _ARROW_ERRORS:
        pass
    text: list[str | None] = []
    for i, value in enumerate(values):
        if value is None or isinstance(value, str):
            text.append(value)
            continue
        try:
            text.append(orjson.dumps(value, option=JSON_OPTIONS).decode())
        except TypeError as exc:
            text.append(None)
            problems.setdefault(i, []).append(f"{what} not logged: {exc}")
    return pa.array(text, pa.string())


def _probabilities(values: list[Any], what: str, problems: dict[int, list[str]]) -> pa.Array:
    try:
        return pa.array(values, pa.float64())
    except _ARROW_ERRORS:
        pass
    out: list[float | None] = []
    for i, value in enumerate(values):
        try:
            out.append(None if value is None else float(value))
        except (TypeError, ValueError) as exc:
            out.append(None)
            problems.setdefault(i, []).append(f"{what} not logged: {exc}")
    return pa.array(out, pa.float64())


def decode(payload: bytes) -> pa.Table:
    """The table one payload holds."""
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
