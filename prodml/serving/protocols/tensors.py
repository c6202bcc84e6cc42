"""Open Inference Protocol tensors: JSON ``data`` or binary extension bytes to NumPy and back.

A tensor's values come either from its JSON ``data`` (nested or flat, row-major; ``null``
allowed among numbers and remembered as a mask) or from the binary part of the body
(``parameters.binary_data_size`` bytes, little-endian; BYTES elements are a 4-byte length and
the bytes). Numbers become one flat NumPy array per tensor, checked against the datatype
(kind, whole numbers, range) without a Python loop per element.

>>> raw = memoryview(b'{"inputs": []}' + np.array([1.5, 2.0]).tobytes())
>>> read_tensors([{"name": "x", "datatype": "FP64", "shape": [2],
...                "parameters": {"binary_data_size": 16}}], raw[14:])[0].values
array([1.5, 2. ])
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodml.errors import InvalidInputError
from prodml.serving.protocols import shorten

NUMPY_TYPES = {"BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
               "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
               "FP32": "<f4", "FP64": "<f8"}
DATATYPES = (*NUMPY_TYPES, "BF16", "BYTES")
INTEGERS = frozenset(t for t in NUMPY_TYPES if "INT" in t)
FLOATS = frozenset({"FP16", "FP32", "FP64", "BF16"})


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: Any  # flat ndarray for numbers, list of bytes / str for BYTES
    nulls: np.ndarray | None = None  # JSON nulls among numbers
    content_type: str | None = None


def json_object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(where, shorten(value), "must be a JSON object")
    return value


def read_tensors(inputs: Any, binary: memoryview) -> list[Tensor]:
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("inputs", shorten(inputs), "must be a non-empty list of tensors")
    tensors, offset, seen = [], 0, set()
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise InvalidInputError(f"inputs[{i}]", shorten(spec), "must be a JSON object")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"inputs[{i}].name", shorten(name),
                                    "must be a non-empty string")
        if name in seen:
            raise InvalidInputError(f"inputs[{i}].name", name, "appears twice")
        seen.add(name)
        datatype = spec.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInputError(f"{name}.datatype", shorten(datatype),
                                    f"must be one of {', '.join(DATATYPES)}")
        shape = spec.get("shape")
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise InvalidInputError(f"{name}.shape", shorten(shape),
                                    "must be a list of non-negative integers")
        params = json_object(spec.get("parameters"), f"{name}.parameters")
        count = math.prod(shape)
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidInputError(f"{name}.parameters.binary_data_size", shorten(size),
                                        f"must fit the {len(binary) - offset} binary bytes "
                                        "left after the JSON header")
            if "data" in spec:
                raise InvalidInputError(f"{name}.data", "present", "must be absent when "
                                        "parameters.binary_data_size is given")
            values = _from_binary(name, datatype, count, binary[offset:offset + size])
            offset += size
            nulls = None
        elif "data" in spec:
            values, nulls = _from_json(name, datatype, count, spec["data"])
        else:
            raise InvalidInputError(f"{name}.data", None, "is required (or send the tensor "
                                    "as binary data with parameters.binary_data_size)")
        tensors.append(Tensor(name, datatype, shape, values, nulls,
                               params.get("content_type")))
    if offset != len(binary):
        raise InvalidInputError("body", f"{len(binary) - offset} extra bytes",
                                "binary data must be exactly the inputs' binary_data_size "
                                "bytes, in order, after the JSON header")
    return tensors


def _from_binary(name: str, datatype: str, count: int, raw: memoryview) -> Any:
    if datatype == "BYTES":
        return _bytes_elements(name, count, raw)
    itemsize = 2 if datatype == "BF16" else np.dtype(NUMPY_TYPES[datatype]).itemsize
    if len(raw) != count * itemsize:
        raise InvalidInputError(f"{name}.parameters.binary_data_size", len(raw),
                                f"must be {count * itemsize}: {count} {datatype} elements of "
                                f"{itemsize} bytes for the shape given")
    if datatype == "BF16":  # the upper half of a float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    if datatype == "BOOL":
        flags = np.frombuffer(raw, np.uint8)
        if flags.size and flags.max() > 1:
            raise InvalidInputError(name, int(flags.max()), "BOOL bytes must be 0 or 1")
        return flags.view(np.bool_)
    return np.frombuffer(raw, NUMPY_TYPES[datatype])


def _bytes_elements(name: str, count: int, raw: memoryview) -> list[bytes]:
    data, out, pos, end = bytes(raw), [], 0, len(raw)
    unpack = struct.Struct("<I").unpack_from
    while pos < end:
        if pos + 4 > end:
            raise InvalidInputError(f"{name}.data", f"{end - pos} trailing bytes",
                                    "BYTES elements are a 4-byte little-endian length then "
                                    "the bytes")
        (length,) = unpack(data, pos)
        pos += 4
        if pos + length > end:
            raise InvalidInputError(f"{name}.data", f"element {len(out)} of {length} bytes",
                                    "runs past the end of the tensor's binary data")
        out.append(data[pos:pos + length])
        pos += length
    if len(out) != count:
        raise InvalidInputError(f"{name}.shape", count, f"holds {count} elements but the "
                                f"binary data has {len(out)}")
    return out


def _from_json(name: str, datatype: str, count: int, data: Any) -> tuple[Any, Any]:
    if not isinstance(data, list):
        raise InvalidInputError(f"{name}.data", shorten(data), "must be a list (flat or nested)")
    if datatype == "BYTES":
        try:
            flat = _flatten(data)
        except RecursionError:
            raise InvalidInputError(f"{name}.data", "deeply nested", "must be nested no "
                                    "deeper than the tensor's shape") from None
        if len(flat) != count:
            raise InvalidInputError(f"{name}.shape", count, f"holds {count} elements but "
                                    f"data has {len(flat)}")
        return flat, None
    try:
        values = np.asarray(data)
    except (ValueError, OverflowError):
        raise InvalidInputError(f"{name}.data", "ragged", "nested lists must be rectangular "
                                "(or send the data flat)") from None
    if values.size != count:
        raise InvalidInputError(f"{name}.shape", count, f"holds {count} elements but data "
                                f"has {values.size}")
    values, nulls = values.ravel(), None
    if values.dtype == object:  # JSON nulls, or numbers too large for int64
        nulls = np.equal(values, None)
        rest = values[~nulls].tolist()
        try:
            filled = np.asarray(rest)
        except (ValueError, OverflowError):
            filled = np.asarray(rest, dtype=object)
        if filled.dtype == object or filled.ndim != 1:
            raise InvalidInputError(name, shorten(next((v for v in rest if not isinstance(
                v, (int, float))), rest[0] if rest else None)), f"{datatype} data must be "
                "numbers within the datatype's range, or null")
        if not filled.size:  # every value is null
            filled = filled.astype(np.bool_ if datatype == "BOOL" else np.float64)
        values = np.zeros(count, filled.dtype)
        values[~nulls] = filled
        nulls = nulls if nulls.any() else None
    return checked_numbers(name, datatype, values), nulls


def checked_numbers(name: str, datatype: str, values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if datatype == "BOOL":
        if kind != "b" and values.size:
            raise InvalidInputError(name, shorten(values[0].item()), "BOOL data must be "
                                    "true or false")
        return values.astype(bool)
    if kind not in "iufb" or (kind == "b" and values.size):
        raise InvalidInputError(name, shorten(values[0].item()) if values.size else None,
                                f"{datatype} data must be numbers")
    if datatype in INTEGERS:
        if kind == "f":
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                raise InvalidInputError(name, values[bad][0].item(),
                                        f"{datatype} data must be whole numbers")
        limits = np.iinfo(NUMPY_TYPES[datatype])
        if values.size and (values.min() < limits.min or values.max() > limits.max):
            raise InvalidInputError(name, (values.min() if values.min() < limits.min
                                           else values.max()).item(),
                                    f"is outside {datatype}'s range [{limits.min}, "
                                    f"{limits.max}]")
        return values.astype(NUMPY_TYPES[datatype])
    return values.astype(np.float32 if datatype == "BF16" else NUMPY_TYPES[datatype])


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v) if isinstance(v, list) else (v,))
    return out


def to_binary(datatype: str, values: Any) -> bytes:
    if datatype == "BYTES":
        encoded = [v.encode() for v in values]
        return b"".join(len(b).to_bytes(4, "little") + b for b in encoded)
    return np.ascontiguousarray(values, dtype=NUMPY_TYPES[datatype]).tobytes()
