"""Step outputs as bytes: the format each kind of value is kept in, and back.

Frames (pandas, Polars, Arrow) are kept as Parquet, NumPy arrays as ``.npy``, values JSON
can hold exactly as canonical JSON (sorted keys, no spaces), so equal values give equal bytes
and equal digests. A Dask DataFrame is kept as Parquet partitions written where they are
computed, and a manifest (see :mod:`prodml.pipelines.dask_frames`). Anything else (a fitted
model, a result object) is pickled. Unpickling is safe here because a pipeline blob is only
ever read back from prodml's own content-addressed store, which checks every blob's SHA-256
against the digest the database recorded before it hands over a byte: a file swapped on
disk is refused, never unpickled.

>>> data, fmt = serialize({"b": 1, "a": [1.5, None]})
>>> data, fmt
(b'{"a":[1.5,null],"b":1}', 'json')
>>> deserialize(data, fmt)
{'a': [1.5, None], 'b': 1}
>>> import numpy as np
>>> deserialize(*serialize(np.arange(3))).tolist()
[0, 1, 2]
"""

from __future__ import annotations

import io
import json
import math
import pickle
from typing import Any

FORMATS = ("json", "pandas-parquet", "polars-parquet", "arrow-parquet", "npy", "dask-parquet",
           "pickle")


def serialize(value: Any, blobs: Any = None) -> tuple[bytes, str]:
    """The bytes of ``value`` and the name of their format (one of :data:`FORMATS`).

    ``blobs`` (an :class:`~prodml.store.artifacts.ArtifactStore`) is where a Dask
    DataFrame's partitions go; the bytes returned are then its manifest.
    """
    kind = _kind(value)
    if kind == "json":
        return canonical_json(value), "json"
    if kind == "dask":
        if blobs is None:
            raise ValueError("a Dask DataFrame is stored as partitions: pass blobs=")
        from prodml.pipelines.dask_frames import FORMAT, write_frame

        return write_frame(value, blobs), FORMAT
    try:
        return _columnar(value, kind)
    except Exception:  # noqa: BLE001 - e.g. a mixed-type object column Parquet cannot hold
        return pickle.dumps(value, protocol=5), "pickle"


def _columnar(value: Any, kind: str) -> tuple[bytes, str]:
    if kind == "pandas":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(value)
        return _parquet(pq, table), "pandas-parquet"
    if kind == "polars":
        buffer = io.BytesIO()
        value.write_parquet(buffer)
        return buffer.getvalue(), "polars-parquet"
    if kind == "arrow":
        import pyarrow.parquet as pq

        return _parquet(pq, value), "arrow-parquet"
    if kind == "numpy" and value.dtype != object:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue(), "npy"
    return pickle.dumps(value, protocol=5), "pickle"


def deserialize(data: bytes, fmt: str, blobs: Any = None) -> Any:
    """The value back from :func:`serialize`'s bytes (already SHA-256 verified by the store).

    A Dask DataFrame comes back lazy, over its partitions in ``blobs``.
    """
    if fmt == "json":
        return json.loads(data)
    if fmt == "dask-parquet":
        from prodml.pipelines.dask_frames import read_frame

        if blobs is None:
            raise ValueError("a stored Dask DataFrame reads its partitions: pass blobs=")
        return read_frame(data, blobs)
    if fmt.endswith("-parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        if fmt == "pandas-parquet":
            return table.to_pandas()
        if fmt == "polars-parquet":
            import polars as pl

            return pl.from_arrow(table)
        return table
    if fmt == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "pickle":
        return pickle.loads(data)  # verified bytes from prodml's own store (see above)
    raise ValueError(f"unknown pipeline value format {fmt!r}")


def describe(value: Any) -> dict[str, Any]:
    """Small facts about a value for its artifact's properties (rows, columns, shape)."""
    kind = _kind(value)
    facts: dict[str, Any] = {"python_type": f"{type(value).__module__}.{type(value).__qualname__}"}
    if kind in ("pandas", "polars", "arrow"):
        facts["rows"] = int(value.shape[0] if kind != "arrow" else value.num_rows)
        facts["columns"] = [str(c) for c in (value.column_names if kind == "arrow"
                                             else value.columns)][:200]
    elif kind == "dask":  # rows are counted as the partitions are written
        facts["npartitions"] = int(value.npartitions)
        facts["columns"] = [str(c) for c in value.columns][:200]
    elif kind == "numpy":
        facts["shape"] = list(value.shape)
        facts["dtype"] = str(value.dtype)
    return facts


def stored_facts(value: Any, data: bytes, fmt: str) -> dict[str, Any]:
    """:func:`describe` plus the format; a Dask frame's rows come from its manifest (counted
    as its partitions were written, so the frame is not computed again to count them)."""
    facts = {**describe(value), "format": fmt}
    if fmt == "dask-parquet":
        facts["rows"] = int(sum(json.loads(data)["rows"]))
    return facts


def default_type(value: Any) -> str:
    """The artifact type a value gets unless its step says otherwise."""
    kind = _kind(value)
    if kind in ("pandas", "polars", "arrow", "dask"):
        return "Dataset"
    if kind not in ("json", "numpy") and callable(getattr(value, "predict", None)):
        return "Model"
    return "Value"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: one byte string per JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def is_json(value: Any) -> bool:
    """True when JSON holds ``value`` exactly (so it comes back equal and of the same type)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if type(value) is int:
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(is_json(item) for item in value)
    if type(value) is dict:
        return all(type(k) is str and is_json(v) for k, v in value.items())
    return False


def _kind(value: Any) -> str:
    if is_json(value):
        return "json"
    module = type(value).__module__.split(".", 1)[0]
    name = type(value).__name__
    if module == "pandas" and name == "DataFrame":
        return "pandas"
    if module == "polars" and name == "DataFrame":
        return "polars"
    if module == "pyarrow" and name == "Table":
        return "arrow"
    if module == "numpy" and name == "ndarray":
        return "numpy"
    if module in ("dask", "dask_expr") and name == "DataFrame":
        return "dask"
    return "object"


def _parquet(pq: Any, table: Any) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
