"""Human-level performance from annotations: each labeler against the truth, or the others.

With a ground truth (a mapping or frame of item -> label, or the name of a labeler whose
labels are the truth, an expert's), each labeler's accuracy is the share of their labels equal
to it. Without one, each labeler is compared with the majority of the *other* labelers of
the same item (leave-that-labeler-out consensus), so nobody is graded against their own vote;
a tie for that majority gives 1/k credit when the labeler's label is one of the k tied
(``ties="split"``), or leaves the item out (``ties="exclude"``).

The result is :class:`~prodml.evaluation.baselines.HumanLevelPerformance`, the same as
:func:`~prodml.evaluation.baselines.human_level_performance` gives: ``hlp.as_baseline()`` goes
straight into ``pm.evaluate(..., baselines={"hlp": ...})`` and the error-analysis table.

The course's inspection example: ground truth 1, 1, 1, 0, 0, 0; the inspector says 1, 0, 1,
0, 0, 1:

>>> hlp = human_level({"item": range(6), "labeler": ["inspector"] * 6,
...                    "label": [1, 0, 1, 0, 0, 1]}, truth=dict(enumerate([1, 1, 1, 0, 0, 0])))
>>> f"{hlp.overall:.1%}"
'66.7%'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.data.labels.agreement import leave_one_out_credit
from prodml.data.labels.annotations import Annotations, as_annotations
from prodml.errors import InvalidInputError

TIES = ("split", "exclude")


def human_level(annotations: Any, *, truth: Any = None, slices: Any = None,
                aggregate: str = "mean", ties: str = "split", classes: Any = None,
                **columns: Any) -> Any:
    """Each labeler's accuracy against ``truth`` (or the leave-one-out consensus), overall
    and per slice, and HLP from them (``aggregate``: ``mean``, ``best`` or ``pooled``).

    ``slices`` names metadata columns of the annotations (``"line"`` gives ``line=1``,
    ``line=2``...; a boolean column is one tag), or is a frame with an ``item`` column and
    slice columns.

    >>> ann = {"item": [1, 1, 1, 2, 2, 2], "labeler": ["a", "b", "c"] * 2,
    ...        "label": [0, 0, 1, 1, 1, 1]}
    >>> hlp = human_level(ann)
    >>> [hlp.labeler(x).accuracy for x in "abc"], round(hlp.overall, 3)
    ([0.75, 0.75, 0.5], 0.667)

    On item 1, ``a`` and ``b`` each face a tie of the other two (0 and 1), so get half credit;
    ``c`` says 1 where the others both say 0.
    """
    from prodml.evaluation.baselines import HumanLevelPerformance, LabelerScore, wilson
    from prodml.evaluation.error_analysis import slice_masks

    if ties not in TIES:
        raise InvalidInputError("ties", ties, f"must be one of {', '.join(TIES)}")
    ann = as_annotations(annotations, classes=classes, **columns)
    if isinstance(truth, str) and truth in set(ann.labelers.tolist()):
        expert = int(np.flatnonzero(ann.labelers == truth)[0])
        credit = _against_labeler(ann, expert)
    elif truth is not None:
        credit = _against_truth(ann, truth)
    else:
        credit = leave_one_out_credit(ann)
        if ties == "exclude":
            credit = np.where((credit > 0) & (credit < 1), np.nan, credit)
    scored = ~np.isnan(credit)
    if not scored.any():
        raise InvalidInputError("annotations", "nothing to compare", "no label has a ground "
                                "truth or another labeler's label on the same item")
    masks = {"overall": np.ones(len(ann), dtype=bool)}
    if slices is not None:
        masks.update(slice_masks(_slice_frame(ann, slices)))
    n_lab = len(ann.labelers)
    scores = []
    slice_items = {}
    for name, mask in masks.items():
        use = mask & scored
        hits = np.bincount(ann.labeler_index[use], weights=credit[use], minlength=n_lab)
        seen = np.bincount(ann.labeler_index[use], minlength=n_lab)
        for who, correct, count in zip(ann.labelers.tolist(), hits.tolist(), seen.tolist()):
            if count:
                correct = round(correct, 9)
                correct = int(correct) if correct == int(correct) else correct
                scores.append(LabelerScore(str(who), name, correct / count, correct, count,
                                           wilson(correct, count)))
        if name != "overall":
            slice_items[name] = len(np.unique(ann.item_index[use]))
    return HumanLevelPerformance.from_scores(
        scores, aggregate, items=len(np.unique(ann.item_index[scored])), slice_items=slice_items)


def _against_labeler(ann: Annotations, expert: int) -> np.ndarray:
    truth = np.full(len(ann.items), -1, dtype=np.int64)
    theirs = ann.labeler_index == expert
    truth[ann.item_index[theirs]] = ann.label_index[theirs]
    target = truth[ann.item_index]
    credit = (ann.label_index == target).astype(float)
    return np.where((target >= 0) & ~theirs, credit, np.nan)


def _against_truth(ann: Annotations, truth: Any) -> np.ndarray:
    frame = _truth_frame(truth)
    item_type = pl.Series(ann.items).dtype
    try:
        frame = frame.with_columns(pl.col("item").cast(item_type))
    except pl.exceptions.InvalidOperationError:
        raise InvalidInputError("truth", "item ids", f"must be of the annotations' item type "
                                f"({item_type})") from None
    if frame.get_column("item").is_duplicated().any():
        raise InvalidInputError("truth", "repeated items", "one ground truth per item")
    joined = pl.DataFrame({"item": ann.items}).join(frame, on="item", how="left",
                                                    maintain_order="left")
    values = joined.get_column("truth")
    classes = pl.Series(ann.classes)
    try:
        values = values.cast(classes.dtype)
    except pl.exceptions.InvalidOperationError:
        raise InvalidInputError("truth", str(values.dtype), f"must be labels of the same kind "
                                f"as the annotations' ({classes.dtype})") from None
    code = values.replace_strict(classes, pl.int_range(0, len(classes), eager=True),
                                 default=-1).to_numpy()
    known = values.is_not_null().to_numpy()[ann.item_index]
    credit = (ann.label_index == code[ann.item_index]).astype(float)
    return np.where(known, credit, np.nan)


def _truth_frame(truth: Any) -> pl.DataFrame:
    if isinstance(truth, Mapping):
        return pl.DataFrame({"item": list(truth.keys()), "truth": list(truth.values())})
    if type(truth).__module__.startswith("pandas") and hasattr(truth, "index") and \
            not hasattr(truth, "columns"):  # a Series indexed by item
        return pl.DataFrame({"item": truth.index.to_numpy(), "truth": truth.to_numpy()})
    try:
        frame = pl.from_arrow(to_arrow(truth))
    except InvalidInputError:
        raise InvalidInputError("truth", type(truth).__name__, "must be a labeler's name, a "
                                "mapping item -> label or a frame with item and label columns"
                                ) from None
    assert isinstance(frame, pl.DataFrame)
    label = next((c for c in ("truth", "label") if c in frame.columns), None)
    if "item" not in frame.columns or label is None:
        raise InvalidInputError("truth", list(frame.columns), "a frame of ground truth needs "
                                "'item' and 'label' (or 'truth') columns")
    return frame.select("item", pl.col(label).alias("truth"))


def _slice_frame(ann: Annotations, slices: Any) -> pl.DataFrame:
    if isinstance(slices, str) or (isinstance(slices, (list, tuple))
                                   and all(isinstance(s, str) for s in slices)):
        names = [slices] if isinstance(slices, str) else list(slices)
        missing = [n for n in names if n not in ann.frame.columns]
        if missing:
            raise InvalidInputError("slices", ", ".join(missing), "not a metadata column of "
                                    f"the annotations (has: {', '.join(ann.metadata)})")
        return ann.frame.select(names)
    frame = pl.from_arrow(to_arrow(slices))
    assert isinstance(frame, pl.DataFrame)
    if "item" not in frame.columns:
        raise InvalidInputError("slices", list(frame.columns), "a frame of slices needs an "
                                "'item' column")
    frame = frame.with_columns(pl.col("item").cast(ann.frame.schema["item"]))
    return ann.frame.select("item").join(frame.unique("item", keep="first"), on="item",
                                         how="left", maintain_order="left").drop("item")
