"""Error analysis: which tags (slices) of the data are worth working on?

As in the course's speech example: tag the examples (car noise, people noise, low bandwidth...),
measure the model and a baseline (usually human-level performance, HLP) on each tag, and rank
the tags by **potential gain** = gap to the baseline x share of the data the tag covers: the most
the overall metric can rise by closing that tag's gap. A big gap on a rare tag can matter less
than a small gap on a common one.

>>> speech = [
...     {"tag": "clean speech", "accuracy": 0.94, "baseline": 0.95, "share": 0.60},
...     {"tag": "car noise", "accuracy": 0.89, "baseline": 0.93, "share": 0.04},
...     {"tag": "people noise", "accuracy": 0.87, "baseline": 0.89, "share": 0.30},
...     {"tag": "low bandwidth", "accuracy": 0.70, "baseline": 0.70, "share": 0.06}]
>>> analysis = error_analysis(speech)
>>> [(row.tag, round(row.gain, 4)) for row in analysis.top(3)]
[('clean speech', 0.006), ('people noise', 0.006), ('car noise', 0.0016)]

``tag_examples`` adds boolean tag columns to a frame (from functions, SQL text or Polars
expressions) so that the same tags serve as slices for evaluation, HLP and importance;
``slice_masks`` turns tag or feature columns into named row masks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

TRUE_VALUES = ("True", "true", "1")
FALSE_VALUES = ("False", "false", "0")
LOWER_IS_BETTER = {"log_loss", "brier", "calibration_error", "ece", "mae", "mse", "rmse", "mape",
                   "fpr", "fnr", "error_rate", "wer"}
MAX_SLICE_VALUES = 50


# -- tags and slices ------------------------------------------------------------------------------
def tag_examples(data: Any, taggers: Mapping[str, Any], *, keep: bool = True) -> pl.DataFrame:
    """Add one boolean column per tag; ``taggers`` maps a tag's name to how to compute it.

    A tagger is a function of the frame (called with the frame as given: pandas stays pandas)
    returning a boolean per row or a Polars expression, a SQL expression over the columns
    (``"bandwidth < 8"``), a Polars expression, or the booleans themselves. Nulls count as not
    tagged. ``keep=False`` returns only the tag columns. To slice an evaluation by the tags,
    pass them as named predicates: ``evaluate(..., slices=[{tag: tag for tag in taggers}])``.

    >>> import polars as pl
    >>> clips = pl.DataFrame({"noise": ["car", "none", "people"], "bandwidth": [16, 4, 16]})
    >>> tagged = tag_examples(clips, {"car noise": lambda df: df["noise"] == "car",
    ...                               "low bandwidth": "bandwidth < 8",
    ...                               "people noise": pl.col("noise") == "people"})
    >>> tagged["car noise"].to_list(), tagged["low bandwidth"].to_list()
    ([True, False, False], [False, True, False])
    """
    if not isinstance(taggers, Mapping) or not taggers:
        raise InvalidInputError("taggers", type(taggers).__name__,
                                "must be a non-empty mapping of tag name to a function, SQL "
                                "text or Polars expression")
    frame = _polars(data, "data")
    tags = {}
    for name, tagger in taggers.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError("taggers", name, "tag names must be non-empty strings")
        if keep and name in frame.columns:
            raise InvalidInputError(f"taggers[{name!r}]", name, "is already a column of the "
                                    "data: give the tag another name")
        tags[name] = boolean_column(frame, data, name, tagger, f"taggers[{name!r}]")
    tag_frame = pl.DataFrame(tags)
    return frame.hstack(tag_frame.get_columns()) if keep else tag_frame


def boolean_column(frame: pl.DataFrame, original: Any, name: str, how: Any,
                   where: str) -> pl.Series:
    """One boolean per row from SQL text, a Polars expression, a function or the values."""
    try:
        if isinstance(how, str):
            result: Any = frame.select(pl.sql_expr(how).alias(name)).to_series()
        elif isinstance(how, pl.Expr):
            result = frame.select(how.alias(name)).to_series()
        elif callable(how):
            result = how(original)
            if isinstance(result, pl.Expr):
                result = frame.select(result.alias(name)).to_series()
        else:
            result = how
        series = _as_series(result, name)
    except Exception as exc:  # noqa: BLE001 - the user's code or SQL: say which failed
        shown = how if isinstance(how, str) else type(how).__name__
        raise InvalidInputError(where, shown, f"failed: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if series.dtype != pl.Boolean or len(series) != frame.height:
        raise InvalidInputError(where, f"{series.dtype} x {len(series)}", "must give one "
                                f"boolean per row ({frame.height} rows)")
    return series.fill_null(False)


def _as_series(values: Any, name: str) -> pl.Series:
    if isinstance(values, pl.Series):
        return values.alias(name)
    if type(values).__module__.split(".")[0] == "pandas":
        return pl.from_pandas(values).alias(name)
    return pl.Series(name, np.asarray(values))


def slice_masks(data: Any, columns: Any = None) -> dict[str, np.ndarray]:
    """Named boolean row masks: a boolean column is a tag, any other one slice per value.

    ``columns`` names columns of ``data``; or ``data`` itself holds only slice columns. Names
    follow :mod:`prodml.evaluation.slices` (``"line=a"``, missing values in ``"line=null"``),
    except that a boolean column is one tag, not two slices; nulls are not tagged. A column with
    more than 50 distinct values should be binned first.

    >>> masks = slice_masks({"line": ["a", "b", None], "blurry": [True, False, None]})
    >>> list(masks), masks["line=null"].tolist(), masks["blurry"].tolist()
    (['line=a', 'line=b', 'line=null', 'blurry'], [False, False, True], [True, False, False])
    """
    frame = _polars(data, "slices")
    if columns is not None:
        names = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise InvalidInputError("slices", ", ".join(map(str, missing)),
                                    "is not a column of the data")
        frame = frame.select(names)
    masks: dict[str, np.ndarray] = {}
    for series in frame.get_columns():
        if series.dtype == pl.Boolean:
            masks[series.name] = series.fill_null(False).to_numpy()
            continue
        values = series.drop_nulls().unique(maintain_order=False).sort()
        if len(values) > MAX_SLICE_VALUES:
            raise InvalidInputError("slices", series.name, f"has {len(values)} distinct values "
                                    f"(at most {MAX_SLICE_VALUES}): bin it or tag it first")
        for value in values.to_list():
            masks[f"{series.name}={value}"] = (series == value).fill_null(False).to_numpy()
        if series.null_count():  # named as prodml.evaluation.slices names them
            masks[f"{series.name}=null"] = series.is_null().to_numpy()
    return masks


def _polars(data: Any, name: str) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    try:
        return pl.from_arrow(to_arrow(data))  # type: ignore[return-value]
    except InvalidInputError as exc:
        raise InvalidInputError(name, exc.value, exc.rule or "unreadable") from None


# -- error analysis -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TagGap:
    """One tag: the model's metric, the baseline's, the gap and its share of the data."""

    tag: str
    value: float
    baseline: float
    share: float
    count: int | None = None
    small: bool = False
    higher_is_better: bool = True

    @property
    def gap(self) -> float:
        """How far the model trails the baseline (negative: it beats it)."""
        diff = self.baseline - self.value
        return diff if self.higher_is_better else -diff

    @property
    def gain(self) -> float:
        """The most the overall metric rises by closing the gap (0 where there is none)."""
        return max(self.gap, 0.0) * self.share

    def to_dict(self, metric: str = "value", baseline: str = "baseline") -> dict[str, Any]:
        return {"tag": self.tag, metric: self.value, baseline: self.baseline, "gap": self.gap,
                "share": self.share, "gain": self.gain, "count": self.count,
                "small": self.small}


@dataclass(frozen=True)
class ErrorAnalysis:
    """Tags ranked by potential gain (ties: the larger tag first)."""

    rows: tuple[TagGap, ...]
    metric: str = "accuracy"
    baseline: str = "baseline"
    overall_value: float | None = None
    overall_baseline: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def top(self, n: int = 3) -> list[TagGap]:
        """The ``n`` tags most worth working on (only those with something to gain)."""
        return [r for r in self.rows if r.gain > 0][:n]

    def __getitem__(self, tag: str) -> TagGap:
        for row in self.rows:
            if row.tag == tag:
                return row
        raise InvalidInputError("tag", tag, "is not in the error analysis (has: "
                                + ", ".join(r.tag for r in self.rows) + ")")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "baseline": self.baseline,
                "overall": {self.metric: self.overall_value, self.baseline:
                            self.overall_baseline},
                "rows": [r.to_dict(self.metric, self.baseline) for r in self.rows],
                "skipped": dict(self.skipped)}

    def summary(self) -> str:
        """A plain-text table, most potential gain first."""
        head = (f"Error analysis: {self.metric} vs {self.baseline}, ranked by potential gain "
                "(gap x share)")
        rows = [("tag", self.metric, self.baseline, "gap", "share", "gain")]
        for r in self.rows:
            rows.append((r.tag + (" (small)" if r.small else ""), _pct(r.value),
                         _pct(r.baseline), _pct(r.gap), _pct(r.share), _pct(r.gain, 2)))
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        lines = [head, ""] + ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w)
                                        in enumerate(zip(row, widths))) for row in rows]
        if self.overall_value is not None and self.overall_baseline is not None:
            lines.append(f"overall: {self.metric} {_pct(self.overall_value)}, "
                         f"{self.baseline} {_pct(self.overall_baseline)}")
        lines += [f"skipped {tag}: {why}" for tag, why in self.skipped.items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def error_analysis(source: Any, *, baseline: str = "hlp", metric: str = "accuracy",
                   include_small: bool = True,
                   higher_is_better: bool | None = None) -> ErrorAnalysis:
    """Rank tags by potential gain = (baseline - metric) x share.

    ``source`` is a table (a frame or a list of dicts with ``tag``, the metric or ``accuracy``,
    ``baseline`` or the baseline's name, and ``share`` or ``count``; fractions, not percent),
    or an :class:`~prodml.evaluation.evaluate.EvaluationResult` whose slices are the tags and
    whose ``baselines[baseline]`` gives the baseline per slice (e.g. ``hlp.as_baseline()``).
    For a boolean tag feature only its true slice is a tag. Where lower is better (``rmse``,
    ``log_loss``...) the gap is metric - baseline.
    """
    better_high = (metric not in LOWER_IS_BETTER if higher_is_better is None
                   else higher_is_better)
    if _is_evaluation(source):
        return _from_result(source, baseline, metric, include_small, better_high)
    records = _records(source)
    rows = [_row_from_record(i, rec, metric, baseline, better_high)
            for i, rec in enumerate(records)]
    total = sum(r.count or 0 for r in rows)
    if any(math.isnan(r.share) for r in rows):  # shares from counts
        if total <= 0:
            raise InvalidInputError("share", None, "give each tag a share, or a count")
        rows = [TagGap(r.tag, r.value, r.baseline, (r.count or 0) / total, r.count,
                       r.small, better_high) for r in rows]
    return ErrorAnalysis(rows=_ranked(rows), metric=metric, baseline=baseline)


def _ranked(rows: list[TagGap]) -> tuple[TagGap, ...]:
    # gains are rounded so that floating-point noise does not break a true tie
    return tuple(sorted(rows, key=lambda r: (-round(r.gain, 12), -r.share, r.tag)))


def _records(source: Any) -> list[dict[str, Any]]:
    if isinstance(source, list) and all(isinstance(r, Mapping) for r in source):
        records = [dict(r) for r in source]
    else:
        try:
            records = to_arrow(source).to_pylist()
        except InvalidInputError:
            raise InvalidInputError("source", type(source).__name__, "must be a table (frame "
                                    "or list of dicts) or an EvaluationResult") from None
    if not records:
        raise InvalidInputError("source", "0 rows", "error analysis needs at least one tag")
    return records


def _row_from_record(i: int, rec: dict[str, Any], metric: str, baseline: str,
                     better_high: bool) -> TagGap:
    def pick(*names: str, required: bool = True) -> Any:
        for name in names:
            if rec.get(name) is not None:
                return rec[name]
        if required:
            raise InvalidInputError(f"rows[{i}]", rec, f"needs a {' or '.join(names)} value")
        return None

    tag = str(pick("tag", "slice", "name"))
    value = _fraction(pick(metric, "value"), f"rows[{i}].{metric}", metric)
    base = _fraction(pick(baseline, "baseline"), f"rows[{i}].{baseline}", metric)
    share_raw, count = pick("share", required=False), pick("count", required=False)
    if share_raw is None and count is None:
        raise InvalidInputError(f"rows[{i}]", rec, "needs a share or a count")
    share = math.nan if share_raw is None else _fraction(share_raw, f"rows[{i}].share", "share")
    if count is not None and (not isinstance(count, (int, np.integer)) or count < 0):
        raise InvalidInputError(f"rows[{i}].count", count, "must be a whole number >= 0")
    return TagGap(tag, value, base, share, None if count is None else int(count),
                  bool(rec.get("small", False)), better_high)


def _fraction(value: Any, where: str, metric: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidInputError(where, value, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(where, value, "must be a finite number")
    bounded = metric == "share" or metric not in LOWER_IS_BETTER
    if bounded and not 0 <= number <= 1:
        raise InvalidInputError(where, value, "must be a fraction in [0, 1] (write 94 % as "
                                "0.94)")
    return number


# -- from an EvaluationResult ---------------------------------------------------------------------
def _is_evaluation(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("slices", "overall", "baseline", "baselines"))


def is_complement(slice_: Any) -> bool:
    """The false slice of a boolean tag feature: the rows *without* the tag."""
    return slice_.feature is not None and str(slice_.value) in FALSE_VALUES and _boolean(slice_)


def tag_name(slice_: Any) -> str:
    """A boolean feature's true slice is named by its feature (the tag); others by name."""
    if slice_.feature is not None and str(slice_.value) in TRUE_VALUES and _boolean(slice_):
        return str(slice_.feature)
    return str(slice_.name)


def _boolean(slice_: Any) -> bool:
    return str(slice_.value) in TRUE_VALUES + FALSE_VALUES


def _from_result(result: Any, baseline: str, metric: str, include_small: bool,
                 better_high: bool) -> ErrorAnalysis:
    names = list(result.baselines or {})
    if baseline not in names:
        raise InvalidInputError("baseline", baseline, "is not a baseline of the evaluation "
                                f"(has: {', '.join(names) or 'none'}; pass baselines="
                                "{'hlp': hlp.as_baseline()} to evaluate)")
    if metric not in result.overall.metrics:
        raise InvalidInputError("metric", metric, "was not computed by the evaluation (has: "
                                + ", ".join(sorted(result.overall.metrics)) + ")")
    rows, skipped = [], {}
    for s in result.slices:
        if is_complement(s) or (s.small and not include_small):
            continue
        tag, value = tag_name(s), s.metrics.get(metric)
        base = result.baseline(baseline, slice=s.name, metric=metric)
        if value is None or base is None or math.isnan(value) or math.isnan(base):
            skipped[tag] = f"no {metric}" if value is None or math.isnan(value) else \
                f"no {baseline} value for this slice"
            continue
        rows.append(TagGap(tag, float(value), float(base), float(s.share), int(s.count),
                           bool(s.small), better_high))
    if not rows:
        raise InvalidInputError("baseline", baseline, "has no value for any slice of the "
                                "evaluation: its slice names must match the evaluation's")
    overall_base = result.baseline(baseline, slice="overall", metric=metric)
    return ErrorAnalysis(rows=_ranked(rows), metric=metric, baseline=baseline,
                         overall_value=float(result.overall.metrics[metric]),
                         overall_baseline=None if overall_base is None else float(overall_base),
                         skipped=skipped)


def _pct(x: float, digits: int = 1) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"
