"""Splits: train/validation/test parts that keep every class's share, and keep groups whole.

``split(data, label="y")`` deals the rows of each class to the parts so that every part gets
its exact share of every class, up to the one row that whole numbers force: each class count
is the floor or the ceiling of ``class size × ratio``, and so is each part's size. Which one is
the largest remainder's choice per class, changed only where it would put a part's size a
row or more off (see :func:`prodml.data.allocation.round_matrix`).

With ``groups="user_id"`` every group lands in one part, so no group leaks across parts, and
the parts' sizes and class mixes are balanced as well as whole groups allow. With a list of
label columns (multi-label), rows are dealt by iterative stratification.

Counts are decided per class, then rows are dealt within each class in a random order drawn
from ``seed``: the same data and seed give the same parts, whatever library held the data.
Each part keeps the input's row order.

>>> import pandas as pd
>>> df = pd.DataFrame({"x": range(100), "y": [1] * 30 + [0] * 70})
>>> result = split(df, label="y", seed=0)
>>> result.rows
{'train': 60, 'validation': 20, 'test': 20}
>>> {name: int(part["y"].sum()) for name, part in result.parts.items()}
{'train': 18, 'validation': 6, 'test': 6}
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from prodml.data.allocation import deal, iterative_stratification, place_groups, round_matrix
from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

DEFAULT_NAMES = ("train", "validation", "test")
RATIO_TOLERANCE = 1e-6


class SplitWarning(UserWarning):
    """A split was made, but some of it cannot be as asked (a rare class, an empty part)."""


@dataclass(frozen=True, eq=False)
class SplitResult:
    """The parts of a split: row indices per part, the parts themselves, and their balance.

    ``counts[k, c]`` is the number of rows of class ``classes[c]`` in part ``names[k]`` (for a
    multi-label split, the rows where label column ``classes[c]`` is set).
    """

    names: tuple[str, ...]
    target_ratios: tuple[float, ...]
    indices: dict[str, np.ndarray]
    classes: tuple[str, ...]
    counts: np.ndarray
    label: str | tuple[str, ...] | None
    groups: str | None
    seed: int
    method: str  # random, stratified, grouped or iterative (multi-label)
    group_counts: dict[str, int] | None = None
    warnings: tuple[str, ...] = ()
    table: pa.Table | None = field(default=None, repr=False)
    source: Any = field(default=None, repr=False)

    @property
    def num_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows(self) -> dict[str, int]:
        """Rows in each part."""
        return {name: int(self.indices[name].size) for name in self.names}

    @property
    def ratios(self) -> dict[str, float]:
        """The achieved share of rows in each part (compare with ``target_ratios``)."""
        total = self.num_rows
        return {name: rows / total for name, rows in self.rows.items()}

    @cached_property
    def parts(self) -> dict[str, Any]:
        """Each part as a frame of the input's library (pandas for files, arrays and dicts)."""
        return {name: self._take(self.indices[name]) for name in self.names}

    def __getitem__(self, name: str) -> Any:
        if name not in self.names:
            raise InvalidInputError("part", name, f"must be one of {', '.join(self.names)}")
        return self.parts[name]

    def _take(self, rows: np.ndarray) -> Any:
        module = type(self.source).__module__.split(".")[0]
        if module == "pandas":
            return self.source.iloc[rows]  # keeps the index and pandas dtypes
        if module == "polars":
            return self.source[rows]
        taken = self.table.take(pa.array(rows, pa.int64()))
        if isinstance(self.source, (pa.Table, pa.RecordBatch)):
            return taken
        return taken.to_pandas()

    def balance(self) -> pl.DataFrame:
        """Per part: rows, share of all rows, target share, and per class its count and its
        share of the part's rows; the last row, ``all``, is the whole data to compare with."""
        rows = np.array([*self.rows.values(), self.num_rows], dtype=np.int64)
        columns: dict[str, Any] = {"split": [*self.names, "all"], "rows": rows,
                                   "share": rows / self.num_rows,
                                   "target": [*self.target_ratios, 1.0]}
        for c, name in enumerate(self.classes):
            counts = np.append(self.counts[:, c], self.counts[:, c].sum())
            columns[f"count_{name}"] = counts
            columns[f"share_{name}"] = [count / n if n else None for count, n in zip(counts, rows)]
        return pl.DataFrame(columns)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "method": self.method, "label": _plain(self.label),
                "groups": self.groups, "seed": self.seed, "rows": self.rows,
                "target_ratios": dict(zip(self.names, self.target_ratios)),
                "ratios": self.ratios, "classes": list(self.classes),
                "counts": {name: dict(zip(self.classes, map(int, self.counts[k])))
                           for k, name in enumerate(self.names)},
                "group_counts": self.group_counts, "warnings": list(self.warnings)}

    def save(self, outdir: str | os.PathLike[str], format: str = "parquet") -> dict[str, Path]:
        """Write each part as ``OUTDIR/<name>.<format>`` and the balance as ``split.json``.

        Each file is written beside its final name and then renamed, so a file that is there
        is whole. Returns the paths by part name.
        """
        if format not in ("parquet", "csv"):
            raise InvalidInputError("format", format, "must be 'parquet' or 'csv'")
        out = Path(outdir)
        if out.exists() and not out.is_dir():
            raise InvalidInputError("outdir", str(out), "must be a folder (a file is there)")
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in self.names:
            part = self.table.take(pa.array(self.indices[name], pa.int64()))
            paths[name] = out / f"{name}.{format}"
            _write_whole(paths[name], lambda tmp, part=part: _write_table(part, tmp, format))
        _write_whole(out / "split.json", lambda tmp: tmp.write_bytes(
            orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)))
        return paths

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={rows}" for name, rows in self.rows.items())
        return (f"SplitResult({parts}; method={self.method!r}, label={_plain(self.label)!r}, "
                f"groups={self.groups!r}, seed={self.seed})")


def split(data: Any, *, label: str | Sequence[str] | None = None,
          ratios: Sequence[float] | Mapping[str, float] = (0.6, 0.2, 0.2),
          names: Sequence[str] = DEFAULT_NAMES, groups: str | None = None,
          seed: int = 0) -> SplitResult:
    """Split rows into parts (train/validation/test by default), stratified by ``label``.

    ``data`` is a pandas, Polars or Arrow frame or a file path; ``ratios`` are the parts'
    shares (summing to 1), or a mapping of name to share; with two ratios the default names
    are ``train`` and ``test``. ``label`` is a column to stratify by (nulls are one class), or
    a list of 0/1 or boolean columns for a multi-label split. ``groups`` names a column whose
    groups must each stay in one part. Rare classes and empty parts are reported in
    ``result.warnings`` (and as a :class:`SplitWarning`), never silently.

    >>> import polars as pl
    >>> df = pl.DataFrame({"user": [1, 1, 2, 2, 3, 4, 5, 5], "y": [0, 1, 0, 0, 1, 0, 1, 1]})
    >>> result = split(df, label="y", groups="user", ratios=(0.75, 0.25))
    >>> result.rows, result.group_counts
    ({'train': 6, 'test': 2}, {'train': 3, 'test': 2})
    >>> sorted(result["test"]["user"])  # every user's rows are in one part
    [3, 4]
    """
    names, ratio = _check_parts(ratios, names)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError("seed", seed, "must be a whole number >= 0")
    if type(data).__name__ == "LazyFrame":
        data = data.collect()
    table = to_arrow(data)
    if table.num_rows == 0:
        raise InvalidInputError("data", "0 rows", "must have at least one row to split")
    columns = _check_label(label, table)
    group_of = None if groups is None else _encode(table, groups, "groups")[0]
    rng = np.random.default_rng(int(seed))
    if columns is not None and len(columns) > 1:
        method, part, classes, counts, sizes = _split_multi_label(table, columns, group_of,
                                                                  ratio, rng)
    else:
        method, part, classes, counts, sizes = _split_single_label(
            table, None if columns is None else columns[0], group_of, ratio, rng)
    indices = {name: np.flatnonzero(part == k) for k, name in enumerate(names)}
    group_counts = None if group_of is None else {
        name: int(np.unique(group_of[indices[name]]).size) for name in names}
    notes = _notes(columns, classes, sizes, ratio, names, indices, groups, group_of)
    for note in notes:
        warnings.warn(note, SplitWarning, stacklevel=2)
    return SplitResult(names=names, target_ratios=tuple(float(r) for r in ratio),
                       indices=indices, classes=classes, counts=counts,
                       label=None if columns is None else columns[0] if len(columns) == 1
                       else tuple(columns), groups=groups, seed=int(seed), method=method,
                       group_counts=group_counts, warnings=tuple(notes), table=table,
                       source=data)


def _split_single_label(table: pa.Table, column: str | None, group_of: np.ndarray | None,
                        ratio: np.ndarray, rng: np.random.Generator) -> tuple[Any, ...]:
    n = table.num_rows
    if column is None:
        codes, values = np.zeros(n, dtype=np.int64), ["all"]  # one class: sizes only
    else:
        codes, values = _encode(table, column, "label")
    if group_of is None:
        method = "random" if column is None else "stratified"
        part = deal(codes, round_matrix(np.bincount(codes)[:, None] * ratio[None, :]), rng)
    else:
        method = "grouped"
        part = place_groups(group_of, np.arange(n), codes, len(values), ratio, rng,
                            single_label=True)
    counts = np.bincount(part * len(values) + codes, minlength=ratio.size * len(values)
                         ).reshape(ratio.size, len(values))
    if column is None:
        return method, part, (), counts[:, :0], np.zeros(0, dtype=np.int64)
    return method, part, tuple(values), counts, np.bincount(codes)


def _split_multi_label(table: pa.Table, columns: list[str], group_of: np.ndarray | None,
                       ratio: np.ndarray, rng: np.random.Generator) -> tuple[Any, ...]:
    flags = _indicators(table, columns)
    if group_of is None:
        method, part = "iterative", iterative_stratification(flags, ratio, rng)
    else:
        rows, labels = np.nonzero(flags)
        method = "grouped"
        part = place_groups(group_of, rows, labels, len(columns), ratio, rng, single_label=False)
    counts = np.stack([flags[part == k].sum(0) for k in range(ratio.size)])
    return method, part, tuple(columns), counts, flags.sum(0)


def _notes(columns: list[str] | None, classes: tuple[str, ...], sizes: np.ndarray,
           ratio: np.ndarray, names: tuple[str, ...], indices: dict[str, np.ndarray],
           groups: str | None, group_of: np.ndarray | None) -> list[str]:
    """What could not be split as asked, in words."""
    notes = []
    live = int((ratio > 0).sum())
    rare = [(name, int(size)) for name, size in zip(classes, sizes) if size < live]
    if rare:
        listed = ", ".join(f"{name!r} ({size})" for name, size in rare[:5]) + (
            " ..." if len(rare) > 5 else "")
        if columns is not None and len(columns) > 1:
            notes.append(f"{len(rare)} label column(s) are set in fewer rows than the {live} "
                         f"parts, so some parts have none of them: {listed}")
        else:
            notes.append(f"{len(rare)} class(es) of {columns[0]!r} have fewer rows than the "
                         f"{live} parts, so some parts have none of them: {listed}")
    if group_of is not None:
        n = group_of.size
        empty = [name for k, name in enumerate(names) if ratio[k] > 0 and not indices[name].size]
        if empty:
            notes.append(f"part(s) {', '.join(empty)} got no rows: {int(group_of.max()) + 1} "
                         f"group(s) of {groups!r} cannot fill {live} parts")
        worst = max(abs(indices[name].size / n - ratio[k]) for k, name in enumerate(names))
        if worst > 0.05:
            notes.append(f"achieved ratios differ from the targets by up to {worst:.3f}: "
                         f"groups of {groups!r} are too large to divide finer")
    return notes


# -- checks -----------------------------------------------------------------------------------

def _check_parts(ratios: Any, names: Any) -> tuple[tuple[str, ...], np.ndarray]:
    if isinstance(ratios, Mapping):
        names, ratios = tuple(ratios), tuple(ratios.values())
    try:
        ratio = np.asarray(ratios, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError("ratios", ratios, "must be numbers, e.g. (0.6, 0.2, 0.2)") from None
    shown = tuple(ratio.tolist()) if ratio.ndim == 1 else ratios
    if ratio.ndim != 1 or ratio.size < 2:
        raise InvalidInputError("ratios", shown, "must list at least two shares")
    if not np.isfinite(ratio).all() or (ratio < 0).any():
        raise InvalidInputError("ratios", shown, "must be finite and >= 0")
    if abs(ratio.sum() - 1) > RATIO_TOLERANCE:
        raise InvalidInputError("ratios", shown,
                                f"must sum to 1 (they sum to {ratio.sum():.6g})")
    if tuple(names) == DEFAULT_NAMES and ratio.size == 2:
        names = ("train", "test")
    if isinstance(names, str) or len(names) != ratio.size:
        raise InvalidInputError("names", names, f"must give one name per ratio ({ratio.size})")
    for name in names:
        if not isinstance(name, str) or not name or name == "all" or any(
                ch in name for ch in "/\\\0") or name.startswith("."):
            raise InvalidInputError("names", name, "each must be a plain file name (not 'all', "
                                    "no path separators, not starting with '.')")
    if len(set(names)) != len(names):
        raise InvalidInputError("names", tuple(names), "must be distinct")
    return tuple(names), ratio / ratio.sum()


def _check_label(label: Any, table: pa.Table) -> list[str] | None:
    if label is None:
        return None
    columns = [label] if isinstance(label, str) else label
    if not isinstance(columns, (list, tuple)) or not columns or not all(
            isinstance(c, str) for c in columns):
        raise InvalidInputError("label", label, "must be a column name, a list of column "
                                "names (multi-label) or None")
    for column in columns:
        _must_exist(table, column, "label")
    return list(columns)


def _must_exist(table: pa.Table, column: str, field_name: str) -> None:
    if column not in table.column_names:
        shown = ", ".join(table.column_names[:20]) + (" ..." if table.num_columns > 20 else "")
        raise InvalidInputError(field_name, column, f"must be a column of the data ({shown})")


def _encode(table: pa.Table, column: str, field_name: str) -> tuple[np.ndarray, list[str]]:
    """Whole-number codes for a column's values (in sorted order, null last) and their names."""
    _must_exist(table, column, field_name)
    values = table.column(column)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    try:
        distinct = pc.unique(values)
        distinct = distinct.take(pc.array_sort_indices(distinct, null_placement="at_end"))
        codes = pc.index_in(values, value_set=distinct, skip_nulls=False)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        raise InvalidInputError(field_name, column, f"must hold plain values to compare (it "
                                f"holds {values.type})") from None
    names = ["null" if v is None else str(v) for v in distinct.to_pylist()]
    return codes.to_numpy().astype(np.int64), names


def _indicators(table: pa.Table, columns: list[str]) -> np.ndarray:
    """The multi-label columns as an (n × labels) boolean matrix; nulls count as unset."""
    flags = np.zeros((table.num_rows, len(columns)), dtype=bool, order="F")
    for j, column in enumerate(columns):
        values = table.column(column)
        kind = values.type
        if not (pa.types.is_boolean(kind) or pa.types.is_integer(kind)
                or pa.types.is_floating(kind)):
            raise InvalidInputError(f"label[{column}]", str(kind), "multi-label columns must "
                                    "be boolean or 0/1 numbers")
        array = values.fill_null(pa.scalar(False if pa.types.is_boolean(kind) else 0, kind)
                                 ).to_numpy(zero_copy_only=False)
        if not pa.types.is_boolean(kind):
            bad = (array != 0) & (array != 1)
            if bad.any():
                raise InvalidInputError(f"label[{column}]", array[bad][0].item(),
                                        "multi-label columns must be boolean or 0/1 numbers")
        flags[:, j] = array.astype(bool)
    return flags


def _plain(label: Any) -> Any:
    return list(label) if isinstance(label, tuple) else label


# -- files ------------------------------------------------------------------------------------

def _write_table(table: pa.Table, path: Path, format: str) -> None:
    if format == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(table, path)
    else:
        import pyarrow.csv as pacsv
        pacsv.write_csv(table, path)


def _write_whole(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
