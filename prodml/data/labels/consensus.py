"""One label per item from several: majority vote, or CROWDLAB with a model's probabilities.

``consensus(annotations)`` is the majority vote. Ties are never hidden: each item says whether
it was tied, and ``ties`` says how a tie is settled:

- ``"prior"`` (default): the tied class labelers chose most often overall (then the first);
- ``"first"``: the first tied class in class order;
- ``"random"``: one of the tied classes at random (``seed``);
- ``"model"``: the tied class the model finds most probable (needs ``pred_probs``), as
  cleanlab's ``get_majority_vote_label`` does;
- ``"none"``: no label (null) for a tied item.

``consensus(annotations, method="crowdlab", pred_probs=...)`` runs cleanlab's multi-annotator
``get_label_quality_multiannotator`` (CROWDLAB): each item gets a consensus label and a quality
score weighing the labelers by their estimated quality and the model by its accuracy, and each
labeler a quality score.

>>> result = consensus({"item": [1, 1, 1, 2, 2], "labeler": ["a", "b", "c", "a", "b"],
...                     "label": [0, 0, 1, 1, 0]}, ties="none")
>>> result.table.select("item", "label", "agreement", "tied").rows()
[(1, 0, 0.6666666666666666, False), (2, None, 0.5, True)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prodml.data.labels.annotations import Annotations, as_annotations
from prodml.errors import InvalidInputError

METHODS = ("majority", "crowdlab")
TIES = ("prior", "first", "random", "model", "none")


@dataclass(frozen=True)
class LabelerQuality:
    """A labeler against the consensus: share of their labels equal to it, and (CROWDLAB)
    their quality score and the class they label worst."""

    labeler: str
    annotations: int
    agreement: float
    quality: float = math.nan
    worst_class: Any = None

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_class.item() if isinstance(self.worst_class, np.generic) else \
            self.worst_class
        return {"labeler": self.labeler, "annotations": self.annotations,
                "agreement": self.agreement, "quality": self.quality, "worst_class": worst}


@dataclass(frozen=True, eq=False)
class Consensus:
    """Consensus labels. ``table`` has one row per item: ``item, label, votes, agreement``
    (share of the item's labels equal to the consensus), ``tied`` and, for CROWDLAB,
    ``quality``; ``labelers`` scores each labeler against the consensus."""

    method: str
    ties: str
    table: pl.DataFrame = field(repr=False)
    labelers: tuple[LabelerQuality, ...]
    classes: tuple[Any, ...]

    @property
    def tied(self) -> int:
        return int(self.table.get_column("tied").sum())

    def labels(self) -> dict[Any, Any]:
        """``{item: consensus label}`` (ties left unsettled are left out)."""
        settled = self.table.filter(pl.col("label").is_not_null())
        return dict(zip(settled.get_column("item").to_list(),
                        settled.get_column("label").to_list()))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "ties": self.ties, "items": self.table.height,
                "tied": self.tied, "classes": [c.item() if isinstance(c, np.generic) else c
                                               for c in self.classes],
                "labelers": [x.to_dict() for x in self.labelers],
                "table": self.table.to_dicts()}

    def summary(self) -> str:
        agree = self.table.get_column("agreement").mean()
        lines = [(f"{self.method} consensus of {self.table.height} items ({self.tied} tied, "
                  f"settled by {self.ties}); mean share agreeing with it {agree:.1%}"),
                 "labeler        labels  agreement  quality"]
        for x in sorted(self.labelers, key=lambda x: (x.agreement, x.labeler)):
            quality = "-" if math.isnan(x.quality) else f"{x.quality:.3f}"
            lines.append(f"{x.labeler[:14]:14} {x.annotations:6d}  {x.agreement:9.1%}  "
                         f"{quality:>7}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def consensus(annotations: Any, *, method: str = "majority", ties: str = "prior",
              pred_probs: Any = None, seed: int = 0, classes: Any = None,
              **columns: Any) -> Consensus:
    """Consensus label of every item (see the module's text for ``ties`` and ``method``).

    ``pred_probs`` is an items x classes array of a model's probabilities, rows in
    ``Annotations.items`` order (sorted item ids), columns in ``classes`` order (sorted
    labels, or ``classes`` as given); or a frame with an ``item`` column and one column per
    class (named by the class), in any row order.
    """
    if method not in METHODS:
        raise InvalidInputError("method", method, f"must be one of {', '.join(METHODS)}")
    if ties not in TIES:
        raise InvalidInputError("ties", ties, f"must be one of {', '.join(TIES)}")
    ann = as_annotations(annotations, classes=classes, **columns)
    if len(ann) == 0:
        raise InvalidInputError("annotations", "0 labels", "consensus needs labels")
    probs = None if pred_probs is None else aligned_probabilities(ann, pred_probs)
    if method == "crowdlab":
        if probs is None:
            raise InvalidInputError("pred_probs", None, "CROWDLAB needs a model's "
                                    "probabilities for every item")
        return _crowdlab(ann, probs)
    if ties == "model" and probs is None:
        raise InvalidInputError("ties", ties, "settling ties by the model needs pred_probs")
    counts = ann.counts
    codes, tied = majority_codes(counts, ties, probs=probs, seed=seed)
    table = _table(ann, counts, codes, tied)
    return Consensus("majority", ties, table, _agreement_with(ann, codes),
                     tuple(ann.classes.tolist()))


def majority_codes(counts: np.ndarray, ties: str = "prior", *, probs: np.ndarray | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Majority class code per row of an items x classes count table (-1: unsettled tie),
    and whether the row was tied.

    >>> codes, tied = majority_codes(np.array([[2, 1], [1, 1], [0, 3]]), "none")
    >>> codes.tolist(), tied.tolist()
    ([0, -1, 1], [False, True, False])
    """
    top = counts.max(axis=1)
    is_top = counts == top[:, None]
    tied = is_top.sum(axis=1) > 1
    if ties == "first" or ties == "none":
        codes = _first_max(is_top.astype(np.int8))
    elif ties == "prior":
        total = counts.sum(axis=0)
        rank = np.empty(len(total), dtype=np.int64)
        rank[np.argsort(-total, kind="stable")] = np.arange(len(total))[::-1]
        codes = _first_max(np.where(is_top, rank[None, :] + 1, 0))
    elif ties == "random":
        noise = np.random.default_rng(seed).random(counts.shape)
        codes = _first_max(np.where(is_top, noise + 1, 0))
    else:
        assert probs is not None
        codes = _first_max(np.where(is_top, probs + 1, 0))
    if ties == "none":
        codes[tied] = -1
    return codes, tied


def _first_max(score: np.ndarray) -> np.ndarray:
    """``score.argmax(axis=1)``, class by class: many items, few classes (column order)."""
    if score.shape[1] > 64 or score.shape[0] == 0:
        return score.argmax(axis=1).astype(np.int64)
    best = score[:, 0].copy()
    codes = np.zeros(score.shape[0], dtype=np.int64)
    for j in range(1, score.shape[1]):
        column = score[:, j]
        better = column > best
        codes[better] = j
        np.maximum(best, column, out=best)
    return codes


def aligned_probabilities(ann: Annotations, pred_probs: Any) -> np.ndarray:
    """A model's probabilities as an items x classes array in ``ann``'s orders."""
    k = len(ann.classes)
    if hasattr(pred_probs, "columns") and not isinstance(pred_probs, np.ndarray):
        frame = pl.from_pandas(pred_probs) if type(pred_probs).__module__.startswith(
            "pandas") else pl.DataFrame(pred_probs)
        if "item" not in frame.columns:
            raise InvalidInputError("pred_probs", list(frame.columns), "a frame of "
                                    "probabilities needs an 'item' column")
        names = [str(c) for c in ann.classes.tolist()]
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise InvalidInputError("pred_probs", missing, "needs one column per class")
        items = pl.DataFrame({"item": ann.items}).with_columns(
            pl.col("item").cast(frame.schema["item"]))
        joined = items.join(frame.select("item", *names), on="item", how="left",
                            maintain_order="left")
        probs = joined.select(names).to_numpy().astype(float)
    else:
        probs = np.asarray(pred_probs, dtype=float)
    if probs.shape != (len(ann.items), k):
        raise InvalidInputError("pred_probs", f"shape {probs.shape}", f"must be items x "
                                f"classes ({len(ann.items)} x {k})")
    if np.isnan(probs).any():
        raise InvalidInputError("pred_probs", "missing values", "every item needs a "
                                "probability for every class")
    return probs


def _table(ann: Annotations, counts: np.ndarray, codes: np.ndarray, tied: np.ndarray
           ) -> pl.DataFrame:
    votes = counts.sum(axis=1)
    chosen = np.where(codes >= 0, counts[np.arange(len(codes)), np.maximum(codes, 0)], 0)
    top = counts.max(axis=1)
    return pl.DataFrame({"item": ann.items, "label": ann.class_values(codes),
                         "votes": votes, "agreement": np.where(codes >= 0, chosen, top) / votes,
                         "tied": tied})


def _agreement_with(ann: Annotations, codes: np.ndarray) -> tuple[LabelerQuality, ...]:
    n_lab = len(ann.labelers)
    given = np.bincount(ann.labeler_index, minlength=n_lab)
    target = codes[ann.item_index]
    hits = np.bincount(ann.labeler_index[ann.label_index == target], minlength=n_lab)
    judged = given if (codes >= 0).all() else np.bincount(ann.labeler_index[target >= 0],
                                                          minlength=n_lab)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = hits / judged
    return tuple(LabelerQuality(str(name), int(g), float(s))
                 for name, g, s in zip(ann.labelers.tolist(), given.tolist(), share.tolist()))


def _crowdlab(ann: Annotations, probs: np.ndarray) -> Consensus:
    import pandas as pd
    from cleanlab.multiannotator import get_label_quality_multiannotator

    names = [str(x) for x in ann.labelers.tolist()]
    wide = pd.DataFrame(ann.wide(), columns=names)
    found = get_label_quality_multiannotator(wide, probs, verbose=False)
    quality = found["label_quality"]
    codes = quality["consensus_label"].to_numpy().astype(np.int64)
    counts = ann.counts
    table = _table(ann, counts, codes, np.zeros(len(codes), dtype=bool)).with_columns(
        pl.Series("agreement", quality["annotator_agreement"].to_numpy(dtype=float)),
        pl.Series("quality", quality["consensus_quality_score"].to_numpy(dtype=float)))
    stats = found["annotator_stats"]
    given = np.bincount(ann.labeler_index, minlength=len(names))
    labelers = tuple(LabelerQuality(
        name, int(given[i]), float(stats.loc[name, "agreement_with_consensus"]),
        float(stats.loc[name, "annotator_quality"]),
        ann.classes[int(stats.loc[name, "worst_class"])]) for i, name in enumerate(names))
    return Consensus("crowdlab", "crowdlab", table, labelers, tuple(ann.classes.tolist()))
