"""Open Inference Protocol v2 (KServe, Triton, MLServer): decode infer requests, encode replies.

A request carries tensors; a prodml model takes columns. The tabular convention is MLServer's:

- one input tensor per column, named after the column, shape ``[n]`` or ``[n, 1]``;
- or a single 2-D input ``[n, k]`` whose columns are the model's inputs in signature order,
  marked by ``parameters.content_type`` ``"np"`` or ``"pd"`` (on the input or the request), or
  recognised when its name is not a column and its width is the number of columns.

Tensors arrive as JSON (``data``, nested or flat, row-major) or through the binary tensor
extension tritonclient uses by default: the JSON header is the first
``Inference-Header-Content-Length`` bytes of the body and each input's raw little-endian bytes
follow in order, sized by ``parameters.binary_data_size``. BYTES elements are a 4-byte
little-endian length and the bytes (:mod:`~prodml.serving.protocols.tensors` reads them);
numbers are converted with NumPy, a column at a time.

Replies carry ``predict`` (the answer per row) and ``predict_proba`` ``[n, classes]`` when the
model gives probabilities, ``confidence`` when asked for, in JSON or binary as the request
asks (``outputs[].parameters.binary_data``, ``parameters.binary_data_output``). prodml's
extras travel in the reply's ``parameters``: ``prediction_ids``, ``route`` and, when a row
went to a person instead of the model, ``statuses``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from prodml.errors import InvalidInputError
from prodml.serving.protocols import parse_json, shorten
from prodml.serving.protocols.tensors import (
    FLOATS,
    INTEGERS,
    Tensor,
    checked_numbers,
    json_object,
    read_tensors,
    to_binary,
)

_TEXT_TYPES = frozenset({"string", "category", "datetime"})
#: The datatype each prodml column type is declared with in model metadata.
DECLARED = {"integer": "INT64", "float": "FP64", "boolean": "BOOL", "string": "BYTES",
            "category": "BYTES", "datetime": "BYTES", "binary": "BYTES"}
_ACCEPTED = {"integer": INTEGERS, "float": INTEGERS | FLOATS, "boolean": frozenset({"BOOL"})}
_SEND = {"integer": "INT64 (or another INT / UINT datatype)",
         "float": "FP64 (or FP32, FP16, BF16, or an INT / UINT datatype)", "boolean": "BOOL",
         "string": "BYTES (UTF-8 text)", "category": "BYTES (UTF-8 text)",
         "datetime": "BYTES (ISO 8601 text)", "binary": "BYTES"}
MATRIX_CONTENT_TYPES = ("np", "pd")
HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: follow the request's binary_data_output


@dataclass(frozen=True)
class DecodedInfer:
    """An infer request as columns, with what the reply must look like."""

    columns: dict[str, list[Any]]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    requested_outputs: tuple[RequestedOutput, ...] | None = None  # None: every output
    binary_output: bool = False

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


# -- metadata ---------------------------------------------------------------------------------

def input_metadata(inputs_spec: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tensor metadata for a model's input columns (one ``[-1]`` tensor per column).

    >>> input_metadata([{"name": "age", "type": "integer"}, {"name": "car", "type": "category"}])
    [{'name': 'age', 'datatype': 'INT64', 'shape': [-1]}, {'name': 'car', 'datatype': 'BYTES', 'shape': [-1]}]
    """
    return [{"name": c["name"], "datatype": DECLARED.get(c["type"], "BYTES"), "shape": [-1]}
            for c in inputs_spec]


def output_metadata(outputs_spec: Sequence[Mapping[str, Any]],
                    classes: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Tensor metadata for a model's outputs; ``predict_proba`` is ``[-1, len(classes)]``."""
    out = []
    for o in outputs_spec:
        if o["name"] == "predict_proba":
            out.append({"name": "predict_proba", "datatype": "FP64",
                        "shape": [-1, len(classes) if classes else -1]})
        else:
            out.append({"name": o["name"], "datatype": DECLARED.get(o.get("type", ""), "BYTES"),
                        "shape": [-1]})
    return out


# -- requests ---------------------------------------------------------------------------------

def decode_infer_request(body: bytes, headers: Mapping[str, str],
                         inputs_spec: Sequence[Mapping[str, Any]],
                         outputs: Iterable[str] | None = None) -> DecodedInfer:
    """Decode an infer request (JSON or binary extension) into the model's columns.

    ``inputs_spec`` is the model's ``[{"name", "type"}]``; ``outputs``, when given, the output
    names a request may ask for. Raises :class:`InvalidInputError` naming the field and rule.

    >>> body = b'{"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 41]}]}'
    >>> decode_infer_request(body, {}, [{"name": "age", "type": "float"}]).columns
    {'age': [30.0, 41.0]}
    """
    raw = memoryview(body)
    header_length = _header(headers, HEADER_LENGTH)
    if header_length is not None:
        size = str(header_length).strip()
        if not size.isdigit() or not 0 < int(size) <= len(raw):
            raise InvalidInputError("Inference-Header-Content-Length", shorten(header_length),
                                    f"must be the length of the JSON header, between 1 and "
                                    f"the body's {len(raw)} bytes")
        request, binary = parse_json(raw[:int(size)], "body"), raw[int(size):]
    else:
        try:
            request, binary = parse_json(raw, "body"), raw[:0]
        except InvalidInputError as exc:
            if str(exc.rule).startswith("must be valid JSON"):
                _refuse_binary_without_header(raw)
            raise
    if not isinstance(request, dict):
        raise InvalidInputError("body", type(request).__name__,
                                "must be a JSON object with 'inputs'")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError("id", shorten(request_id), "must be a string")
    parameters = json_object(request.get("parameters"), "parameters")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInputError("parameters.binary_data_output", binary_output,
                                "must be true or false")
    tensors = read_tensors(request.get("inputs"), binary)
    columns = _columns(tensors, inputs_spec, parameters.get("content_type"))
    return DecodedInfer(columns, request_id, parameters,
                        _requested(request.get("outputs"), outputs), binary_output)


def _refuse_binary_without_header(raw: memoryview) -> None:
    """A JSON header followed by other bytes (binary tensor data) came without the header
    saying where the JSON ends: say that, not what the JSON parser makes of the bytes.

    >>> body = b'{"inputs": []}' + bytes([0, 0, 192, 255])
    >>> try:
    ...     _refuse_binary_without_header(memoryview(body))
    ... except InvalidInputError as e:
    ...     print(e.field, "|", e.rule)
    Inference-Header-Content-Length | is required when binary tensor data follows the JSON header: this body holds 14 bytes of JSON, then 4 more bytes: send Inference-Header-Content-Length: 14
    """
    import json

    text = bytes(raw).decode("utf-8", "surrogateescape")
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        return
    json_bytes = len(text[:end].encode("utf-8", "surrogateescape"))
    if json_bytes < len(raw) and text[end:].strip():
        raise InvalidInputError("Inference-Header-Content-Length", "missing",
                                "is required when binary tensor data follows the JSON header: "
                                f"this body holds {json_bytes} bytes of JSON, then "
                                f"{len(raw) - json_bytes} more bytes: send "
                                f"Inference-Header-Content-Length: {json_bytes}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getlist"):  # a plain dict: any case
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _columns(tensors: list[Tensor], spec: Sequence[Mapping[str, Any]],
             request_content_type: Any) -> dict[str, list[Any]]:
    types = {c["name"]: c["type"] for c in spec}
    if len(tensors) == 1 and spec:
        # MLServer: "np" / "pd" on the input, or "np" on the request, marks a 2-D input whose
        # columns are the model's inputs ("pd" on the request means one input per column).
        t = tensors[0]
        marked = t.content_type in MATRIX_CONTENT_TYPES or request_content_type == "np"
        if marked or (t.name not in types and len(t.shape) == 2 and t.shape[1] == len(spec)):
            return _matrix_columns(t, spec)
    unknown = [t.name for t in tensors if spec and t.name not in types]
    if unknown:
        raise InvalidInputError(unknown[0], unknown[0], "is not an input of this model; send "
                                "one input per column (" + ", ".join(types) + ") or a single "
                                "2-D input with parameters.content_type 'np'")
    missing = [n for n in types if n not in {t.name for t in tensors}]
    if missing:
        raise InvalidInputError(missing[0], None, "is a required input: send one input per "
                                "column (missing: " + ", ".join(missing) + ")")
    rows = None
    columns = {}
    order = {name: i for i, name in enumerate(types)}
    for t in sorted(tensors, key=lambda t: order[t.name]) if spec else tensors:
        if len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[1] != 1):
            raise InvalidInputError(f"{t.name}.shape", t.shape, "must be [rows] or [rows, 1] "
                                    "for a column")
        if rows is not None and t.shape[0] != rows:
            raise InvalidInputError(f"{t.name}.shape", t.shape, f"has {t.shape[0]} rows but "
                                    f"{tensors[0].name} has {rows}: every column needs the "
                                    "same number of rows")
        rows = t.shape[0]
        columns[t.name] = _column(t.name, types.get(t.name, "unknown"), t.datatype, t.values,
                                  t.nulls, matrix=False)
    if not rows:
        raise InvalidInputError("inputs", 0, "must hold at least one row")
    return columns


def _matrix_columns(t: Tensor, spec: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    width = len(spec)
    if width == 1 and len(t.shape) == 1:
        t.shape = [t.shape[0], 1]
    if len(t.shape) != 2 or t.shape[1] != width:
        raise InvalidInputError(f"{t.name}.shape", t.shape, f"must be [rows, {width}]: one "
                                "column per model input, in signature order (" +
                                ", ".join(c["name"] for c in spec) + ")")
    if not t.shape[0]:
        raise InvalidInputError("inputs", 0, "must hold at least one row")
    if t.datatype == "BYTES":
        values: Any = np.empty(len(t.values), dtype=object)
        values[:] = t.values
        grid = values.reshape(t.shape)
    else:
        grid = t.values.reshape(t.shape)
    nulls = None if t.nulls is None else t.nulls.reshape(t.shape)
    return {c["name"]: _column(c["name"], c["type"], t.datatype,
                               grid[:, j] if t.datatype != "BYTES" else grid[:, j].tolist(),
                               None if nulls is None else nulls[:, j], matrix=True)
            for j, c in enumerate(spec)}


def _column(name: str, kind: str, datatype: str, values: Any, nulls: np.ndarray | None,
            matrix: bool) -> list[Any]:
    """One tensor's values as the Python values of a column of type ``kind``."""
    accepted = _ACCEPTED.get(kind)
    if kind in _TEXT_TYPES or kind == "binary":
        accepted = frozenset({"BYTES"})
    if accepted is not None and datatype not in accepted and not (
            matrix and kind == "integer" and datatype in FLOATS):
        raise InvalidInputError(f"{name}.datatype", datatype, f"'{name}' is "
                                f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} column: send "
                                f"{_SEND[kind]}")
    if datatype == "BYTES":
        return _text(name, kind, values)
    if kind == "integer" and values.dtype.kind == "f":  # a float matrix: NaN is missing
        missing = np.isnan(values)
        checked_numbers(name, "INT64", values[~missing])
        out = values.astype(np.float64).tolist() if missing.all() else \
            np.where(missing, 0, values).astype(np.int64).tolist()
        nulls = missing if nulls is None else (nulls | missing)
    elif kind == "float":
        out = values.astype(np.float64).tolist()
    else:
        out = values.tolist()
    if nulls is not None:
        for i in np.flatnonzero(nulls).tolist():
            out[i] = None
    return out


def _text(name: str, kind: str, values: list[Any]) -> list[Any]:
    if kind == "binary":
        return [v.encode() if isinstance(v, str) else v for v in values]
    out = values
    try:
        if any(type(v) is bytes for v in values):
            out = [v.decode() if type(v) is bytes else v for v in values]
    except UnicodeDecodeError as exc:
        raise InvalidInputError(name, shorten(exc.object), "BYTES elements of a text column "
                                "must be UTF-8") from None
    if not all(type(v) is str or v is None for v in out):
        bad = next(v for v in out if type(v) is not str and v is not None)
        raise InvalidInputError(name, shorten(bad), "BYTES data must be strings")
    return out


def _requested(outputs: Any, allowed: Iterable[str] | None) -> tuple[RequestedOutput, ...] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInputError("outputs", shorten(outputs), "must be a list of "
                                "{name, parameters}")
    names = None if allowed is None else list(allowed)
    result = []
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidInputError(f"outputs[{i}]", shorten(o), "must be an object with a "
                                    "string 'name'")
        if names is not None and o["name"] not in names:
            raise InvalidInputError(f"outputs[{i}].name", o["name"], "is not an output of "
                                    "this model (" + ", ".join(names) + ")")
        binary = json_object(o.get("parameters"), f"outputs[{i}].parameters").get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInputError(f"outputs[{i}].parameters.binary_data", shorten(binary),
                                    "must be true or false")
        result.append(RequestedOutput(o["name"], binary))
    return tuple(result)


# -- replies ----------------------------------------------------------------------------------

def encode_infer_response(scored: Any, decoded: DecodedInfer, model_name: str,
                          version: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The reply body and headers: JSON, or JSON header + binary tensors when asked for.

    ``scored`` is the service's answer (predictions, probabilities, classes, confidence,
    prediction_ids, model_version, route, statuses).
    """
    wanted = decoded.requested_outputs
    if wanted is None:
        names = ["predict"] + (["predict_proba"] if scored.probabilities is not None else [])
        wanted = tuple(RequestedOutput(n, None) for n in names)
    outputs, chunks = [], []
    for req in wanted:
        tensor = _output(req.name, scored)
        binary = decoded.binary_output if req.binary is None else req.binary
        datatype, shape, values, params = tensor
        entry: dict[str, Any] = {"name": req.name, "datatype": datatype, "shape": shape}
        if binary:
            raw = to_binary(datatype, values)
            entry["parameters"] = {**params, "binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            if params:
                entry["parameters"] = params
            entry["data"] = values.tolist() if isinstance(values, np.ndarray) else values
        outputs.append(entry)
    answered = scored.model_version if scored.model_version is not None else version
    reply: dict[str, Any] = {"model_name": model_name}
    if answered is not None:
        reply["model_version"] = str(answered)
    if decoded.id is not None:
        reply["id"] = decoded.id
    parameters: dict[str, Any] = {"prediction_ids": list(scored.prediction_ids),
                                  "route": scored.route}
    statuses = list(getattr(scored, "statuses", None) or ())
    if any(s != "ok" for s in statuses):
        parameters["statuses"] = statuses
    reply["parameters"] = parameters
    reply["outputs"] = outputs
    header = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {"content-type": "application/octet-stream",
                                       "inference-header-content-length": str(len(header))}


def _output(name: str, scored: Any) -> tuple[str, list[int], Any, dict[str, Any]]:
    rows = len(scored.predictions)
    if name == "predict":
        datatype, values = _answers(scored.predictions, scored.classes)
        return datatype, [rows], values, {}
    if name == "predict_proba":
        # A fallback rule answers without probabilities: NaN rows keep the reply's shape.
        classes = list(scored.classes or [])
        probs = scored.probabilities or [None] * rows
        width = len(classes) or next((len(p) for p in probs if p is not None), 0)
        if any(p is None for p in probs):  # rows sent for review have no probabilities
            probs = [p if p is not None else [math.nan] * width for p in probs]
        matrix = np.asarray(probs, dtype=np.float64).reshape(rows, width)
        params = {"classes": [_plain(c) for c in classes]} if classes else {}
        return "FP64", [rows, width], matrix, params
    if name == "confidence":
        return "FP64", [rows], np.asarray(scored.confidence, dtype=np.float64), {}
    raise InvalidInputError("outputs", name, "is not an output of this model")


def _answers(predictions: Sequence[Any], classes: Sequence[Any] | None) -> tuple[str, Any]:
    """Datatype and values for ``predict``: BYTES for text, INT64 / FP64 / BOOL for numbers.

    A row sent to a person has no prediction: numbers become FP64 NaN there, text "".
    """
    sample = next((p for p in (classes or predictions) if p is not None), None)
    missing = any(p is None for p in predictions)
    if isinstance(sample, (bool, np.bool_)) and not missing:
        return "BOOL", np.asarray(predictions, dtype=bool)
    if isinstance(sample, (int, np.integer)) and not isinstance(sample, (bool, np.bool_)) \
            and not missing:
        return "INT64", np.asarray(predictions, dtype=np.int64)
    if isinstance(sample, (int, float, np.integer, np.floating)):
        return "FP64", np.asarray(predictions, dtype=np.float64)
    return "BYTES", ["" if p is None else p if isinstance(p, str) else str(_plain(p))
                     for p in predictions]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def error_body(error: Exception, status: int = 400) -> bytes:
    """The protocol's error reply: ``{"error": message}`` plus the field and rule."""
    body: dict[str, Any] = {"error": str(error)}
    for key in ("field", "rule"):
        if getattr(error, key, None) is not None:
            body[key] = getattr(error, key)
    return orjson.dumps(body)
