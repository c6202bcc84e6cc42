"""Where a batch job's rows come from: files read a chunk at a time, or a frame in memory.

Files go through ``pyarrow.dataset``: a file larger than memory is never loaded whole, a
folder or a glob of files reads as one dataset in name order, and Parquet gives its row
count from the footers (CSV and JSON lines only at the end). Batches of whatever size the
format yields (row groups, CSV blocks) are regrouped into chunks of exactly ``chunk_rows``,
so the answers do not depend on how the file was written.

>>> import pyarrow as pa
>>> source = open_source(pa.table({"x": list(range(10))}))
>>> [chunk.num_rows for chunk in source.batches(["x"], 4)], source.total_rows
([4, 4, 2], 10)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from prodml.data.frames import READERS, digest_file, digest_table, to_arrow
from prodml.data.schema import Schema
from prodml.errors import InvalidInputError

_FORMATS = {"parquet": "parquet", "csv": "csv", "json": "json", "ipc": "ipc"}


@dataclass
class Source:
    """Where the rows come from: files (one format) or a table already in memory."""

    kind: str  # parquet, csv, json, ipc or table
    paths: list[Path]
    table: pa.Table | None
    label: str  # what the records call it: a path, or "pandas.DataFrame in memory"
    name: str
    source_type: str
    arrow_schema: pa.Schema = field(default=None)  # type: ignore[assignment]
    total_rows: int | None = None
    _dataset: Any = None

    def digest(self) -> str:
        """SHA-256 of a file's bytes (as a run's ``log_dataset`` of a path), of each file's
        name and digest for several, or of a frame's content."""
        if self.table is not None:
            return digest_table(self.table)
        if len(self.paths) == 1:
            return digest_file(self.paths[0])
        root = _common_root(self.paths)
        h = hashlib.sha256()
        for path in self.paths:
            h.update(f"{path.relative_to(root).as_posix()}\0{digest_file(path)}\n".encode())
        return h.hexdigest()

    def batches(self, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
        """The data as tables of ``chunk_rows`` rows (the last may be shorter), in order."""
        if self.table is not None:
            yield from _rechunk(self.table.select(columns).to_batches(chunk_rows), chunk_rows)
            return
        scanner = self._dataset.scanner(columns=columns, batch_size=chunk_rows,
                                        batch_readahead=4, fragment_readahead=2)
        batches = scanner.to_batches()
        try:
            yield from _rechunk(batches, chunk_rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise self.read_error(exc) from None

    def read_error(self, exc: Exception) -> InvalidInputError:
        """A parse error as a one-line error naming the file and, for CSV, the column."""
        text = " ".join(str(exc).split())
        column = re.search(r"In CSV column #(\d+): (.*)", text)
        if column and self.arrow_schema is not None:
            names = self.arrow_schema.names
        elif column:  # the error came while the dataset was opened: read the header alone
            named = [p for p in self.paths if f"'{p}'" in text] or self.paths
            names = _csv_header(named[0])
        if column and int(column[1]) < len(names):
            return InvalidInputError(f"data.{names[int(column[1])]}", self.label,
                                     f"cannot be read: {column[2]}")
        return InvalidInputError("data", self.label, f"cannot be read: {text}")


def open_source(data: Any, schema: Schema | None = None) -> Source:
    """A :class:`Source` for a path (file, folder, glob) or a frame (pandas, Polars, Arrow).

    ``schema`` types the columns of text formats (CSV): a float column is read as float even
    when its first values look like integers, a category as text even when it looks numeric.
    """
    if not isinstance(data, (str, os.PathLike)):
        table = to_arrow(data)
        module = type(data).__module__.split(".")[0]
        return Source("table", [], table, f"{module}.{type(data).__name__} in memory",
                      "batch-input", module, table.schema, table.num_rows)
    paths, label, name = _files(Path(data))
    kinds = {READERS.get(p.suffix.lower()) for p in paths}
    if len(kinds) != 1 or None in kinds:
        raise InvalidInputError("data", label, "must be CSV, Parquet, JSON-lines or Arrow files "
                                "of one format (.csv, .parquet, .jsonl, .arrow)")
    kind = kinds.pop()
    source = Source(kind, paths, None, label, name, "file" if len(paths) == 1 else "files")
    import pyarrow.dataset as ds

    try:
        source._dataset = ds.dataset([str(p) for p in paths], format=_format(kind, schema))
        source.arrow_schema = source._dataset.schema
        if kind in ("parquet", "ipc"):
            source.total_rows = source._dataset.count_rows()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise source.read_error(exc) from None
    return source


def _files(path: Path) -> tuple[list[Path], str, str]:
    text = str(path)
    if any(ch in text for ch in "*?["):
        root = Path(text[:min(text.index(ch) for ch in "*?[" if ch in text)]).parent
        paths = sorted(p for p in root.glob(str(path.relative_to(root))) if p.is_file())
        if not paths:
            raise InvalidInputError("data", text, "no file matches this pattern")
        return paths, text, root.name or "batch-input"
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix.lower() in READERS and not p.name.startswith((".", "_")))
        if not paths:
            raise InvalidInputError("data", text, "folder holds no data files")
        return paths, str(path.absolute()), path.name
    if not path.exists():
        raise InvalidInputError("data", text, "file does not exist")
    return [path], str(path.absolute()), path.stem


def _csv_header(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle), [])


def _common_root(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.absolute().parent) for p in paths]))


def _format(kind: str, schema: Schema | None) -> Any:
    if kind != "csv":
        return _FORMATS[kind]
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    types = {}
    for name, rules in (schema.columns.items() if schema is not None else ()):
        if rules.type == "float":
            types[name] = pa.float64()
        elif rules.type in ("string", "category"):
            types[name] = pa.string()
    return ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=types))


def _rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup batches of any size (row groups, CSV blocks) into tables of ``rows`` rows."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)
