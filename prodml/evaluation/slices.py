"""Slice specs to integer codes: one code per row and family, computed column-wise.

A *family* is a set of disjoint slices defined by one spec; each row gets the code of its
slice, or -1 when it is in none. Specs (TFMA's slicing specs, in Python):

- ``"age_band"``: one slice per value of a column (any column of the data: a model
  feature or a metadata column); missing values form a slice named ``null``;
- ``("age_band", "zipcode")`` (or a list): the cross, one slice per combination present;
- ``("age", [0, 30, 50, 120])``: numeric bins ``[0, 30)``, ``[30, 50)``, ``[50, 120]``, named
  ``0-30``...; values below or above fall into ``<0`` / ``>120`` slices; ``("age", 4)``: quartile
  bins; a bin spec can be part of a cross;
- ``{"seniors": lambda df: df["age"] > 60}``: named predicates; the callable gets a Polars
  DataFrame (a pandas one when it fails on Polars) and returns a boolean mask, Series or
  ``pl.Expr``; a value can also be a ``pl.Expr``, a boolean array or column, or SQL text
  (``"age > 60"``, evaluated by ``pl.sql_expr``); a bare string that is no column is read as
  such an expression, named by its text.

>>> import polars as pl
>>> df = pl.DataFrame({"city": ["b", "a", "b", None], "age": [20, 35, 70, 50]})
>>> [f.names for f in families(df, ["city", ("age", [0, 30, 60]), {"old": "age > 60"}])]
[('city=a', 'city=b', 'city=null'), ('age=0-30', 'age=30-60', 'age=>60'), ('old',)]
>>> families(df, "city")[0].codes.tolist()
[1, 0, 1, 2]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl

from prodml.errors import InvalidInputError

MAX_SLICES = 1000  # per family: more is an identifier, not a slice


@dataclass(frozen=True, eq=False)
class SliceFamily:
    """Disjoint slices from one spec: ``codes[i]`` is row i's slice (-1: none)."""

    feature: str
    values: tuple[str | None, ...]
    codes: np.ndarray
    kind: str  # "column" | "cross" | "bins" | "predicate"

    @property
    def n_groups(self) -> int:
        return len(self.values)

    @property
    def names(self) -> tuple[str, ...]:
        if self.kind == "predicate":
            return (self.feature,)
        if self.kind == "cross":
            parts = self.feature.split(" x ")
            return tuple(" & ".join(f"{p}={v}" for p, v in zip(parts, str(value).split(" & ")))
                         for value in self.values)
        return tuple(f"{self.feature}={v}" for v in self.values)


def _columns_hint(frame: pl.DataFrame) -> str:
    names = frame.columns
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"(has: {shown})"


def _require_column(frame: pl.DataFrame, name: Any, field: str) -> pl.Series:
    if not isinstance(name, str) or name not in frame.columns:
        raise InvalidInputError(field, name, f"no such column in data {_columns_hint(frame)}")
    return frame[name]


def _format(x: float) -> str:
    return f"{x:.6g}"


def column_codes(series: pl.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes in sorted-value order (nulls and NaN last, as ``null``) and the value names."""
    s = series
    if s.dtype in (pl.Categorical,) or isinstance(s.dtype, pl.Enum):
        s = s.cast(pl.String)
    if s.dtype.is_float():
        s = s.fill_nan(None)
    nulls = s.is_null().to_numpy() if s.null_count() else None
    present = s.drop_nulls().unique().sort()
    if s.dtype == pl.String:
        codes = s.cast(pl.Enum(present.to_list())).to_physical().to_numpy()
        codes = np.nan_to_num(codes, nan=-1).astype(np.int64) if nulls is not None \
            else codes.astype(np.int64)
    else:
        physical = s.to_physical() if s.dtype.is_temporal() else s
        if physical.dtype == pl.Boolean:
            physical = physical.cast(pl.Int8)
        keys = (present.to_physical() if present.dtype.is_temporal() else present)
        keys = keys.cast(pl.Int8) if keys.dtype == pl.Boolean else keys
        values = physical.fill_null(keys[0] if len(keys) else 0).to_numpy()
        codes = np.searchsorted(keys.to_numpy(), values).astype(np.int64)
    names = tuple(str(v) for v in present.to_list())
    if nulls is not None:
        codes[nulls] = len(names)
        names = (*names, "null")
    return codes, names


def bin_codes(series: pl.Series, spec: list[float] | int,
              field: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes for numeric bins: edges ``[e0, e1)``..., the last closed; or ``q`` quantile bins."""
    if not series.dtype.is_numeric():
        raise InvalidInputError(field, series.name, f"bins need a numeric column, not "
                                f"{series.dtype}")
    x = series.cast(pl.Float64).fill_nan(None).to_numpy()
    x = np.asarray(x, dtype=np.float64)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec < 1:
            raise InvalidInputError(field, spec, "the number of quantile bins must be >= 1")
        finite = x[np.isfinite(x)]
        edges = (np.unique(np.quantile(finite, np.linspace(0, 1, int(spec) + 1)))
                 if len(finite) else np.array([0.0, 0.0]))
        if len(edges) == 1:
            edges = np.array([edges[0], edges[0]])
    else:
        edges = np.asarray(spec, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0) \
                or not np.all(np.isfinite(edges)):
            raise InvalidInputError(field, list(spec), "bin edges must be at least two "
                                    "finite numbers, strictly increasing")
    inner = np.searchsorted(edges, x, side="right") - 1
    inner = np.where(x == edges[-1], len(edges) - 2, inner)
    n_bins = len(edges) - 1
    # 0: below, 1..n_bins: the bins, n_bins + 1: above, n_bins + 2: missing
    raw = np.where(np.isnan(x), n_bins + 2, np.where(x < edges[0], 0,
                                                     np.where(x > edges[-1], n_bins + 1,
                                                              inner + 1)))
    labels = [f"<{_format(edges[0])}",
              *(f"{_format(a)}-{_format(b)}" for a, b in pairwise(edges)),
              f">{_format(edges[-1])}", "null"]
    present = np.bincount(raw, minlength=n_bins + 3) > 0
    present[1:n_bins + 1] = True  # every declared bin is reported, even when empty
    remap = np.cumsum(present) - 1
    return remap[raw].astype(np.int64), tuple(l for l, p in zip(labels, present) if p)


def _is_bins(spec: Any) -> bool:
    return (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
            and ((isinstance(spec[1], (int, np.integer)) and not isinstance(spec[1], bool))
                 or (isinstance(spec[1], (list, tuple, np.ndarray)) and len(spec[1]) > 0
                     and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                             for v in spec[1]))))


def _part(frame: pl.DataFrame, spec: Any, field: str) -> tuple[str, np.ndarray, tuple[str, ...]]:
    if _is_bins(spec):
        codes, names = bin_codes(_require_column(frame, spec[0], field), spec[1], field)
        return spec[0], codes, names
    series = _require_column(frame, spec, field)
    codes, names = column_codes(series)
    return spec, codes, names


def _check_size(feature: str, names: tuple[str, ...], field: str) -> None:
    if len(names) > MAX_SLICES:
        raise InvalidInputError(field, feature, f"makes {len(names):,} slices; at most "
                                f"{MAX_SLICES} per spec (bin it: ('{feature}', 4))")


def family(frame: pl.DataFrame, spec: Any, field: str = "slices") -> list[SliceFamily]:
    """The families of one spec (a dict of predicates gives one family per name)."""
    if isinstance(spec, dict):
        return [predicate_family(frame, name, value, field) for name, value in spec.items()]
    if isinstance(spec, str) and spec not in frame.columns:
        mask = _expression_mask(frame, spec, field, spec)
        return [SliceFamily(spec, (None,), np.where(mask, 0, -1), "predicate")]
    if isinstance(spec, (tuple, list)) and not _is_bins(spec):
        if not spec:
            raise InvalidInputError(field, spec, "a cross needs at least one column")
        parts = [_part(frame, s, field) for s in spec]
        if len(parts) == 1:
            return [SliceFamily(parts[0][0], parts[0][2], parts[0][1], "column")]
        return [_cross(parts, field)]
    feature, codes, names = _part(frame, spec, field)
    _check_size(feature, names, field)
    return [SliceFamily(feature, names, codes, "bins" if _is_bins(spec) else "column")]


def _cross(parts: list[tuple[str, np.ndarray, tuple[str, ...]]], field: str) -> SliceFamily:
    feature = " x ".join(p[0] for p in parts)
    codes, names = parts[0][1], list(parts[0][2])
    for _, more, more_names in parts[1:]:
        combined = codes * len(more_names) + more
        size = len(names) * len(more_names)
        if size > 50_000_000:
            raise InvalidInputError(field, feature, "the cross has too many combinations")
        present = np.bincount(combined, minlength=size) > 0
        remap = np.cumsum(present) - 1
        codes = remap[combined]
        names = [f"{a} & {b}" for i, a in enumerate(names) for b in more_names]
        names = [n for n, p in zip(names, present) if p]
    _check_size(feature, tuple(names), field)
    return SliceFamily(feature, tuple(names), codes.astype(np.int64), "cross")


def families(frame: pl.DataFrame, slices: Any, field: str = "slices") -> list[SliceFamily]:
    """Every family of ``slices``: a spec, or a list of specs; duplicates are refused."""
    if slices is None:
        return []
    specs = slices if isinstance(slices, list) and not _is_bins(slices) else [slices]
    out: list[SliceFamily] = []
    seen: set[str] = set()
    for spec in specs:
        for fam in family(frame, spec, field):
            if fam.feature in seen:
                raise InvalidInputError(field, fam.feature, "is given twice")
            seen.add(fam.feature)
            out.append(fam)
    return out


def _expression_mask(frame: pl.DataFrame, text: str, field: str, name: str) -> np.ndarray:
    try:
        series = frame.select(pl.sql_expr(text).alias("_mask")).to_series()
    except Exception as exc:  # noqa: BLE001 - Polars raises several kinds here
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError(field, name, f"no such column in data {_columns_hint(frame)}"
                                f", nor a valid expression ({first})") from None
    return _as_mask(series, len(frame), field, name)


def _missing(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _as_mask(result: Any, n: int, field: str, name: str) -> np.ndarray:
    if isinstance(result, pl.Series):
        if result.dtype == pl.Boolean:
            result = result.fill_null(False)
        result = result.to_numpy()
    if type(result).__module__.split(".")[0] == "pandas":
        result = result.to_numpy()
    array = np.asarray(result)
    if array.dtype == object:
        array = np.array([bool(v) if v is not None and not _missing(v) else False for v in array])
    if array.dtype != bool or array.shape != (n,):
        raise InvalidInputError(field, name, f"must give one boolean per row ({n}); got "
                                f"{array.dtype} of shape {array.shape}")
    return array


def mask(frame: pl.DataFrame, value: Any, field: str, name: str) -> np.ndarray:
    """A boolean row mask from a predicate: callable, ``pl.Expr``, SQL text, bool column or
    array."""
    n = len(frame)
    if isinstance(value, pl.Expr):
        return _as_mask(frame.select(value.alias("_mask")).to_series(), n, field, name)
    if isinstance(value, str):
        if value in frame.columns:
            return _as_mask(frame[value], n, field, name)
        return _expression_mask(frame, value, field, name)
    if callable(value):
        return _as_mask(_call(frame, value, field, name), n, field, name)
    return _as_mask(value, n, field, name)


def _call(frame: pl.DataFrame, fn: Callable[[Any], Any], field: str, name: str) -> Any:
    try:
        result = fn(frame)
    except Exception as polars_error:  # noqa: BLE001 - a pandas-style callable, perhaps
        try:
            result = fn(frame.to_pandas())
        except Exception:  # noqa: BLE001
            raise InvalidInputError(field, name, f"the predicate raised "
                                    f"{type(polars_error).__name__}: {polars_error}") from None
    if isinstance(result, pl.Expr):
        result = frame.select(result.alias("_mask")).to_series()
    return result


def predicate_family(frame: pl.DataFrame, name: str, value: Any, field: str) -> SliceFamily:
    if not isinstance(name, str) or not name:
        raise InvalidInputError(field, name, "a predicate needs a non-empty string name")
    m = mask(frame, value, f"{field}[{name!r}]", name)
    return SliceFamily(name, (None,), np.where(m, 0, -1).astype(np.int64), "predicate")


@dataclass(frozen=True, eq=False)
class CriticalSubset:
    """Rows whose errors cost more, with optional per-row costs."""

    name: str
    mask: np.ndarray
    weights: np.ndarray | None


def critical_subsets(frame: pl.DataFrame, critical: Any) -> list[CriticalSubset]:
    """``critical``: a predicate (named ``critical``), or ``{name: predicate}``, or ``{name:
    {"where": predicate, "weights": column or array}}`` (``where`` defaults to weight > 0)."""
    if critical is None:
        return []
    if isinstance(critical, str) and critical in frame.columns:
        critical = {critical: critical}
    elif not isinstance(critical, dict):
        critical = {critical if isinstance(critical, str) else "critical": critical}
    out = []
    for name, spec in critical.items():
        field = f"critical[{name!r}]"
        where, weights = spec, None
        if isinstance(spec, dict):
            unknown = set(spec) - {"where", "weights"}
            if unknown or not spec:
                raise InvalidInputError(field, sorted(unknown) or spec,
                                        "takes 'where' (a predicate) and/or 'weights'")
            where, weights = spec.get("where"), spec.get("weights")
        elif isinstance(spec, tuple) and len(spec) == 2:
            where, weights = spec
        w = _weights(frame, weights, field) if weights is not None else None
        if where is None:
            if w is None:
                raise InvalidInputError(field, spec, "needs 'where' or 'weights'")
            m = w > 0
        else:
            m = mask(frame, where, field, str(name))
        out.append(CriticalSubset(str(name), m, w))
    return out


def _weights(frame: pl.DataFrame, weights: Any, field: str) -> np.ndarray:
    if isinstance(weights, str):
        series = _require_column(frame, weights, f"{field}.weights")
        if not series.dtype.is_numeric():
            raise InvalidInputError(f"{field}.weights", weights, "must be a numeric column")
        w = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
    else:
        w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(frame),):
        raise InvalidInputError(f"{field}.weights", f"shape {w.shape}",
                                f"needs one weight per row ({len(frame)})")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidInputError(f"{field}.weights", "values", "must be finite and >= 0")
    return w
