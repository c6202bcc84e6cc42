"""Metrics of one window of the prediction log: software, input, output and custom.

Each function takes a window frame (Polars; pandas and Arrow are converted at the edge) and
returns a flat ``{name: float}`` mapping, the shape the runner stores as time series and the
alert rules read. Per-column and per-class metrics carry the column or class in brackets, as
:mod:`prodml.evaluation` names per-class metrics (``"missing_share[age]"``).

The columns are the prediction log's (``read_predictions``): ``time`` (ms since the epoch),
``status`` (ok, error, timeout, review), ``prediction``, ``confidence``, ``latency_ms``; the
features are the other columns (see :func:`feature_columns`). Every group is a list of Polars
expressions, so :func:`measure_window` reads the window once for all of them (plus one
``value_counts`` when the classes are not given).

==========================  =====================================================================
metric                      definition
==========================  =====================================================================
``volume``                  rows in the window
``latency_p50_ms`` (p95,    ``latency_ms`` quantiles, linear interpolation (``np.quantile``'s
p99)                        default), over rows with a latency
``throughput_per_s``        rows / the window's span in seconds (``span_s``, else last - first
                            ``time``; NaN for a zero span)
``error_rate``              share of rows whose ``status`` is in ``error_statuses``
``missing_share[f]``        share of rows where feature ``f`` is null (or NaN)
``mean_length[f]``          mean length in characters of string feature ``f`` (non-null values)
``out_of_domain_share[f]``  share of ``f``'s non-null values outside the schema's domain:
                            not one of ``categories``; below ``min_value`` or above
                            ``max_value``; or a length outside ``min_length..max_length``
``null_prediction_share``   share of rows whose prediction is null or an empty answer
                            (``""``, ``"null"``, ``"[]"``, ``"{}"``)
``class_share[c]``          share of the non-null predictions equal to class ``c``
``mean_confidence``         mean of ``confidence`` (non-null values)
``event_rate[e]``           share of rows with at least one outcome event ``e`` (the column ``e``
                            holds its count per prediction; null counts as none)
``custom[name]``            ``fn(frame)`` for each user callable
==========================  =====================================================================

>>> import polars as pl
>>> frame = pl.DataFrame({"time": [0, 500, 1000, 2000], "status": ["ok", "ok", "error", "ok"],
...     "latency_ms": [10.0, 20.0, 30.0, 40.0], "prediction": ["a", "b", None, "a"],
...     "confidence": [0.9, 0.6, None, 0.8], "age": [30, None, 41, 52]})
>>> m = measure_window(frame)
>>> m["volume"], m["throughput_per_s"], m["error_rate"], m["missing_share[age]"]
(4.0, 2.0, 0.25, 0.25)
>>> m["class_share[a]"], round(m["mean_confidence"], 4), m["latency_p50_ms"]
(0.6666666666666666, 0.7667, 25.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from prodml.errors import InvalidInputError

# The prediction log's own columns (prodml.serving.log_reader's, kept here so that this pure
# module imports nothing from serving): everything else in a window frame is a feature, a
# per-class probability or an outcome-event count.
LOG_COLUMNS = ("id", "time", "endpoint", "model_name", "model_version", "route", "revision",
               "routing_key", "parent_id", "status", "prediction", "confidence", "latency_ms",
               "error", "label", "label_time", "batch_id", "row")
PROBABILITY_PREFIX = "proba_"  # per-class probability columns: proba_<class>
ERROR_STATUSES = ("error", "timeout")
EMPTY_ANSWERS = ("", "null", "[]", "{}", '""')
LATENCY_QUANTILES = (0.5, 0.95, 0.99)
MAX_CLASSES = 50  # observed classes reported when none are declared (most frequent first)
GROUPS = ("software", "input", "output", "custom")

CustomMetric = Callable[[pl.DataFrame], float]


def as_frame(data: Any) -> pl.DataFrame:
    """A Polars frame from Polars, pandas, Arrow or a file path (the edge's one door)."""
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    from prodml.data.frames import to_arrow

    frame = pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    return frame


def feature_columns(frame: pl.DataFrame, *, events: Iterable[str] = (),
                    probability_prefix: str = PROBABILITY_PREFIX) -> list[str]:
    """The window's input features: columns that are not the log's own, not a per-class
    probability (``proba_<class>``) and not an outcome-event count.

    >>> feature_columns(pl.DataFrame({"id": ["x"], "age": [3], "proba_1": [0.2], "clicks": [1]}),
    ...                 events=["clicks"])
    ['age']
    """
    skip = set(LOG_COLUMNS) | set(events)
    return [c for c in frame.columns
            if c not in skip and not c.startswith(probability_prefix)]


# -- expressions per group -------------------------------------------------------------------
def software_expressions(frame: pl.DataFrame, *, time: str = "time",
                         latency: str = "latency_ms", status: str = "status",
                         error_statuses: Sequence[str] = ERROR_STATUSES,
                         span_s: float | None = None) -> list[pl.Expr]:
    """Latency quantiles, throughput and error rate, for the columns the frame has."""
    exprs: list[pl.Expr] = []
    if latency in frame.columns:
        lat = pl.col(latency).cast(pl.Float64)
        exprs += [lat.quantile(q, interpolation="linear").alias(f"latency_p{round(q * 100)}_ms")
                  for q in LATENCY_QUANTILES]
    if span_s is not None:
        rate = pl.len() / span_s if span_s > 0 else pl.lit(math.nan)
        exprs.append(rate.cast(pl.Float64).alias("throughput_per_s"))
    elif time in frame.columns:
        # ms since the epoch, or a Datetime column
        t = (pl.col(time).dt.epoch("ms") if frame.schema[time].is_temporal()
             else pl.col(time).cast(pl.Int64))
        span = (t.max() - t.min()).cast(pl.Float64) / 1000.0
        exprs.append(pl.when(span > 0).then(pl.len() / span).otherwise(None)
                     .alias("throughput_per_s"))
    if status in frame.columns:
        exprs.append(pl.col(status).cast(pl.String).is_in(list(error_statuses)).mean()
                     .alias("error_rate"))
    return exprs


def input_expressions(frame: pl.DataFrame, features: Sequence[str] | None = None, *,
                      schema: Any = None, events: Iterable[str] = ()) -> list[pl.Expr]:
    """Missing share per feature, mean string length, share outside the schema's domain."""
    names = _features(frame, features, events)
    exprs: list[pl.Expr] = []
    for name in names:
        dtype = frame.schema[name]
        col = pl.col(name)
        missing = col.is_null() | col.is_nan() if dtype.is_float() else col.is_null()
        exprs.append(missing.mean().alias(f"missing_share[{name}]"))
        if _is_text(dtype):
            exprs.append(col.cast(pl.String).str.len_chars().mean()
                         .alias(f"mean_length[{name}]"))
    if schema is not None:
        columns = getattr(schema, "columns", schema)
        for name in names:
            rule = columns.get(name) if isinstance(columns, Mapping) else None
            outside = _outside_domain(name, frame.schema[name], rule) if rule else None
            if outside is not None:
                present = pl.col(name).is_not_null()
                exprs.append(((outside & present).sum() / present.sum())
                             .alias(f"out_of_domain_share[{name}]"))
    return exprs


def output_expressions(frame: pl.DataFrame, *, prediction: str = "prediction",
                       confidence: str = "confidence", classes: Sequence[Any] | None = None,
                       events: Iterable[str] = ()) -> list[pl.Expr]:
    """Null-answer share, declared classes' shares, mean confidence and event rates."""
    exprs: list[pl.Expr] = []
    if prediction in frame.columns:
        pred = pl.col(prediction)
        empty = pred.is_null()
        if _is_text(frame.schema[prediction]):
            empty = empty | pred.cast(pl.String).str.strip_chars().is_in(list(EMPTY_ANSWERS))
        exprs.append(empty.mean().alias("null_prediction_share"))
        if classes is not None:
            dtype = frame.schema[prediction]
            answered = pred.is_not_null().sum()
            exprs += [(_equals(pred, dtype, c).sum() / answered).alias(f"class_share[{c}]")
                      for c in classes]
    if confidence in frame.columns:
        exprs.append(pl.col(confidence).cast(pl.Float64).fill_nan(None).mean()
                     .alias("mean_confidence"))
    for event in events:
        if event not in frame.columns:
            raise InvalidInputError("events", event, "is not a column of the window "
                                    "(an outcome event's count per prediction)")
        exprs.append((pl.col(event).fill_null(0) > 0).mean().alias(f"event_rate[{event}]"))
    return exprs


# -- the functions ---------------------------------------------------------------------------
def software_metrics(frame: Any, **options: Any) -> dict[str, float]:
    """Latency p50/p95/p99 (ms), throughput per second and error rate of a window.

    >>> software_metrics(pl.DataFrame({"time": [0, 1000], "status": ["ok", "timeout"],
    ...                                "latency_ms": [5.0, 7.0]}))["error_rate"]
    0.5
    """
    frame = as_frame(frame)
    return _collect(frame, software_expressions(frame, **options))


def input_metrics(frame: Any, features: Sequence[str] | None = None, *, schema: Any = None,
                  events: Iterable[str] = ()) -> dict[str, float]:
    """Missing share per feature, mean string length and out-of-domain share of a window.

    ``schema`` is a :class:`prodml.Schema` (or a mapping of column name to
    :class:`prodml.ColumnSchema`); columns it does not describe, or describes without a
    domain, get no out-of-domain share.

    >>> from prodml.data.schema import Schema
    >>> schema = Schema(columns={"plan": {"type": "string", "categories": ["basic", "pro"]},
    ...                          "age": {"type": "integer", "min_value": 18, "max_value": 99}})
    >>> w = pl.DataFrame({"plan": ["basic", "gold", None, "pro"], "age": [17, 30, 40, 120]})
    >>> m = input_metrics(w, schema=schema)
    >>> m["out_of_domain_share[plan]"], m["out_of_domain_share[age]"], m["mean_length[plan]"]
    (0.3333333333333333, 0.5, 4.0)
    """
    frame = as_frame(frame)
    out = {"volume": float(frame.height)}
    out.update(_collect(frame, input_expressions(frame, features, schema=schema,
                                                 events=events)))
    return out


def output_metrics(frame: Any, *, prediction: str = "prediction",
                   confidence: str = "confidence", classes: Sequence[Any] | None = None,
                   events: Iterable[str] = ()) -> dict[str, float]:
    """Null-answer share, class distribution, mean confidence and outcome-event rates.

    Without ``classes`` the shares of the observed classes are reported (at most the 50
    most frequent) when predictions are labels (text, integers, booleans), none for numbers.

    >>> w = pl.DataFrame({"prediction": ["yes", "no", "", "yes"], "clicked": [1, 0, None, 2]})
    >>> m = output_metrics(w, classes=["yes", "no"], events=["clicked"])
    >>> m["null_prediction_share"], m["class_share[yes]"], m["event_rate[clicked]"]
    (0.25, 0.5, 0.5)
    """
    frame = as_frame(frame)
    out = _collect(frame, output_expressions(frame, prediction=prediction,
                                             confidence=confidence, classes=classes,
                                             events=events))
    if classes is None:
        out.update(class_shares(frame, prediction))
    return out


def custom_metrics(frame: Any, metrics: Mapping[str, CustomMetric]) -> dict[str, float]:
    """``{"custom[name]": fn(frame)}`` for each user callable; it must return a number.

    >>> custom_metrics(pl.DataFrame({"x": [1, 2, 3]}), {"x_max": lambda f: f["x"].max()})
    {'custom[x_max]': 3.0}
    """
    frame = as_frame(frame)
    out = {}
    for name, fn in metrics.items():
        value = fn(frame)
        try:
            out[f"custom[{name}]"] = _number(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"custom metric {name!r}", type(value).__name__,
                                    "must return a number") from None
    return out


def measure_window(frame: Any, *, features: Sequence[str] | None = None, schema: Any = None,
                   classes: Sequence[Any] | None = None, events: Iterable[str] = (),
                   custom: Mapping[str, CustomMetric] | None = None,
                   groups: Iterable[str] = GROUPS, span_s: float | None = None,
                   time: str = "time", latency: str = "latency_ms", status: str = "status",
                   error_statuses: Sequence[str] = ERROR_STATUSES,
                   prediction: str = "prediction",
                   confidence: str = "confidence") -> dict[str, float]:
    """Every metric of the chosen ``groups`` in one pass over the window (see the table above).

    ``features`` defaults to :func:`feature_columns`; ``events`` names outcome-event count
    columns; ``custom`` maps names to callables ``fn(frame) -> float``.
    """
    frame = as_frame(frame)
    groups = set(groups)
    unknown = groups - set(GROUPS)
    if unknown:
        raise InvalidInputError("groups", min(unknown), "must be one of "
                                + ", ".join(GROUPS))
    events = list(events)
    exprs: list[pl.Expr] = []
    if "software" in groups:
        exprs += software_expressions(frame, time=time, latency=latency, status=status,
                                      error_statuses=error_statuses, span_s=span_s)
    if "input" in groups:
        exprs += input_expressions(frame, features, schema=schema, events=events)
    if "output" in groups:
        exprs += output_expressions(frame, prediction=prediction, confidence=confidence,
                                    classes=classes, events=events)
    out = {"volume": float(frame.height)}
    out.update(_collect(frame, exprs))
    if "output" in groups and classes is None:
        out.update(class_shares(frame, prediction))
    if "custom" in groups and custom:
        out.update(custom_metrics(frame, custom))
    return out


def class_shares(frame: pl.DataFrame, prediction: str = "prediction",
                 limit: int = MAX_CLASSES) -> dict[str, float]:
    """Shares of the observed predicted classes among non-null predictions (labels only)."""
    if prediction not in frame.columns:
        return {}
    dtype = frame.schema[prediction]
    if not (_is_text(dtype) or dtype.is_integer() or dtype == pl.Boolean):
        return {}
    answered = frame.get_column(prediction).drop_nulls()
    if answered.len() == 0:
        return {}
    counts = answered.value_counts(sort=True).head(limit)
    total = answered.len()
    return {f"class_share[{value}]": count / total
            for value, count in zip(counts.get_column(prediction).to_list(),
                                    counts.get_column("count").to_list())}


# -- helpers ---------------------------------------------------------------------------------
def _features(frame: pl.DataFrame, features: Sequence[str] | None,
              events: Iterable[str]) -> list[str]:
    if features is None:
        return feature_columns(frame, events=events)
    for name in features:
        if name not in frame.columns:
            raise InvalidInputError("features", name, "is not a column of the window")
    return list(features)


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Enum, pl.Categorical))


def _equals(pred: pl.Expr, dtype: pl.DataType, value: Any) -> pl.Expr:
    """``pred == value`` for a declared class, whatever the prediction's type (YAML may give
    ``1`` for a column of ``"1"`` or ``true`` for one of 1)."""
    if _is_text(dtype):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return pred.cast(pl.String) == text
    try:
        if dtype == pl.Boolean:
            flag = value if isinstance(value, bool) else str(value).lower() in ("true", "1")
            return pred == flag
        return pred.cast(pl.Float64) == float(value)
    except (TypeError, ValueError):
        return pl.repeat(False, pl.len())


def _outside_domain(name: str, dtype: pl.DataType, rule: Any) -> pl.Expr | None:
    """True where a value breaks the column's domain; None when the rule sets no domain."""
    col = pl.col(name)
    if rule.categories is not None and (_is_text(dtype) or dtype.is_integer()):
        return ~col.cast(pl.String).is_in(list(rule.categories))
    if (rule.min_value is not None or rule.max_value is not None) and (
            dtype.is_numeric() or dtype.is_temporal()):
        parts = []
        if rule.min_value is not None:
            parts.append(col < rule.min_value)
        if rule.max_value is not None:
            parts.append(col > rule.max_value)
        return parts[0] if len(parts) == 1 else parts[0] | parts[1]
    if (rule.min_length is not None or rule.max_length is not None) and _is_text(dtype):
        length = col.cast(pl.String).str.len_chars()
        parts = []
        if rule.min_length is not None:
            parts.append(length < rule.min_length)
        if rule.max_length is not None:
            parts.append(length > rule.max_length)
        return parts[0] if len(parts) == 1 else parts[0] | parts[1]
    return None


def _collect(frame: pl.DataFrame, exprs: list[pl.Expr]) -> dict[str, float]:
    if not exprs:
        return {}
    row = frame.select(exprs).row(0, named=True)
    return {name: _number(value) for name, value in row.items()}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
