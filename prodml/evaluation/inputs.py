"""Predictions in any accepted form, resolved into encoded :class:`~prodml.evaluation.metrics.
Outcomes`: the one place that knows models, columns, arrays and probability layouts.

- a fitted model: ``predict_proba`` when it has one (unless the task is regression), else
  ``predict``; fed the ``features`` named, else its ``feature_names_in_`` (as pandas), else
  every column but the label (as NumPy);
- a column of the data (a list column holds class probabilities), or an array: labels,
  positive-class probabilities (1-D floats), or ``(n, k)`` class probabilities in the order of
  the model's ``classes_``, else ``classes=``, else the sorted labels.

The task is classification for bool, string and categorical labels, integer labels with at
most ``MAX_CLASSES`` values, and whenever probabilities come in; regression otherwise. Class
codes index the sorted classes; the positive class of a binary task is ``positive_label``,
else the greater class (scikit-learn's convention: 1, True, "yes" over "no").

>>> import numpy as np, polars as pl
>>> df = pl.DataFrame({"y": ["no", "yes", "yes"]})
>>> out, positive = outcomes_for(np.array([0.2, 0.9, 0.4]), df, "y", field="predictions",
...     threshold=0.5, positive_label=None, task=None, classes=None, features=None)
>>> out.classes, positive, out.pred.tolist()
(('no', 'yes'), 'yes', [0, 1, 0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from prodml.errors import InvalidInputError
from prodml.evaluation.metrics import Outcomes

MAX_CLASSES = 20  # an integer label with more distinct values is read as a regression target


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _hint(frame: pl.DataFrame) -> str:
    return f"(has: {', '.join(frame.columns[:20])}{', ...' if frame.width > 20 else ''})"


def _is_model(x: Any) -> bool:
    return (callable(getattr(x, "predict", None))
            and type(x).__module__.split(".")[0] not in ("numpy", "pandas", "polars", "pyarrow"))


def _model_outputs(model: Any, frame: pl.DataFrame, label: str, task: str | None,
                   features: list[str] | None, field: str) -> tuple[np.ndarray, Any]:
    names = features if features is not None else getattr(model, "feature_names_in_", None)
    if names is not None:
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise InvalidInputError("features", missing, "columns the model needs are missing "
                                    f"from data {_hint(frame)}")
        X: Any = frame.select(list(names)).to_pandas()
    else:
        X = frame.drop(label).to_numpy()
    proba = getattr(model, "predict_proba", None)
    if task != "regression" and callable(proba):
        return np.asarray(proba(X)), getattr(model, "classes_", None)
    return np.asarray(model.predict(X)), None


def _as_array(source: Any, frame: pl.DataFrame, label: str, field: str) -> np.ndarray:
    if isinstance(source, str):
        if source not in frame.columns:
            raise InvalidInputError(field, source, f"no such column in data {_hint(frame)}")
        if source == label:
            raise InvalidInputError(field, source, "is the label column itself")
        source = frame[source]
    if isinstance(source, pl.Series):
        if source.null_count():
            raise InvalidInputError(field, f"{source.null_count()} missing values",
                                    "every row needs a prediction")
        if isinstance(source.dtype, (pl.List, pl.Array)):
            return np.vstack(source.to_list()).astype(np.float64)
        return source.to_numpy()
    if hasattr(source, "to_numpy") and not isinstance(source, np.ndarray):
        return np.asarray(source.to_numpy())
    return np.asarray(source)


def _check_probabilities(values: np.ndarray, field: str) -> None:
    lo, hi = (float(np.min(values)), float(np.max(values))) if values.size else (0.0, 0.0)
    if not np.all(np.isfinite(values)) or lo < 0 or hi > 1:
        raise InvalidInputError(field, f"values from {lo:.4g} to {hi:.4g}",
                                "probabilities must be finite and in [0, 1]")


def _encode(series: pl.Series, classes: list[Any], field: str) -> np.ndarray:
    if series.dtype == pl.String:
        try:
            return series.cast(pl.Enum(classes)).to_physical().to_numpy().astype(np.int64)
        except Exception:  # noqa: BLE001 - a value that is not a class
            unknown = series.filter(~series.is_in(classes)).unique().head(5).to_list()
            raise InvalidInputError(field, unknown, "not among the classes "
                                    f"({', '.join(map(str, classes))})") from None
    values, keys = series.to_numpy(), np.asarray(classes)
    codes = np.clip(np.searchsorted(keys, values), 0, len(keys) - 1)
    wrong = keys[codes] != values
    if np.any(wrong):
        raise InvalidInputError(field, np.unique(values[wrong])[:5].tolist(),
                                f"not among the classes ({', '.join(map(str, classes))})")
    return codes.astype(np.int64)


def _positive(classes: list[Any], positive_label: Any) -> Any:
    if positive_label is None:
        return classes[-1]  # sklearn's convention: the greater of two sorted labels
    if positive_label not in classes:
        raise InvalidInputError("positive_label", positive_label, "is not a class (classes: "
                                f"{', '.join(map(str, classes))})")
    return classes[classes.index(positive_label)]


def _infer_task(y: pl.Series, values: np.ndarray, model_classes: Any) -> str:
    if values.ndim == 2 or model_classes is not None:
        return "classification"
    if y.dtype in (pl.Boolean, pl.String, pl.Categorical) or isinstance(y.dtype, pl.Enum):
        return "classification"
    if y.dtype.is_integer() and y.n_unique() <= MAX_CLASSES:
        return "classification"
    return "regression"


def outcomes_for(source: Any, frame: pl.DataFrame, label: str, *, field: str, threshold: float,
                 positive_label: Any, task: str | None, classes: Any,
                 features: list[str] | None) -> tuple[Outcomes, Any]:
    """Resolve any accepted form of predictions into encoded :class:`Outcomes`, and the
    positive label (None for regression and multiclass without ``positive_label``)."""
    y = frame[label]
    if y.null_count():
        raise InvalidInputError("label", f"{label}: {y.null_count()} missing values",
                                "every row needs a label")
    model_classes = None
    if _is_model(source):
        values, model_classes = _model_outputs(source, frame, label, task, features, field)
    else:
        values = _as_array(source, frame, label, field)
    if values.ndim not in (1, 2) or len(values) != len(frame):
        raise InvalidInputError(field, f"shape {values.shape}", f"must have one prediction per "
                                f"row of data ({len(frame)})")
    if values.dtype.kind == "O" and any(v is None for v in values.ravel()[:100_000]):
        raise InvalidInputError(field, "missing values", "every row needs a prediction")
    task = task or _infer_task(y, values, model_classes)
    if task == "regression":
        if not y.dtype.is_numeric() or values.ndim != 1 or values.dtype.kind not in "iufb":
            raise InvalidInputError(field if y.dtype.is_numeric() else "label",
                                    str(values.dtype if y.dtype.is_numeric() else y.dtype),
                                    "regression needs a numeric label and one number per row")
        pred = values.astype(np.float64)
        if not np.all(np.isfinite(pred)):
            raise InvalidInputError(field, "NaN or infinite values", "predictions must be finite")
        return Outcomes("regression", y.cast(pl.Float64).to_numpy(), pred), None
    return _classification(y, values, model_classes, classes, threshold, positive_label, field)


def _classification(y: pl.Series, values: np.ndarray, model_classes: Any, classes: Any,
                    threshold: float, positive_label: Any,
                    field: str) -> tuple[Outcomes, Any]:
    if isinstance(y.dtype, pl.Enum) or y.dtype == pl.Categorical:
        y = y.cast(pl.String)
    seen = y.unique().sort().to_list()
    declared = model_classes if model_classes is not None else classes
    declared = None if declared is None else [_plain(c) for c in declared]
    floats = values.dtype.kind == "f"
    whole = floats and values.ndim == 1 and bool(np.all(np.mod(values, 1) == 0))
    if values.ndim == 2 or (floats and not (whole and len(seen) > 2)):
        _check_probabilities(values, field)
        k = values.shape[1] if values.ndim == 2 else 2
        cls = declared
        if cls is None and values.ndim == 1:
            cls = seen if len(seen) == 2 else (
                [False, True] if y.dtype == pl.Boolean else [0, 1] if set(seen) <= {0, 1}
                else None)
        elif cls is None:
            cls = seen if len(seen) == k else (
                list(range(k)) if y.dtype.is_integer() and set(seen) <= set(range(k)) else None)
        if cls is None or len(cls) != k:
            raise InvalidInputError(field, f"{k} probability columns" if values.ndim == 2 else
                                    "1-D probabilities", f"cannot tell which class each "
                                    f"probability is for: the label has {len(seen)} classes; "
                                    "pass classes= (or (n, k) class probabilities)")
        y_codes = _encode(y, cls, "label")
        if k == 2:
            positive = _positive(cls, positive_label)
            pos = cls.index(positive)
            score = values if values.ndim == 1 else np.ascontiguousarray(values[:, pos])
            pred = np.where(score >= threshold, pos, 1 - pos).astype(np.int64)
            return Outcomes("classification", y_codes, pred, tuple(cls), pos, score=score), positive
        pred = np.argmax(values, axis=1).astype(np.int64)
        positive = _positive(cls, positive_label) if positive_label is not None else None
        return Outcomes("classification", y_codes, pred, tuple(cls),
                        proba=values.astype(np.float64)), positive
    predicted = pl.Series(values)
    if predicted.dtype != y.dtype:
        try:
            predicted = predicted.cast(y.dtype, strict=True)
        except Exception:  # noqa: BLE001
            raise InvalidInputError(field, str(predicted.dtype), "predicted labels must be of "
                                    f"the label's type ({y.dtype})") from None
    cls = declared or sorted(set(seen) | set(predicted.unique().to_list()))
    positive = (_positive(cls, positive_label) if len(cls) == 2 or positive_label is not None
                else None)
    out = Outcomes("classification", _encode(y, cls, "label"), _encode(predicted, cls, field),
                   tuple(cls), cls.index(positive) if len(cls) == 2 else None)
    return out, positive
