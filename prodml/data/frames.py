"""Accept pandas, Polars, Arrow, NumPy or a file path at the edge; work in Arrow inside.

``to_arrow`` is the one door data comes through, so every other part handles one type.
``read_table`` is the same door for validation, held open for pandas columns that mix Python
types (Arrow cannot store them): they come through as text, and are named, so that a check
can report them instead of failing on them.
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
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _mixed_types_error(data, exc) from None
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


def _mixed_types_error(frame: Any, exc: Exception) -> InvalidInputError:
    for name in frame.columns:
        if _arrow_column(frame[name]) is None:
            column = MixedColumn(str(name), frame[name])
            if len(column.kinds) > 1:  # one type Arrow cannot hold is no mix: see below
                return InvalidInputError(f"column {name!r}", "mixed types",
                                         "a column must hold one type; found "
                                         + ", ".join(sorted(t.__name__ for t in column.kinds)))
    return InvalidInputError("data", type(frame).__name__, "cannot be converted to Arrow: "
                             + _first_line(exc))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0]


def unreadable(path: str | os.PathLike[str], exc: Exception) -> InvalidInputError:
    """The error for a data file that is there but cannot be parsed."""
    return InvalidInputError("data", os.fspath(path), "cannot be read: " + _first_line(exc))


# -- tolerant reading (validation) ------------------------------------------------------------
class MixedColumn:
    """A pandas object column holding more than one Python type (Arrow cannot store it).

    It travels as text so that the other checks still run; ``types`` holds each value's
    Python type (NaN/None where missing) for the type check's evidence, ``kinds`` the
    distinct ones and ``seen`` how often each appears, in words.

    >>> import pandas as pd
    >>> MixedColumn("id", pd.Series([1, "two", 3, None])).seen
    'int (2), str (1)'
    """

    def __init__(self, name: str, values: Any) -> None:
        self.name = name
        self.types = values.map(type, na_action="ignore")  # C loop over Python objects
        counts = self.types.value_counts()
        self.kinds = tuple(counts.index)
        self.seen = ", ".join(f"{t.__name__} ({n})" for t, n in counts.items())


def read_table(data: Any) -> tuple[pa.Table, dict[str, MixedColumn]]:
    """An Arrow table of ``data``, and the pandas columns that mixed Python types.

    Errors reading a file become :class:`InvalidInputError` naming the file; a pandas column
    mixing types (say ints and strings) becomes a text column reported in the second value.

    >>> import pandas as pd
    >>> table, mixed = read_table(pd.DataFrame({"id": [1, "two"], "x": [0.5, 1.5]}))
    >>> table.schema.types, mixed["id"].seen
    ([DataType(string), DataType(double)], 'int (1), str (1)')
    """
    try:
        return _without_views(to_arrow(data)), {}
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
            InvalidInputError) as exc:
        if isinstance(data, (str, os.PathLike)):
            if isinstance(exc, InvalidInputError):
                raise
            raise unreadable(data, exc) from None
        frame = _as_pandas(data)
        if frame is None:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError("data", type(data).__name__, "cannot be converted to "
                                    "Arrow: " + _first_line(exc)) from None
    return _mixed_table(frame)


def _as_pandas(data: Any) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, dict) or (isinstance(data, list) and data
                                  and all(isinstance(r, dict) for r in data)):
        return pd.DataFrame(data)
    return None


def _arrow_column(series: Any) -> pa.ChunkedArray | None:
    """One pandas column as Arrow, or None where Arrow cannot hold its values as one type."""
    try:
        return pa.Table.from_pandas(series.to_frame(), preserve_index=False).column(0)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _mixed_table(frame: Any) -> tuple[pa.Table, dict[str, MixedColumn]]:
    arrays, names, mixed = [], [], {}
    for name in frame.columns:
        series = frame[name]
        array = _arrow_column(series)
        if array is None:
            mixed[str(name)] = MixedColumn(str(name), series)
            array = pa.array(series.astype(str).where(series.notna(), None), type=pa.string())
        arrays.append(array)
        names.append(str(name))
    return _without_views(pa.table(arrays, names=names)), mixed


def _without_views(table: pa.Table) -> pa.Table:
    # View types (newer Polars) are read like their plain counterparts.
    views = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}
    if not any(f.type in views for f in table.schema):
        return table
    return table.cast(pa.schema([pa.field(f.name, views.get(f.type, f.type))
                                 for f in table.schema]))


# -- types and digests ------------------------------------------------------------------------
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


def column_kind(ltype: str) -> str:
    """How statistics treat a logical type: ``numeric``, ``categorical`` or ``other``.

    >>> column_kind("datetime"), column_kind("boolean"), column_kind("binary")
    ('numeric', 'categorical', 'other')
    """
    if ltype in ("integer", "float", "datetime"):
        return "numeric"
    if ltype in ("string", "category", "boolean"):
        return "categorical"
    return "other"


def column_schema(table: pa.Table) -> list[dict[str, Any]]:
    """Column names, logical and physical types, and nullability (has nulls) of a table.

    >>> column_schema(pa.table({"a": [1, None]}))
    [{'name': 'a', 'type': 'integer', 'arrow_type': 'int64', 'nullable': True}]
    """
    return [{"name": field.name, "type": logical_type(field.type), "arrow_type": str(field.type),
             "nullable": table.column(i).null_count > 0}
            for i, field in enumerate(table.schema)]


def digest_table(table: pa.Table) -> str:
    """SHA-256 of a table's content: column names, types, validity and values.

    Independent of the library that built the table (pandas, Polars, Arrow), of chunking
    and of whatever bytes lie under null slots; hashed column by column, never copied whole.

    >>> import pandas as pd, polars as pl
    >>> data = {"a": [1.5, None], "b": ["x", "y"]}
    >>> digest_table(to_arrow(pd.DataFrame(data))) == digest_table(to_arrow(pl.DataFrame(data)))
    True
    """
    table = _canonical(table)
    hasher = _HashingWriter()
    hasher.write(str(table.schema).encode())
    for name, column in zip(table.column_names, table.columns):
        array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if array.null_count:
            hasher.write(np.packbits(array.is_valid().to_numpy(zero_copy_only=False)).tobytes())
            array = _fill_nulls(array)
        batch = pa.RecordBatch.from_arrays([array], names=[name])
        with pa.PythonFile(hasher, mode="w") as sink, \
                pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
    return hasher.hash.hexdigest()


def _fill_nulls(array: pa.Array) -> pa.Array:
    # Null slots may hold any bytes; give them one fixed value (validity is hashed apart).
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return array.fill_null(pa.scalar(0, kind))
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        return array.fill_null(pa.scalar(b"" if pa.types.is_binary(kind) else "", kind))
    if pa.types.is_boolean(kind):
        return array.fill_null(False)
    return pa.array([None if v is None else v for v in array.to_pylist()], type=kind)


def _canonical(table: pa.Table) -> pa.Table:
    # pandas gives string, Polars large_string, for the same values: digest the values, not
    # the library that held them. Schema metadata (pandas index info) is dropped too.
    wide = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary(),
            pa.string_view(): pa.string()}
    table = table.replace_schema_metadata(None)
    schema = pa.schema([pa.field(f.name, wide.get(f.type, f.type)) for f in table.schema])
    return table if schema.equals(table.schema) else table.cast(schema)


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
