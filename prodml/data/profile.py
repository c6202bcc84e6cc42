"""Profiles: mergeable per-column summaries of a dataset.

``profile(data)`` reads pandas, Polars, Arrow, a file path or a Dask DataFrame and returns a
:class:`Profile`. ``a.merge(b)`` equals profiling the concatenation: exactly for counts,
moments and the sample's law; within the sketches' documented error for quantiles (KLL),
distinct counts (HyperLogLog) and frequent items. Large files are read in batches, so memory
stays bounded; Dask partitions are profiled where they live and merged on the cluster.

>>> import pandas as pd
>>> p = profile(pd.DataFrame({"age": [20, 30, None, 50], "city": ["a", "b", "a", None]}))
>>> p.rows, p["age"].missing, p["age"].mean, p["city"].top_values(1)
(4, 1, 33.333333333333336, [('a', 2)])
"""

from __future__ import annotations

import base64
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from datasketches import (frequent_items_error_type, frequent_strings_sketch,
                          kll_doubles_sketch)

from prodml.data.frames import column_kind, logical_type, to_arrow
from prodml.data.sketches import BottomKSample, HyperLogLog, Moments, hash_values
from prodml.errors import InvalidInputError

KLL_K = 200  # normalized rank error ~1.3 % (DataSketches' default)
FREQUENT_LG_MAX = 10  # up to 1024 tracked items: exact while a column has fewer distinct values
SAMPLE_SIZE = 4096
FORMAT_VERSION = 1



@dataclass
class ColumnProfile:
    """What one column looked like. Numeric statistics cover finite values only."""

    name: str
    logical_type: str
    count: int = 0  # rows seen
    missing: int = 0  # nulls
    nan: int = 0
    inf: int = 0
    moments: Moments = field(default_factory=Moments)
    lengths: Moments = field(default_factory=Moments)  # string lengths
    kll: Any = None  # datasketches.kll_doubles_sketch (numeric)
    frequent: Any = None  # datasketches.frequent_strings_sketch (categorical)
    hll: HyperLogLog = field(default_factory=HyperLogLog)
    sample: BottomKSample = field(default_factory=BottomKSample)

    @property
    def kind(self) -> str:
        """``numeric``, ``categorical`` or ``other``."""
        return column_kind(self.logical_type)

    @property
    def present(self) -> int:
        return self.count - self.missing

    @property
    def mean(self) -> float:
        return self.moments.mean if self.moments.n else math.nan

    @property
    def std(self) -> float:
        return self.moments.std

    @property
    def min(self) -> float:
        return self.moments.min if self.moments.n else math.nan

    @property
    def max(self) -> float:
        return self.moments.max if self.moments.n else math.nan

    @property
    def distinct(self) -> float:
        """Estimated number of distinct non-null values (HyperLogLog)."""
        return self.hll.estimate()

    @property
    def sample_values(self) -> np.ndarray:
        """A uniform sample (without replacement) of the non-null values."""
        return self.sample.values

    def quantiles(self, qs: list[float] | np.ndarray) -> np.ndarray:
        """Estimated quantiles of the finite values (KLL sketch)."""
        if self.kll is None or self.kll.is_empty():
            return np.full(len(qs), np.nan)
        return np.asarray(self.kll.get_quantiles(list(map(float, qs))))

    def histogram(self, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Estimated counts of finite values in ``bins`` equal-width bins from min to max."""
        if self.kll is None or self.kll.is_empty():
            return np.array([]), np.array([])
        edges = np.linspace(self.min, self.max, bins + 1)
        if edges[0] == edges[-1]:
            return np.array([edges[0], edges[0]]), np.array([float(self.moments.n)])
        masses = np.asarray(self.kll.get_pmf(list(edges[1:-1])))
        return edges, masses * self.moments.n

    def frequencies(self) -> dict[str, int]:
        """Estimated count per value (exact while the column has at most 1024 values)."""
        if self.frequent is None or self.frequent.is_empty():
            return {}
        items = self.frequent.get_frequent_items(frequent_items_error_type.NO_FALSE_POSITIVES)
        return {item: int(estimate) for item, estimate, _lower, _upper in items}

    def top_values(self, k: int = 10) -> list[tuple[str, int]]:
        ranked = sorted(self.frequencies().items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:k]

    # -- updating and merging -----------------------------------------------------------------
    def update(self, column: pa.ChunkedArray | pa.Array) -> None:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        self.count += len(array)
        self.missing += array.null_count
        present = pc.drop_null(array)
        kind = self.kind
        if pa.types.is_dictionary(present.type):
            present = present.dictionary_decode()
        if kind == "numeric":
            values = present.to_numpy(zero_copy_only=False)
            if values.dtype.kind == "M":
                values = values.astype("datetime64[ns]").view(np.int64).astype(np.float64)
            values = values.astype(np.float64, copy=False)
            finite_mask = np.isfinite(values)
            if not finite_mask.all():
                self.nan += int(np.isnan(values).sum())
                self.inf += int(np.isinf(values).sum())
                finite = values[finite_mask]
            else:
                finite = values
            self.moments.update(finite)
            if self.kll is None:
                self.kll = kll_doubles_sketch(KLL_K)
            if finite.size:
                # DataSketches takes only writable arrays; Arrow's zero-copy views are not.
                self.kll.update(finite if finite.flags.writeable else finite.copy())
            self.hll.update_hashes(hash_values(finite))
            self.sample.update(finite)
        elif kind == "categorical":
            if pa.types.is_boolean(present.type):
                present = present.cast(pa.string())
            counts = pc.value_counts(present)
            values = counts.field("values").to_pylist()
            tallies = counts.field("counts").to_numpy()
            if self.frequent is None:
                self.frequent = frequent_strings_sketch(FREQUENT_LG_MAX)
            for value, tally in zip(values, tallies):
                self.frequent.update(str(value), int(tally))
            self.hll.update_hashes(hash_values(np.asarray(values, dtype=object)))
            if pa.types.is_string(present.type) or pa.types.is_large_string(present.type):
                self.lengths.update(pc.utf8_length(present).to_numpy(zero_copy_only=False)
                                    .astype(np.float64))
            self.sample.update(present.to_numpy(zero_copy_only=False))
        else:
            self.sample.update(np.asarray(present.to_pylist(), dtype=object))

    def merge(self, other: "ColumnProfile") -> "ColumnProfile":
        if other.name != self.name or column_kind(other.logical_type) != self.kind:
            raise InvalidInputError(f"column {self.name!r}", other.logical_type,
                                    f"cannot merge a {other.logical_type} column into a "
                                    f"{self.logical_type} one")
        out = ColumnProfile(self.name, _wider(self.logical_type, other.logical_type),
                            self.count + other.count, self.missing + other.missing,
                            self.nan + other.nan, self.inf + other.inf,
                            self.moments.merge(other.moments), self.lengths.merge(other.lengths),
                            hll=self.hll.merge(other.hll), sample=self.sample.merge(other.sample))
        if self.kll is not None or other.kll is not None:
            out.kll = kll_doubles_sketch(KLL_K)
            for part in (self.kll, other.kll):
                if part is not None:
                    out.kll.merge(part)
        if self.frequent is not None or other.frequent is not None:
            out.frequent = frequent_strings_sketch(FREQUENT_LG_MAX)
            for part in (self.frequent, other.frequent):
                if part is not None:
                    out.frequent.merge(part)
        return out

    # -- serialisation ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The readable statistics (what ``Profile.to_dict`` shows per column)."""
        out: dict[str, Any] = {"name": self.name, "type": self.logical_type, "kind": self.kind,
                               "count": self.count, "missing": self.missing,
                               "distinct": round(self.distinct)}
        if self.kind == "numeric":
            q = self.quantiles([0.01, 0.25, 0.5, 0.75, 0.99])
            out.update(nan=self.nan, inf=self.inf, mean=_num(self.mean), std=_num(self.std),
                       min=_num(self.min), max=_num(self.max),
                       quantiles={k: _num(v) for k, v in zip(("p01", "p25", "p50", "p75",
                                                               "p99"), q)})
        elif self.kind == "categorical":
            out["top_values"] = self.top_values(10)
            if self.lengths.n:
                out["length"] = {"mean": self.lengths.mean, "min": self.lengths.min,
                                 "max": self.lengths.max}
        return out

    def state(self) -> dict[str, Any]:
        values = self.sample.values
        sample: dict[str, Any]
        if values.dtype.kind == "f":
            sample = {"f8": _b64(values.astype("<f8").tobytes())}
        else:
            sample = {"list": [str(v) for v in values.tolist()]}
        return {"name": self.name, "type": self.logical_type, "count": self.count,
                "missing": self.missing, "nan": self.nan, "inf": self.inf,
                "moments": self.moments.to_dict(), "lengths": self.lengths.to_dict(),
                "kll": _b64(self.kll.serialize()) if self.kll is not None else None,
                "frequent": (_b64(self.frequent.serialize()) if self.frequent is not None
                             else None),
                "hll": {"p": self.hll.p, "registers": _b64(self.hll.registers.tobytes())},
                "sample": {**sample, "k": self.sample.k,
                           "priorities": _b64(self.sample.priorities.astype("<f8").tobytes())}}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "ColumnProfile":
        smp = s["sample"]
        values = (np.frombuffer(_unb64(smp["f8"]), dtype="<f8").copy() if "f8" in smp
                  else np.asarray(smp["list"], dtype=object))
        return cls(s["name"], s["type"], s["count"], s["missing"], s["nan"], s["inf"],
                   Moments.from_dict(s["moments"]), Moments.from_dict(s["lengths"]),
                   kll_doubles_sketch.deserialize(_unb64(s["kll"])) if s["kll"] else None,
                   frequent_strings_sketch.deserialize(_unb64(s["frequent"]))
                   if s["frequent"] else None,
                   HyperLogLog(s["hll"]["p"], np.frombuffer(_unb64(s["hll"]["registers"]),
                                                            dtype=np.uint8).copy()),
                   BottomKSample(smp["k"], None, values,
                                 np.frombuffer(_unb64(smp["priorities"]), dtype="<f8").copy()))


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


_ORDER = ["boolean", "integer", "float"]


def _wider(a: str, b: str) -> str:
    if a == b:
        return a
    if a in _ORDER and b in _ORDER:
        return _ORDER[max(_ORDER.index(a), _ORDER.index(b))]
    return "string" if {a, b} <= {"string", "category"} else a


@dataclass
class Profile:
    """Column profiles of a dataset, mergeable and serialisable."""

    rows: int
    columns: dict[str, ColumnProfile]

    def __getitem__(self, name: str) -> ColumnProfile:
        try:
            return self.columns[name]
        except KeyError:
            raise InvalidInputError("column", name, "is not in the profile; columns: "
                                    + ", ".join(self.columns)) from None

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as its own safe format (Dask, processes)
        return (Profile.from_bytes, (self.to_bytes(),))

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def merge(self, other: "Profile") -> "Profile":
        """The profile of both datasets together; columns missing on one side count as null."""
        names = list(self.columns) + [c for c in other.columns if c not in self.columns]
        merged = {}
        for name in names:
            mine, theirs = self.columns.get(name), other.columns.get(name)
            if mine is None:
                mine = _all_missing(theirs, self.rows)  # type: ignore[arg-type]
            if theirs is None:
                theirs = _all_missing(mine, other.rows)
            merged[name] = mine.merge(theirs)
        return Profile(self.rows + other.rows, merged)

    def to_dict(self) -> dict[str, Any]:
        """Readable statistics per column (the sketches stay in :meth:`to_bytes`)."""
        return {"rows": self.rows, "columns": [c.summary() for c in self.columns.values()]}

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    def to_bytes(self) -> bytes:
        """Compact, complete and safe to load (JSON + sketches, zlib-compressed; no pickle)."""
        state = {"format": FORMAT_VERSION, "rows": self.rows,
                 "columns": [c.state() for c in self.columns.values()]}
        return zlib.compress(orjson.dumps(state), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Profile":
        try:
            state = orjson.loads(zlib.decompress(data))
        except (zlib.error, orjson.JSONDecodeError):
            raise InvalidInputError("profile", f"{len(data)} bytes", "is not a prodml profile")
        if state.get("format") != FORMAT_VERSION:
            raise InvalidInputError("profile format", state.get("format"),
                                    f"this prodml reads format {FORMAT_VERSION}")
        columns = [ColumnProfile.from_state(c) for c in state["columns"]]
        return cls(state["rows"], {c.name: c for c in columns})


def _all_missing(template: ColumnProfile, rows: int) -> ColumnProfile:
    return ColumnProfile(template.name, template.logical_type, count=rows, missing=rows,
                         sample=BottomKSample(template.sample.k))


def profile_table(table: pa.Table, sample_size: int = SAMPLE_SIZE,
                  seed: int | None = None, threads: int | None = None) -> Profile:
    """Profile one Arrow table in memory, columns in parallel threads.

    NumPy, Arrow and DataSketches release the GIL in their kernels, so columns profile
    concurrently on several cores (``threads`` defaults to the CPU count).
    """
    rng = np.random.default_rng(seed)
    columns = {name: ColumnProfile(name, logical_type(column.type),
                                   sample=BottomKSample(sample_size, int(rng.integers(2**63))))
               for name, column in zip(table.column_names, table.columns)}
    workers = min(threads or os.cpu_count() or 1, table.num_columns)
    if workers <= 1 or table.num_rows < 50_000:
        for name, column in zip(table.column_names, table.columns):
            columns[name].update(column)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="prodml-profile") as pool:
            list(pool.map(lambda item: columns[item[0]].update(item[1]),
                          zip(table.column_names, table.columns)))
    return Profile(table.num_rows, columns)


def _batches(path: str | os.PathLike[str], batch_rows: int) -> Any:
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1]
    try:
        if suffix in ("parquet", "pq"):
            import pyarrow.parquet as pq
            yield from (pa.Table.from_batches([b])
                        for b in pq.ParquetFile(path).iter_batches(batch_size=batch_rows))
            return
        if suffix == "csv":
            import pyarrow.csv as pacsv
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(
                block_size=max(1 << 20, batch_rows * 64)))
            yield from (pa.Table.from_batches([b]) for b in reader)
            return
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError("path", os.fspath(path), f"cannot be read as {suffix}: "
                                + str(exc).splitlines()[0]) from None
    yield to_arrow(path)


def profile(data: Any, *, sample_size: int = SAMPLE_SIZE, batch_rows: int = 1_000_000,
            seed: int | None = None) -> Profile:
    """Profile ``data``: a DataFrame (pandas, Polars, Dask), an Arrow table or a file path.

    Files are read in batches of ``batch_rows`` and Dask DataFrames per partition, each
    profiled and merged, so the whole dataset is never in memory at once.
    """
    if type(data).__module__.startswith("dask"):
        return _profile_dask(data, sample_size=sample_size, seed=seed)
    if isinstance(data, (str, os.PathLike)):
        if not os.path.exists(data):
            raise InvalidInputError("path", os.fspath(data), "file does not exist")
        parts = [profile_table(batch, sample_size, seed) for batch in _batches(data, batch_rows)]
        if not parts:
            raise InvalidInputError("data", os.fspath(data), "has no rows or columns")
        result = parts[0]
        for part in parts[1:]:
            result = result.merge(part)
        return result
    table = to_arrow(data)
    if table.num_columns == 0:
        raise InvalidInputError("data", "0 columns", "a profile needs at least one column")
    return profile_table(table, sample_size, seed)


def _profile_dask(frame: Any, *, sample_size: int, seed: int | None) -> Profile:
    """Profile each partition where it lives, then merge pairwise on the cluster."""
    import dask

    rng = np.random.default_rng(seed)
    parts = [dask.delayed(_profile_partition)(part, sample_size, int(rng.integers(2**63)))
             for part in frame.to_delayed()]
    while len(parts) > 1:  # a tree of merges: log2(partitions) rounds
        parts = [dask.delayed(Profile.merge)(parts[i], parts[i + 1]) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    return parts[0].compute()


def _profile_partition(frame: Any, sample_size: int, seed: int) -> Profile:
    return profile_table(to_arrow(frame), sample_size, seed)
