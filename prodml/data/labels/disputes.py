"""Disputed items: where labelers disagree most, for the "what is y, exactly?" meeting.

An item's disagreement is the entropy of its votes in bits (0 when everyone agrees; 1 for a
2-2 split between two classes; log2 k for k classes split evenly). Items are ranked by it,
then by how many labels they have (a 3-3 split says more than a 1-1), and come with their
votes, who said what, and their metadata, so the meeting can look at the item itself.

>>> found = disputes({"item": [1, 1, 1, 2, 2, 2], "labeler": ["a", "b", "c"] * 2,
...                   "label": ["dent", "dent", "dent", "dent", "scratch", "dent"]})
>>> found.table.select("item", "entropy", "votes", "labels").rows()
[(2, 0.9182958340544896, 'dent: 2, scratch: 1', 'a=dent, b=scratch, c=dent')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prodml.data.labels.annotations import as_annotations
from prodml.data.labels.consensus import majority_codes
from prodml.errors import InvalidInputError


@dataclass(frozen=True, eq=False)
class Disputes:
    """The most disputed items, most disputed first; ``table`` has ``item, entropy,
    count`` (labels), ``majority, majority_share, votes, labels`` and the metadata columns.
    ``disputed`` counts every item with any disagreement, ``items`` every item."""

    table: pl.DataFrame = field(repr=False)
    items: int
    disputed: int

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "disputed": self.disputed, "table": self.table.to_dicts()}

    def summary(self) -> str:
        lines = [f"{self.disputed} of {self.items} items disputed; the most disputed:"]
        for row in self.table.iter_rows(named=True):
            lines.append(f"  {row['item']}: {row['votes']} (entropy {row['entropy']:.2f}) "
                         f"— {row['labels']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def vote_entropy(counts: np.ndarray) -> np.ndarray:
    """Entropy in bits of each row of an items x classes vote table.

    >>> vote_entropy(np.array([[3, 0], [2, 2], [1, 1]])).tolist()
    [0.0, 1.0, 1.0]
    """
    total = counts.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1)), 0.0)
    return terms.sum(axis=1) + 0.0  # + 0.0: no negative zero


def disputes(annotations: Any, *, top: int | None = 20, min_labels: int = 2,
             classes: Any = None, **columns: Any) -> Disputes:
    """The ``top`` most disputed items (all disputed items with ``top=None``) among those
    with at least ``min_labels`` labels."""
    if top is not None and top < 1:
        raise InvalidInputError("top", top, "must be at least 1 (or None for all)")
    ann = as_annotations(annotations, classes=classes, **columns)
    counts = ann.counts
    labels = counts.sum(axis=1)
    entropy = vote_entropy(counts)
    candidates = np.flatnonzero((entropy > 0) & (labels >= min_labels))
    order = candidates[np.lexsort((candidates, -labels[candidates], -entropy[candidates]))]
    chosen = order if top is None else order[:top]
    codes, _ = majority_codes(counts[chosen], "prior")
    names = [str(c) for c in ann.classes.tolist()]
    sub = counts[chosen]
    votes = [", ".join(f"{names[j]}: {row[j]}" for j in np.argsort(-row, kind="stable")
                       if row[j] > 0) for row in sub]
    head = pl.DataFrame({
        "item": ann.items[chosen], "entropy": entropy[chosen], "count": labels[chosen],
        "majority": ann.class_values(codes),
        "majority_share": sub[np.arange(len(chosen)), codes] / labels[chosen],
        "votes": votes})
    who = (ann.frame.select("item", "labeler", "label")
           .filter(pl.col("item").is_in(head.get_column("item").implode()))
           .sort("labeler")
           .group_by("item").agg(pl.format("{}={}", "labeler", "label").str.join(", ")
                                 .alias("labels")))
    table = head.join(who, on="item", how="left", maintain_order="left")
    if ann.metadata:
        table = table.join(ann.item_metadata(head.get_column("item")), on="item", how="left",
                           maintain_order="left")
    return Disputes(table, len(ann.items), len(candidates))
