"""The course's data-augmentation checklist as a function.

Augmented (or synthesised) examples are worth adding when

1. they look realistic: their features do not drift away from the original data's;
2. the label is still clear: people labelling them agree (Krippendorff's alpha at least
   ``min_alpha``, 0.667 being Krippendorff's lowest acceptable level for tentative
   conclusions), and do as well as on the original data;
3. the model does poorly on them while humans do well: the model's accuracy on them is below
   human-level performance by more than ``margin``.

``augmentation_check`` reports each answer with its evidence, and ``useful`` when all three
hold (an answer that cannot be given, for want of annotations, is ``None`` and not held
against the data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

KRIPPENDORFF_TENTATIVE = 0.667


@dataclass(frozen=True)
class AugmentationCheck:
    """The checklist's answers (``None``: could not be told) and their evidence."""

    realistic: bool
    label_clear: bool | None
    model_worse_than_humans: bool | None
    drifted_columns: tuple[str, ...]
    share_drifted: float
    alpha: float = math.nan  # labelers' agreement on the augmented examples
    human_level: float = math.nan  # humans' accuracy on them (or the baseline given)
    model_accuracy: float = math.nan  # the model's accuracy on them
    model_accuracy_original: float = math.nan
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def useful(self) -> bool:
        """Realistic, clear to people, and hard for the model: worth adding."""
        return (self.realistic and self.label_clear is not False
                and self.model_worse_than_humans is not False)

    def to_dict(self) -> dict[str, Any]:
        return {"useful": self.useful, "realistic": self.realistic,
                "label_clear": self.label_clear,
                "model_worse_than_humans": self.model_worse_than_humans,
                "drifted_columns": list(self.drifted_columns),
                "share_drifted": self.share_drifted, "alpha": self.alpha,
                "human_level": self.human_level, "model_accuracy": self.model_accuracy,
                "model_accuracy_original": self.model_accuracy_original,
                "notes": list(self.notes)}

    def summary(self) -> str:
        def mark(answer: bool | None) -> str:
            return "?" if answer is None else ("yes" if answer else "NO")
        return "\n".join([
            f"augmented data {'looks useful' if self.useful else 'is not worth adding as is'}",
            f"  realistic (no drift from the original): {mark(self.realistic)}",
            f"  label clear to people: {mark(self.label_clear)}",
            f"  model does worse than humans on it: {mark(self.model_worse_than_humans)}",
            *(f"  - {n}" for n in self.notes)])

    def __str__(self) -> str:
        return self.summary()


def augmentation_check(original: Any, augmented: Any, *, label: str = "y", model: Any = None,
                       human_level: Any = None, annotations: Any = None,
                       features: list[str] | None = None, min_alpha: float = KRIPPENDORFF_TENTATIVE,
                       margin: float = 0.02, drift_share: float = 0.5) -> AugmentationCheck:
    """Run the checklist on ``augmented`` examples against the ``original`` ones.

    ``model``: a fitted classifier (``predict``) scored on both; ``human_level``: HLP as a
    number or a :class:`~prodml.evaluation.baselines.HumanLevelPerformance` (its overall);
    ``annotations``: labels people gave the augmented examples (long form), from which the
    label's clarity (alpha) and, when no ``human_level`` is given, HLP are measured.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> original = pd.DataFrame({"x": rng.normal(size=500), "y": rng.integers(0, 2, 500)})
    >>> shifted = original.assign(x=original["x"] + 3)  # unlike anything seen
    >>> augmentation_check(original, shifted, label="y").realistic
    False
    """
    from prodml.data.drift import drift

    ref, cur = _frame(original, "original"), _frame(augmented, "augmented")
    names = features or [c for c in ref.columns if c != label and c in cur.columns]
    if not names:
        raise InvalidInputError("features", names, "no feature columns in common")
    report = drift(ref.select(names), cur.select(names), drift_share=drift_share)
    notes = []
    if report.dataset_drift:
        notes.append(f"features drifted from the original: {', '.join(report.drifted_columns)}")
    alpha, clear, hlp = math.nan, None, _level(human_level)
    if annotations is not None:
        from prodml.data.labels.agreement import agreement
        from prodml.data.labels.human_level import human_level as measure

        alpha = agreement(annotations).krippendorff_alpha
        clear = bool(alpha >= min_alpha)
        if not clear:
            notes.append(f"labelers disagree on the augmented examples (alpha {alpha:.3f} < "
                         f"{min_alpha})")
        if math.isnan(hlp):
            hlp = float(measure(annotations).overall)
    accuracy = accuracy_original = math.nan
    worse = None
    if model is not None:
        accuracy = _accuracy(model, cur, names, label, "augmented")
        accuracy_original = _accuracy(model, ref, names, label, "original")
        if not math.isnan(hlp):
            worse = bool(accuracy < hlp - margin)
            if not worse:
                notes.append(f"the model already does as well as people on it (accuracy "
                             f"{accuracy:.1%}, human level {hlp:.1%}): little to learn")
    return AugmentationCheck(
        realistic=not report.dataset_drift, label_clear=clear, model_worse_than_humans=worse,
        drifted_columns=tuple(report.drifted_columns), share_drifted=report.share_drifted,
        alpha=alpha, human_level=hlp, model_accuracy=accuracy,
        model_accuracy_original=accuracy_original, notes=tuple(notes))


def _frame(data: Any, name: str) -> pl.DataFrame:
    frame = pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        raise InvalidInputError(name, "0 rows", "needs examples")
    return frame


def _level(value: Any) -> float:
    if value is None:
        return math.nan
    if hasattr(value, "overall"):
        return float(value.overall)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise InvalidInputError("human_level", value, "must be an accuracy in [0, 1] or a "
                            "HumanLevelPerformance")


def _accuracy(model: Any, frame: pl.DataFrame, names: list[str], label: str, side: str
              ) -> float:
    if label not in frame.columns:
        raise InvalidInputError("label", label, f"the {side} examples need it to score the "
                                "model")
    predicted = np.asarray(model.predict(frame.select(names).to_pandas()))
    truth = frame.get_column(label).to_numpy()
    return float((predicted == truth).mean())
