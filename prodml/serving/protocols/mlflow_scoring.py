"""MLflow's scoring protocol: ``POST /invocations`` bodies to columns, answers to JSON.

Accepted exactly as MLflow's scoring server accepts them (MLflow 2):

- ``application/json`` holding exactly one of
  ``dataframe_split`` (``{"columns": [...], "data": [[...], ...], "index"?: [...]}``, what
  ``DataFrame.to_dict(orient="split")`` and MLflow's client send), ``dataframe_records``
  (``[{column: value}, ...]``), ``instances`` (rows: records, lists in signature order, or
  scalars for a one-column model) or ``inputs`` (columns ``{column: [values]}``, or rows as
  for ``instances``), and optionally ``params``;
- ``text/csv`` with a header row (``DataFrame.to_csv()``; pandas' unnamed index column is
  dropped), typed by the model's input columns.

Only UTF-8 is read; another charset or content type is a 415. The answer is
``{"predictions": [...]}`` with prodml's extras beside it (MLflow's own server puts metadata
there too): ``prediction_ids``, ``model_version``, ``route`` and, when a person decides some
rows, ``statuses``. Errors are ``{"error_code": "BAD_REQUEST", "message": ...}``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from prodml.errors import InvalidInputError
from prodml.serving.protocols import parse_json, shorten, status_for
from prodml.serving.protocols.transport import UnsupportedMediaTypeError

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPES = ("application/json", "text/csv")
_ERROR_CODES = {404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE"}


@dataclass(frozen=True)
class Invocation:
    columns: dict[str, list[Any]]
    params: dict[str, Any] = field(default_factory=dict)
    format: str = "dataframe_split"

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def decode_invocation(body: bytes, content_type: str | None,
                      inputs_spec: Sequence[Mapping[str, Any]] | None = None) -> Invocation:
    """An ``/invocations`` body as the model's columns (name → list of values).

    ``inputs_spec`` (the model's ``[{"name", "type"}]``) orders unnamed values, types CSV
    text and refuses columns the model does not take.

    >>> decode_invocation(b'{"dataframe_split": {"columns": ["age", "car"], '
    ...                   b'"data": [[30, "a"], [41, "b"]]}}', "application/json").columns
    {'age': [30, 41], 'car': ['a', 'b']}
    >>> decode_invocation(b"age,car\\n30,a\\n", "text/csv",
    ...                   [{"name": "age", "type": "integer"}, {"name": "car", "type": "string"}]
    ...                   ).columns
    {'age': [30], 'car': ['a']}
    """
    mime = _media_type(content_type)
    if mime == "text/csv":
        return Invocation(_checked(_csv_columns(body, inputs_spec), inputs_spec), {}, "csv")
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidInputError("body", type(payload).__name__, _required_shape(
            "received a list" if isinstance(payload, list) else "received a "
            + type(payload).__name__))
    present = [k for k in FORMATS if k in payload]
    if len(present) != 1:
        raise InvalidInputError("body", "{" + ", ".join(map(str, payload))[:200] + "}",
                                _required_shape(f"received {len(present)} of them"))
    kind = present[0]
    params = payload.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise InvalidInputError("params", shorten(params), "must be a JSON object")
    names = [c["name"] for c in inputs_spec or ()]
    value = payload[kind]
    if kind == "dataframe_split":
        columns = _split(value, names)
    elif kind == "dataframe_records":
        columns = _records(value, kind)
    elif kind == "inputs" and isinstance(value, dict):
        columns = _columnar(value)
    else:
        columns = _rows(value, kind, names)
    return Invocation(_checked(columns, inputs_spec), params, kind)


def _media_type(content_type: str | None) -> str:
    mime, _, rest = (content_type or "").partition(";")
    mime = mime.strip().lower() or "application/json"  # a bare body: read it as JSON
    options = {}
    for part in rest.split(";"):
        if part.strip():
            key, _, value = part.partition("=")
            options[key.strip().lower()] = value.strip().strip('"')
    charset = options.pop("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaTypeError("Content-Type", content_type,
                                        "the scoring server reads UTF-8 only")
    if options:
        raise UnsupportedMediaTypeError(
            "Content-Type", content_type, "takes no parameters but charset (MLflow 1's "
            "'format=pandas-split' is gone: wrap the frame as {\"dataframe_split\": ...})")
    if mime not in CONTENT_TYPES:
        raise UnsupportedMediaTypeError("Content-Type", content_type,
                                        "must be application/json or text/csv")
    return mime


def _required_shape(received: str) -> str:
    return ("must be a JSON object with exactly one of " + ", ".join(FORMATS)
            + f" (and optionally params); {received}")


def _split(value: Any, names: list[str]) -> dict[str, list[Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise InvalidInputError("dataframe_split", shorten(value), "must be {\"columns\": "
                                "[...], \"data\": [[...], ...]} (DataFrame.to_dict("
                                "orient='split'))")
    columns = value.get("columns", names)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidInputError("dataframe_split.columns", shorten(columns),
                                "must be a list of column names")
    return _from_rows(value["data"], columns, "dataframe_split.data")


def _from_rows(rows: list[Any], names: list[str], where: str) -> dict[str, list[Any]]:
    if not names:
        raise InvalidInputError(where, shorten(rows), "rows without column names need the "
                                "model's signature; send dataframe_split with columns or "
                                "records")
    if len(set(names)) != len(names):
        raise InvalidInputError(where.rpartition(".")[0] + ".columns" if "." in where
                                else where, names, "column names must be unique")
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != len(names):
            raise InvalidInputError(f"{where}[{i}]", shorten(row), f"must be a list of "
                                    f"{len(names)} values, one per column ("
                                    + ", ".join(names) + ")")
    return {name: list(values) for name, values in zip(names, zip(*rows))} if rows else \
        {name: [] for name in names}


def _records(value: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(value, list):
        raise InvalidInputError(where, shorten(value), "must be a list of records "
                                "({column: value})")
    names: dict[str, None] = {}
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise InvalidInputError(f"{where}[{i}]", shorten(record),
                                    "must be an object of column values")
        names.update(dict.fromkeys(record))
    return {name: [r.get(name) for r in value] for name in names}


def _columnar(value: dict[str, Any]) -> dict[str, list[Any]]:
    columns = {}
    for name, values in value.items():
        if not isinstance(values, list):
            values = [values]  # one row
        elif values and all(type(v) is list and len(v) == 1 for v in values):
            values = [v[0] for v in values]  # a [rows, 1] tensor
        columns[name] = values
    return columns


def _rows(value: Any, kind: str, names: list[str]) -> dict[str, list[Any]]:
    if not isinstance(value, list):
        raise InvalidInputError(kind, shorten(value), "must be a list of rows (or, for "
                                "inputs, an object of columns)")
    if value and all(isinstance(v, dict) for v in value):
        return _records(value, kind)
    if value and not any(isinstance(v, (list, dict)) for v in value):
        if len(names) != 1:
            raise InvalidInputError(kind, shorten(value), "a list of single values fits a "
                                    "model with one input; this one takes " +
                                    (", ".join(names) or "named columns") +
                                    ": send rows as records or lists")
        return {names[0]: value}
    return _from_rows(value, names, kind)


def _csv_columns(body: bytes, spec: Sequence[Mapping[str, Any]] | None) -> dict[str, list[Any]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("body", shorten(exc.object[max(0, exc.start - 20):exc.end]),
                                "CSV must be UTF-8 text") from None
    header = next(csv.reader(io.StringIO(text.partition("\n")[0])), [])
    if not header or not any(h.strip() for h in header):
        raise InvalidInputError("body", shorten(body), "CSV must start with a header row of "
                                "column names")
    types = {c["name"]: c["type"] for c in spec or ()}
    as_text = {name: pa.string() for name in header} if types else None
    try:
        table = pacsv.read_csv(pa.py_buffer(body), convert_options=pacsv.ConvertOptions(
            column_types=as_text, strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError("body", shorten(body), "must be CSV with a header row (pandas "
                                f"DataFrame.to_csv()): {exc}") from None
    if table.column_names and table.column_names[0] in ("", "Unnamed: 0") \
            and "" not in types:
        table = table.drop_columns([table.column_names[0]])  # pandas' index
    columns = {}
    for name in table.column_names:
        columns[name] = _typed(name, table.column(name), types.get(name))
    return columns


_ARROW_TYPES = {"integer": "int64", "float": "float64", "boolean": "bool"}


def _typed(name: str, values: Any, kind: str | None) -> list[Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    target = _ARROW_TYPES.get(kind or "")
    if target is None:
        return values.to_pylist()
    try:
        return pc.cast(values, target).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if kind == "integer":  # pandas writes an integer column with gaps as floats: "30.0"
        try:
            floats = pc.cast(values, "float64")
            if pc.all(pc.equal(floats, pc.floor(floats))).as_py() in (True, None):
                return pc.cast(floats, "int64").to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    for value in values.to_pylist():
            try:
                pc.cast(pa.array([value]), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidInputError(name, shorten(value), f"must be {kind} (CSV column "
                                        f"{name!r})") from None
            if kind == "integer" and float(value) != int(float(value)):
                raise InvalidInputError(name, value, "must be a whole number (CSV column "
                                        f"{name!r})")
    raise InvalidInputError(name, None, f"must be {kind} (CSV column {name!r})")


def _checked(columns: dict[str, list[Any]], spec: Sequence[Mapping[str, Any]] | None
             ) -> dict[str, list[Any]]:
    lengths = {name: len(values) for name, values in columns.items()}
    if not columns or not any(lengths.values()):
        raise InvalidInputError("body", 0, "must hold at least one row")
    if len(set(lengths.values())) != 1:
        first = next(iter(lengths))
        odd = next(n for n, size in lengths.items() if size != lengths[first])
        raise InvalidInputError(odd, f"{lengths[odd]} values", f"every column needs the same "
                                f"number of rows ({first!r} has {lengths[first]})")
    if spec:
        names = [c["name"] for c in spec]
        unknown = [n for n in columns if n not in set(names)]
        if unknown:
            raise InvalidInputError(unknown[0], unknown[0], "is not an input of this model "
                                    "(inputs: " + ", ".join(names) + ")")
        missing = [n for n in names if n not in columns]
        if missing:
            raise InvalidInputError(missing[0], None, "is a required input (missing: "
                                    + ", ".join(missing) + ")")
        columns = {n: columns[n] for n in names}
    return columns


def encode_predictions(scored: Any) -> bytes:
    """``{"predictions": [...]}`` with prodml's extras beside it."""
    body: dict[str, Any] = {"predictions": scored.predictions,
                            "prediction_ids": scored.prediction_ids,
                            "model_version": scored.model_version, "route": scored.route}
    statuses = getattr(scored, "statuses", None) or ()
    if any(s != "ok" for s in statuses):
        body["statuses"] = list(statuses)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def error_body(error: Exception, status: int | None = None) -> bytes:
    """MLflow's error shape: ``{"error_code", "message"}``, plus the field and the rule.

    >>> error_body(InvalidInputError("age", "x", "must be a number"))
    b'{"error_code":"BAD_REQUEST","message":"age=\\'x\\': must be a number","field":"age","rule":"must be a number"}'
    """
    status = status if status is not None else status_for(error)  # type: ignore[arg-type]
    body: dict[str, Any] = {"error_code": _ERROR_CODES.get(status, "BAD_REQUEST"),
                            "message": str(error)}
    for key in ("field", "rule"):
        if getattr(error, key, None) is not None:
            body[key] = getattr(error, key)
    return orjson.dumps(body)
