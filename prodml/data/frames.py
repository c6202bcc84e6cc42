"""Accept pandas, Polars, Arrow, NumPy or a file path at the edge; work in Arrow inside.

``to_arrow`` is the one door data comes through, so every other part handles one type.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from prodml.errors import InvalidInputError

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json",
           ".ndjson": "json", ".json": "json", ".arrow": "ipc", ".feather": "ipc"}


def read_path(path: str | os.PathLike[str]) -> pa.Table:
    """Read a CSV, Parquet, JSON-lines or Arrow file into an Arrow table."""
    p = Path(path)
    kind = READERS.get(p.suffix.lower())
    if kind is None:
        raise InvalidInputError("path", str(p), "must end in .csv, .parquet, .jsonl, .ndjson, "
                                ".json, .arrow or .feather")
    if not p.exists():
        raise InvalidInputError("path", str(p), "file does not exist")
    if kind == "csv":
        import pyarrow.csv as pacsv
        return pacsv.read_csv(p)
    if kind == "parquet":
        import pyarrow.parquet as pq
        return pq.read_table(p)
    if kind == "json":
        import pyarrow.json as pajson
        return pajson.read_json(p)
    with pa.memory_map(str(p)) as source:
        return pa.ipc.open_file(source).read_all()


def to_arrow(data: Any) -> pa.Table:
    """Convert a supported frame, array or path to an Arrow table.

    >>> import pandas as pd
    >>> to_arrow(pd.DataFrame({"a": [1, 2]})).num_rows
    2
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (str, os.PathLike)):
        return read_path(data)
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd
        if isinstance(data, pd.Series):
            data = data.to_frame()
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        import polars as pl
        if isinstance(data, pl.Series):
            data = data.to_frame()
        if isinstance(data, pl.LazyFrame):
            data = data.collect()
        return data.to_arrow()
    if isinstance(data, np.ndarray):
        array = data.reshape(-1, 1) if data.ndim == 1 else data
        if array.ndim != 2:
            raise InvalidInputError("data", f"array of shape {data.shape}", "must be 1- or 2-D")
        return pa.table({f"x{i}": array[:, i] for i in range(array.shape[1])})
    if isinstance(data, dict):
        return pa.table(data)
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pa.Table.from_pylist(data)
    raise InvalidInputError("data", type(data).__name__, "must be a pandas/Polars DataFrame, an "
                            "Arrow table, a NumPy array, a dict of columns or a file path")


def logical_type(arrow_type: pa.DataType) -> str:
    """The portable type name prodml records for an Arrow type.

    >>> logical_type(pa.int32()), logical_type(pa.large_string()), logical_type(pa.bool_())
    ('integer', 'string', 'boolean')
    """
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_dictionary(arrow_type):
        return "category"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    return str(arrow_type)


def column_schema(table: pa.Table) -> list[dict[str, Any]]:
    """Column names, logical and physical types, and nullability (has nulls) of a table.

    >>> column_schema(pa.table({"a": [1, None]}))
    [{'name': 'a', 'type': 'integer', 'arrow_type': 'int64', 'nullable': True}]
    """
    return [{"name": field.name, "type": logical_type(field.type), "arrow_type": str(field.type),
             "nullable": table.column(i).null_count > 0}
            for i, field in enumerate(table.schema)]


def digest_table(table: pa.Table) -> str:
    """SHA-256 of the table's Arrow IPC stream: same columns, types and values, same digest.

    The stream is hashed as it is written, never held in memory whole.

    >>> digest_table(pa.table({"a": [1]})) == digest_table(pa.table({"a": [1]}))
    True
    """
    hasher = _HashingWriter()
    with pa.PythonFile(hasher, mode="w") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks(), max_chunksize=65536)
    return hasher.hash.hexdigest()


def digest_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _HashingWriter:
    """A write-only file object that hashes what it is given instead of keeping it."""

    closed = False

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        return view.nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
