"""Annotations: who gave which label to which item, when, under which instruction.

Every labels function takes annotations in *long* form, one row per label given:

========== =====================================================================
item       what was labelled (a dataset row id, a file name...)
labeler    who labelled it (a person, a vendor's worker id, a model)
label      the label (a class name or number; a missing label is no annotation)
time       when (optional: datetime, ISO text or epoch milliseconds)
instruction the labelling-instruction version it was given under (optional)
...        any other column is the item's metadata (source, device, line...)
========== =====================================================================

:func:`normalise` renames and types those columns (pandas, Polars, Arrow or a file);
:func:`as_annotations` also encodes items, labelers and labels as integer codes, so that the
statistics are counts over NumPy arrays (one ``bincount`` makes the item x class table).

A labeler who labelled the same item twice corrected themselves: the later label (by time,
then by row order) is the one counted, and ``replaced`` says how many were superseded.

>>> ann = as_annotations({"item": [1, 1, 2, 2], "labeler": ["ann", "bob", "ann", "bob"],
...                       "label": ["cat", "cat", "dog", "cat"]})
>>> ann.items.tolist(), ann.labelers.tolist(), ann.classes.tolist()
([1, 2], ['ann', 'bob'], ['cat', 'dog'])
>>> ann.counts.tolist()
[[2, 0], [1, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

CORE = ("item", "labeler", "label", "time", "instruction")


def normalise(data: Any, *, item: str = "item", labeler: str = "labeler", label: str = "label",
              time: str | None = "time", instruction: str | None = "instruction",
              metadata: Sequence[str] | None = None) -> pl.DataFrame:
    """The annotations as a Polars frame with the columns ``item, labeler, label, time,
    instruction`` then the metadata columns (every other column unless ``metadata`` names
    them). ``time`` becomes epoch milliseconds (null when absent); rows without a label are
    dropped (not labelled is not a label). Nothing is de-duplicated here.

    >>> normalise({"id": ["a"], "who": ["ann"], "y": [1], "line": [2]},
    ...           item="id", labeler="who", label="y").columns
    ['item', 'labeler', 'label', 'time', 'instruction', 'line']
    """
    if isinstance(data, Annotations):
        return data.frame
    frame = data if isinstance(data, pl.DataFrame) else pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    names = {"item": item, "labeler": labeler, "label": label}
    missing = [f"{role}={column!r}" for role, column in names.items()
               if column not in frame.columns]
    if missing:
        raise InvalidInputError("annotations", ", ".join(missing), "no such column (has: "
                                f"{', '.join(frame.columns[:20])})")
    optional = {"time": time, "instruction": instruction}
    present = {role: c for role, c in optional.items() if c is not None and c in frame.columns}
    taken = {*names.values(), *present.values()}
    if metadata is None:
        meta = [c for c in frame.columns if c not in taken]
    else:
        meta = [metadata] if isinstance(metadata, str) else list(metadata)
        unknown = [c for c in meta if c not in frame.columns]
        if unknown:
            raise InvalidInputError("metadata", ", ".join(unknown), "no such column")
    clash = [c for c in meta if c in CORE and c not in taken]
    if clash:
        raise InvalidInputError("metadata", ", ".join(clash), "a metadata column cannot take "
                                "the name of an annotation field; rename it")
    label_col = frame.get_column(label)
    if label_col.dtype == pl.Null or label_col.dtype.is_nested():
        raise InvalidInputError("label", str(label_col.dtype), "labels must be numbers, text "
                                "or booleans")
    if frame.get_column(item).null_count() or frame.get_column(labeler).null_count():
        raise InvalidInputError("annotations", "missing item or labeler", "every annotation "
                                "needs an item id and a labeler id")
    columns = [pl.col(item).alias("item"), pl.col(labeler).cast(pl.String).alias("labeler"),
               pl.col(label).alias("label"),
               _time(frame, present.get("time")).alias("time"),
               (pl.col(present["instruction"]).cast(pl.String) if "instruction" in present
                else pl.lit(None, dtype=pl.String)).alias("instruction"),
               *[pl.col(c) for c in meta]]
    out = frame.select(columns)
    if out.get_column("item").dtype not in (pl.String, *_INTEGERS):
        out = out.with_columns(pl.col("item").cast(pl.String))
    kept = out.get_column("label").is_not_null()
    if label_col.dtype.is_float():
        kept = kept & ~out.get_column("label").is_nan()
    return out.filter(kept) if not kept.all() else out


_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def _time(frame: pl.DataFrame, column: str | None) -> pl.Expr:
    if column is None:
        return pl.lit(None, dtype=pl.Int64)
    dtype = frame.schema[column]
    if dtype == pl.Datetime or dtype == pl.Date:
        return pl.col(column).cast(pl.Datetime("ms")).dt.epoch("ms")
    if dtype == pl.String:
        parsed = frame.get_column(column).str.to_datetime(strict=False, time_zone="UTC")
        if parsed.null_count() > frame.get_column(column).null_count():
            raise InvalidInputError("time", column, "must hold dates and times (ISO 8601), "
                                    "datetimes or epoch milliseconds")
        return pl.lit(parsed.dt.epoch("ms"))
    if dtype.is_numeric():
        return pl.col(column).cast(pl.Int64)
    raise InvalidInputError("time", f"{column} ({dtype})", "must hold dates and times, "
                            "datetimes or epoch milliseconds")


@dataclass(frozen=True, eq=False)
class Annotations:
    """Annotations encoded for counting: one row per (item, labeler), latest label kept.

    ``item_index[i]``, ``labeler_index[i]`` and ``label_index[i]`` are annotation ``i``'s
    positions in ``items``, ``labelers`` and ``classes`` (each sorted, or ``classes`` in the
    order given). ``frame`` holds the rows themselves, metadata included.
    """

    frame: pl.DataFrame = field(repr=False)
    items: np.ndarray
    labelers: np.ndarray
    classes: np.ndarray
    item_index: np.ndarray = field(repr=False)
    labeler_index: np.ndarray = field(repr=False)
    label_index: np.ndarray = field(repr=False)
    metadata: tuple[str, ...] = ()
    replaced: int = 0

    def __len__(self) -> int:
        return len(self.label_index)

    @cached_property
    def cell(self) -> np.ndarray:
        """Per annotation, the position of its (item, class) cell in an items x classes
        table flattened column by column (``table.ravel(order="F")[ann.cell]``)."""
        return self.label_index.astype(np.int64) * len(self.items) + self.item_index

    @cached_property
    def counts(self) -> np.ndarray:
        """``counts[i, c]``: how many labelers gave item ``i`` class ``c``."""
        return count_table(self.item_index, self.label_index, len(self.items), len(self.classes))

    @cached_property
    def blocks(self) -> list[np.ndarray]:
        """The labels grouped by item, as tokens ``labeler * len(classes) + class``: one
        m x items array per number m of labels an item has; column i holds item i's tokens,
        ascending (so ``block[j]`` is every such item's j-th lowest labeler).

        One sort of packed integers (labels per item, item, token) makes them, with no
        per-item Python: the labeler pairs of every item are then pairs of rows.
        """
        n, k = len(self.items), len(self.classes)
        width = len(self.labelers) * k
        per_item = np.bincount(self.item_index, minlength=n)
        token = self.labeler_index.astype(np.int64) * k + self.label_index  # < width
        span = (int(per_item.max(initial=0)) + 1) * max(n, 1) * max(width, 1)
        if span < 2 ** 62:  # one integer per label: (labels of its item, item, token)
            kind = np.int32 if span < 2 ** 31 else np.int64
            packed = per_item.astype(kind)[self.item_index]
            packed *= n
            packed += self.item_index
            packed *= width
            packed += token.astype(kind)
            packed.sort()
            tokens = packed % width
        else:  # too wide to pack into one integer
            tokens = token[np.lexsort((token, self.item_index, per_item[self.item_index]))]
        out, start = [], 0
        for m, items in enumerate(np.bincount(per_item).tolist()):
            if m and items:
                out.append(np.ascontiguousarray(tokens[start:start + m * items]
                                                .reshape(items, m).T))
                start += m * items
        return out

    def wide(self) -> np.ndarray:
        """Items x labelers matrix of class codes, NaN where a labeler gave no label (the
        layout cleanlab's multi-annotator functions take)."""
        out = np.full((len(self.items), len(self.labelers)), np.nan)
        out[self.item_index, self.labeler_index] = self.label_index
        return out

    def select(self, mask: np.ndarray) -> Annotations:
        """The annotations where ``mask`` is true, re-encoded (same classes)."""
        return as_annotations(self.frame.filter(pl.Series(mask)), metadata=self.metadata,
                              classes=self.classes)

    def item_metadata(self, items: Any = None) -> pl.DataFrame:
        """One row per item (of ``items``, or all): its metadata (first non-null value)."""
        frame = self.frame
        if items is not None:
            wanted = pl.Series(items).cast(frame.schema["item"]).implode()
            frame = frame.filter(pl.col("item").is_in(wanted))
        return frame.group_by("item", maintain_order=True).agg(
            [pl.col(c).drop_nulls().first() for c in self.metadata])

    def class_values(self, codes: np.ndarray) -> pl.Series:
        """Class codes turned back into the labels (null where the code is negative)."""
        codes = np.asarray(codes)
        values = pl.Series("label", self.classes)
        out = values.gather(np.where(codes < 0, 0, codes))
        return out.set(pl.Series(codes < 0), None) if (codes < 0).any() else out


def count_table(item_index: np.ndarray, label_index: np.ndarray, n_items: int,
                n_classes: int) -> np.ndarray:
    """Items x classes table of vote counts, from one ``bincount``.

    Stored column by column (Fortran order): there are many items and few classes, and the
    statistics reduce across classes, which is then a few passes over long contiguous rows.
    """
    flat = label_index.astype(np.int64) * n_items + item_index
    return np.bincount(flat, minlength=n_items * n_classes).reshape(n_classes, n_items).T


def as_annotations(data: Any, *, classes: Sequence[Any] | np.ndarray | None = None,
                   **columns: Any) -> Annotations:
    """Normalise (see :func:`normalise`; ``columns`` are its keyword arguments) and encode.

    ``classes`` fixes the label set and its order (needed for ordinal labels given as text,
    and to count a class nobody chose); by default the sorted distinct labels.

    >>> ann = as_annotations({"item": ["a", "a", "a"], "labeler": ["x", "y", "x"],
    ...                       "label": ["low", "high", "mid"], "time": [1, 2, 3]},
    ...                      classes=["low", "mid", "high"])
    >>> ann.replaced, ann.label_index.tolist(), ann.frame["label"].to_list()
    (1, [2, 1], ['high', 'mid'])
    """
    if isinstance(data, Annotations) and classes is None and not columns:
        return data
    frame = normalise(data, **columns)
    meta = tuple(c for c in frame.columns if c not in CORE)
    items, item_index = _encode(frame.get_column("item"))
    labelers, labeler_index = _encode(frame.get_column("labeler"))
    known, label_index = _encode(frame.get_column("label"), classes)
    encoded = Annotations(frame, items, labelers, known, item_index, labeler_index, label_index,
                          meta)
    if not _repeats(encoded):
        return encoded
    key = item_index.astype(np.int64) * len(labelers) + labeler_index
    keep = _latest(key, frame.get_column("time"))
    frame = frame.filter(pl.Series(keep))
    items, item_index = _encode(frame.get_column("item"))
    labelers, labeler_index = _encode(frame.get_column("labeler"))
    label_index, replaced = label_index[keep], int(len(key) - keep.sum())
    return Annotations(frame, items, labelers, known, item_index, labeler_index, label_index,
                       meta, replaced)


def _encode(series: pl.Series, order: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (sorted, or ``order``) and each value's position among them."""
    if order is None:
        if series.dtype.is_integer():
            return _encode_integers(series.to_numpy())
        if series.dtype == pl.String:
            return _encode_text(series)
        uniques = series.unique().sort()
    else:
        uniques = pl.Series(list(order) if not isinstance(order, np.ndarray) else order)
        if uniques.n_unique() != len(uniques):
            raise InvalidInputError("classes", list(uniques), "must not repeat a class")
        try:
            uniques = uniques.cast(series.dtype)
        except pl.exceptions.InvalidOperationError:
            raise InvalidInputError("classes", uniques.to_list(), f"must be of the labels' "
                                    f"type ({series.dtype})") from None
    codes = series.replace_strict(uniques, pl.int_range(0, len(uniques), dtype=pl.Int32,
                                                        eager=True), default=-1)
    codes_np = codes.to_numpy()
    if order is not None and (codes_np < 0).any():
        unknown = series.filter(codes == -1).unique().head(5).to_list()
        raise InvalidInputError("label", unknown, f"not among the classes given "
                                f"({uniques.to_list()})")
    return uniques.to_numpy(), codes_np


def _encode_integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int32)
    low, high = int(values.min()), int(values.max())
    if high - low > 4 * len(values) + 1024:  # sparse ids: sort them
        uniques, codes = np.unique(values, return_inverse=True)
        return uniques, codes.astype(np.int32)
    offset = values - low
    present = np.zeros(high - low + 1, dtype=bool)
    present[offset] = True
    position = np.cumsum(present, dtype=np.int32) - 1
    return np.flatnonzero(present).astype(values.dtype) + low, position[offset]


def _encode_text(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(series.to_arrow())
    if hasattr(encoded, "combine_chunks"):
        encoded = encoded.combine_chunks()
    seen = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(seen.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return seen[order].astype(str), rank[encoded.indices.to_numpy(zero_copy_only=False)]


def _repeats(ann: Annotations) -> bool:
    """Whether a labeler labelled some item twice (then adjacent in a row of a block)."""
    k = len(ann.classes)
    for block in ann.blocks:
        labeler = block // k
        if len(block) > 1 and bool((labeler[1:] == labeler[:-1]).any()):
            return True
    return False


def _latest(key: np.ndarray, time: pl.Series) -> np.ndarray:
    """Mask of the last annotation per key, ordered by time (nulls first), then by row."""
    rows = np.arange(len(key))
    when = time.fill_null(np.iinfo(np.int64).min).to_numpy()
    order = np.lexsort((rows, when, key))
    last = np.ones(len(key), dtype=bool)
    last[:-1] = key[order][1:] != key[order][:-1]
    keep = np.zeros(len(key), dtype=bool)
    keep[order[last]] = True
    return keep
