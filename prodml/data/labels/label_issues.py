"""Label errors: rows whose label a model, trained without them, finds unlikely.

``issues(data, label="y", model=...)`` gets out-of-fold probabilities by stratified
cross-validation (every row is scored by a model that never saw it: scikit-learn's
``cross_val_predict``), or takes ``pred_probs`` given, then asks cleanlab's confident learning
(``cleanlab.filter.find_label_issues``) which labels are likely wrong. The issues come ranked
by label quality (cleanlab's self-confidence: the probability of the given label), worst
first, each with the label the model suggests instead.

Nothing is changed: a label found wrong is fixed by a person, as a new annotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given")


@dataclass(frozen=True, eq=False)
class LabelIssues:
    """Likely label errors. ``table``: ``row`` (position in the data), ``label`` (given),
    ``suggested`` (the model's most likely class), ``quality`` (probability of the given
    label, lower is worse) and ``suggested_probability``, worst first. ``quality`` holds
    every row's label quality, in data order."""

    table: pl.DataFrame = field(repr=False)
    rows: int
    classes: tuple[Any, ...]
    quality: np.ndarray = field(repr=False)
    method: str = "prune_by_noise_rate"

    @property
    def found(self) -> int:
        return self.table.height

    @property
    def indices(self) -> list[int]:
        return self.table.get_column("row").to_list()

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "found": self.found, "method": self.method,
                "classes": [c.item() if isinstance(c, np.generic) else c for c in self.classes],
                "issues": self.table.to_dicts()}

    def summary(self, top: int = 10) -> str:
        lines = [(f"{self.found} likely label errors in {self.rows} rows "
                  f"({self.found / max(self.rows, 1):.1%}; {self.method})")]
        for row in self.table.head(top).iter_rows(named=True):
            lines.append(f"  row {row['row']}: labelled {row['label']}, model says "
                         f"{row['suggested']} ({row['suggested_probability']:.0%}); "
                         f"label quality {row['quality']:.3f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def issues(data: Any, *, label: str = "y", model: Any = None, pred_probs: Any = None,
           features: list[str] | None = None, cv: int = 5, seed: int = 0,
           filter_by: str = "prune_by_noise_rate", top: int | None = None) -> LabelIssues:
    """Find likely label errors in ``data`` (a frame or file with a ``label`` column).

    ``model``: an unfitted scikit-learn classifier (default: a scaled logistic regression
    with one-hot categories); its out-of-fold probabilities come from ``cv``-fold stratified
    cross-validation over ``features`` (default: every column but the label). Or give
    ``pred_probs`` (rows x classes, columns in sorted class order), out of fold.

    >>> import numpy as np, pandas as pd
    >>> x = np.linspace(-3, 3, 400)
    >>> df = pd.DataFrame({"x": x, "y": (x > 0).astype(int)})
    >>> df.loc[[10, 390], "y"] = 1 - df.loc[[10, 390], "y"]  # two flipped labels
    >>> found = issues(df, label="y")
    >>> found.indices, found.table["suggested"].to_list()
    ([390, 10], [1, 0])
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if filter_by not in FILTERS:
        raise InvalidInputError("filter_by", filter_by, f"must be one of {', '.join(FILTERS)}")
    frame = pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    if label not in frame.columns:
        raise InvalidInputError("label", label, f"no such column (has: "
                                f"{', '.join(frame.columns[:20])})")
    target = frame.get_column(label)
    if target.null_count():
        raise InvalidInputError("label", f"{target.null_count()} missing", "every row needs a "
                                "label: drop the unlabelled rows first")
    classes = target.unique().sort()
    if len(classes) < 2:
        raise InvalidInputError("label", classes.to_list(), "needs at least two classes")
    codes = target.replace_strict(classes, pl.int_range(0, len(classes), eager=True)).to_numpy()
    if pred_probs is None:
        probs = _out_of_fold(frame, label, codes, model, features, cv, seed)
    else:
        probs = np.asarray(pred_probs, dtype=float)
        if probs.shape != (frame.height, len(classes)):
            raise InvalidInputError("pred_probs", f"shape {probs.shape}", f"must be rows x "
                                    f"classes ({frame.height} x {len(classes)})")
    ranked = find_label_issues(codes, probs, filter_by=filter_by,
                               return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(codes, probs, method="self_confidence")
    ranked = ranked if top is None else ranked[:top]
    suggested = probs[ranked].argmax(axis=1)
    table = pl.DataFrame({"row": ranked.astype(np.int64),
                          "label": target.gather(ranked),
                          "suggested": classes.gather(suggested),
                          "quality": quality[ranked],
                          "suggested_probability": probs[ranked, suggested]})
    return LabelIssues(table, frame.height, tuple(classes.to_list()), quality, filter_by)


def _out_of_fold(frame: pl.DataFrame, label: str, codes: np.ndarray, model: Any,
                 features: list[str] | None, cv: int, seed: int) -> np.ndarray:
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    names = features or [c for c in frame.columns if c != label]
    unknown = [c for c in names if c not in frame.columns]
    if unknown or not names:
        raise InvalidInputError("features", unknown or names, "must be columns of the data")
    X = frame.select(names).to_pandas()
    smallest = int(np.bincount(codes).min())
    if smallest < 2:
        raise InvalidInputError("label", "a class with 1 row", "cross-validation needs at "
                                "least 2 rows of every class (or give pred_probs)")
    folds = StratifiedKFold(n_splits=min(cv, smallest), shuffle=True, random_state=seed)
    if model is None:
        from prodml.evaluation.baselines import quick_baseline

        model = quick_baseline(X, codes, kind="linear", task="classification", seed=seed)
    return cross_val_predict(clone(model), X, codes, cv=folds, method="predict_proba")
