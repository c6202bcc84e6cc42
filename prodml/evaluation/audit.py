"""Audit: the ways a system might go wrong, each written down as a named check with a bound.

The course's auditing framework: brainstorm the risks (performance on a group, a gap between
groups, how often an unacceptable output appears), then measure each on the right slice.
A :class:`Check` is one risk: a metric on one slice (``slice=``), the spread of a metric across
a feature's groups (``across=`` + ``max_gap``), or a share of rows flagged by a predicate (a
function, SQL text or Polars expression over the outputs). ``audit`` runs them all and reports
them together, each with its observed value, its bound and the evidence.

>>> import pandas as pd
>>> outputs = pd.DataFrame({"label": [1, 0, 1, 0] * 25, "prediction": [1, 0, 1, 1] * 25,
...                         "gender": ["f", "f", "m", "m"] * 25,
...                         "text": ["ok", "fine", "ok", "darn"] * 25})
>>> report = audit(outputs, [
...     Check("accuracy per gender within 2 points", metric="accuracy", across="gender",
...           max_gap=0.02),
...     Check("rude words below 0.1 %", predicate="text = 'darn'", max=0.001)],
...     label="label", prediction="prediction")
>>> report.ok, [round(r.observed, 3) for r in report.results]
(False, [0.5, 0.25])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import polars as pl

from prodml.errors import InvalidInputError
from prodml.specs import read_spec
from prodml.evaluation.error_analysis import (_is_evaluation, _polars, boolean_column,
                                              slice_masks, tag_name)

MIN_GROUP_ROWS = 30


@dataclass(frozen=True)
class Check:
    """One risk: a name (what could go wrong), where to look, what to measure, its bound."""

    name: str
    metric: str | None = None
    slice: str | None = None
    across: str | None = None
    predicate: Callable[[Any], Any] | str | pl.Expr | None = None
    min: float | None = None
    max: float | None = None
    max_gap: float | None = None
    include_small: bool = False

    def __post_init__(self) -> None:
        where = f"check {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError("check.name", self.name, "every check needs a name")
        if (self.metric is None) == (self.predicate is None):
            raise InvalidInputError(where, self.metric or self.predicate,
                                    "give exactly one of metric or predicate")
        if self.predicate is not None and (self.slice or self.across):
            raise InvalidInputError(where, self.slice or self.across, "a predicate check looks"
                                    " at every row: leave out slice and across")
        if self.slice is not None and self.across is not None:
            raise InvalidInputError(where, self.across, "give either slice (one) or across (a "
                                    "feature's groups)")
        for bound in ("min", "max", "max_gap"):
            value = getattr(self, bound)
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not math.isfinite(value)):
                raise InvalidInputError(f"{where}.{bound}", value, "must be a finite number")
        if self.min is None and self.max is None and self.max_gap is None:
            raise InvalidInputError(where, None, "needs a bound: min, max or max_gap")
        if self.max_gap is not None and self.across is None:
            raise InvalidInputError(f"{where}.max_gap", self.max_gap, "needs across=<feature>")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidInputError(where, (self.min, self.max), "min must be <= max")

    @property
    def bound(self) -> str:
        parts = [f"gap <= {self.max_gap:g}"] if self.max_gap is not None else []
        prefix = "every group " if self.across is not None else ""
        parts += [f"{prefix}>= {self.min:g}"] if self.min is not None else []
        parts += [f"{prefix}<= {self.max:g}"] if self.max is not None else []
        return " and ".join(parts)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], where: str = "check") -> Check:
        """A check from its dict (YAML) form; a predicate there is SQL text."""
        if not isinstance(spec, Mapping):
            raise InvalidInputError(where, type(spec).__name__, "must be a mapping")
        known = [f.name for f in fields(cls)]
        for key in spec:
            if key not in known:
                raise InvalidInputError(f"{where}.{key}", spec[key], "unknown field (use: "
                                        + ", ".join(known) + ")")
        if spec.get("predicate") is not None and not isinstance(spec["predicate"], str):
            raise InvalidInputError(f"{where}.predicate", spec["predicate"], "must be SQL text")
        return cls(**dict(spec))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.predicate is not None and not isinstance(self.predicate, str):
            out["predicate"] = getattr(self.predicate, "__name__", type(self.predicate).__name__)
        return {k: v for k, v in out.items() if v is not None and v is not False}


def load_checks(spec: Any) -> list[Check]:
    """Checks from a list of checks/dicts, ``{"checks": [...]}``, YAML text or a YAML file.

    >>> [c.name for c in load_checks('''
    ... checks:
    ...   - {name: f1 on seniors >= 0.8, metric: f1, slice: seniors, min: 0.8}
    ... ''')]
    ['f1 on seniors >= 0.8']
    """
    spec, source = read_spec(spec, "checks")
    if isinstance(spec, (Check, Mapping)) and not (isinstance(spec, Mapping) and
                                                   "checks" in spec):
        spec = [spec]
    if isinstance(spec, Mapping):
        spec = spec["checks"]
    if not isinstance(spec, (list, tuple)) or not spec:
        raise InvalidInputError(source, type(spec).__name__, "must be a non-empty list of "
                                "checks")
    return [c if isinstance(c, Check) else Check.from_dict(c, f"{source}[{i}]")
            for i, c in enumerate(spec)]


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    observed: float
    bound: str
    evidence: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "observed": _json(self.observed),
                "bound": self.bound, "evidence": self.evidence, "detail": self.detail}


@dataclass(frozen=True)
class AuditReport:
    """Every check's verdict; ``ok`` only when all passed."""

    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise InvalidInputError("check", name, "is not in the audit")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": len(self.failures),
                "results": [r.to_dict() for r in self.results]}

    def summary(self) -> str:
        lines = [(f"Audit: {'OK' if self.ok else 'FAILED'} ({len(self.failures)} of "
                 f"{len(self.results)} checks failed)")]
        for r in self.results:
            observed = "-" if math.isnan(r.observed) else f"{r.observed:.4g}"
            lines.append(f"  {'ok  ' if r.passed else 'FAIL'} {r.name}: {observed} (bound "
                         f"{r.bound}){f'; {r.detail}' if r.detail else ''}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def audit(source: Any, checks: Any, *, data: Any = None, label: str | None = None,
          prediction: str | None = None, score: str | None = None,
          min_group_rows: int = MIN_GROUP_ROWS) -> AuditReport:
    """Run ``checks`` on an evaluation result or on a frame of outputs.

    From an :class:`~prodml.evaluation.evaluate.EvaluationResult` metrics come from its slices
    (a boolean tag's slice is found by the tag's name) and predicates run on ``data``. From a
    frame, metrics are computed from the ``label`` and ``prediction`` (``score`` for
    ``roc_auc``) columns; ``slice="seniors"`` is a boolean column, ``"age=60+"`` a value of a
    column, anything else SQL text (``"age >= 65"``); groups smaller than ``min_group_rows``
    are left out of ``across`` checks unless the check says ``include_small``.
    """
    checks = load_checks(checks)
    evaluation = source if _is_evaluation(source) else None
    frame = None if evaluation is not None else source
    if frame is not None and data is None:
        data = frame
    measured = _FrameMetrics(frame, label, prediction, score, min_group_rows) \
        if frame is not None else None
    results = []
    for check in checks:
        if check.predicate is not None:
            results.append(_predicate(check, data))
        elif check.across is not None:
            groups = (_result_groups(evaluation, check) if evaluation is not None
                      else measured.groups(check))  # type: ignore[union-attr]
            results.append(_across(check, *groups))
        else:
            value, evidence = (_result_value(evaluation, check) if evaluation is not None
                               else measured.value(check))  # type: ignore[union-attr]
            results.append(_bounded(check, value, evidence))
    return AuditReport(results=tuple(results))


# -- checks ---------------------------------------------------------------------------------
def _bounded(check: Check, value: float, evidence: dict[str, Any]) -> CheckResult:
    if math.isnan(value):
        return CheckResult(check.name, False, value, check.bound, evidence, "not available")
    ok = (check.min is None or value >= check.min) and (check.max is None or value <= check.max)
    return CheckResult(check.name, bool(ok), value, check.bound, evidence)


def _across(check: Check, values: dict[str, float], left_out: dict[str, str]) -> CheckResult:
    usable = {k: v for k, v in values.items() if not math.isnan(v)}
    left_out = {**left_out, **{k: "metric not available" for k in values if k not in usable}}
    evidence = {"groups": usable, "left_out": left_out}
    if len(usable) < (2 if check.max_gap is not None else 1):
        return CheckResult(check.name, False, math.nan, check.bound, evidence,
                           f"too few groups of {check.across} to compare ({len(usable)})")
    worst, best = min(usable, key=usable.get), max(usable, key=usable.get)  # type: ignore
    evidence.update(lowest=worst, highest=best)
    ok = ((check.min is None or usable[worst] >= check.min)
          and (check.max is None or usable[best] <= check.max))
    if check.max_gap is not None:
        gap = usable[best] - usable[worst]
        return CheckResult(check.name, bool(ok and gap <= check.max_gap), gap, check.bound,
                           evidence, f"{best} {usable[best]:.4g} vs {worst} "
                           f"{usable[worst]:.4g}")
    observed = usable[worst] if check.min is not None else usable[best]
    return CheckResult(check.name, bool(ok), observed, check.bound, evidence)


def _predicate(check: Check, data: Any) -> CheckResult:
    if data is None:
        raise InvalidInputError("data", None, f"check {check.name!r} has a predicate: pass the "
                                "outputs as data=")
    predicate, frame = check.predicate, _polars(data, "data")
    if callable(predicate) and not isinstance(predicate, pl.Expr):
        try:
            answer = predicate(data)
        except Exception as exc:  # noqa: BLE001 - the user's code: say which check failed
            raise InvalidInputError(f"check {check.name!r}.predicate", type(predicate).__name__,
                                    f"failed: {type(exc).__name__}: {exc}") from None
        if isinstance(answer, (int, float, np.number)) and not isinstance(answer, bool):
            return _bounded(check, float(answer), {"rows": frame.height})
        predicate = answer
    flags = boolean_column(frame, data, "flagged", predicate, f"check {check.name!r}.predicate")
    flagged = int(flags.sum())
    share = flagged / frame.height if frame.height else math.nan
    return _bounded(check, share, {"flagged": flagged, "rows": frame.height})


# -- values from an EvaluationResult ------------------------------------------------------------
def _result_slice(result: Any, name: str | None) -> Any:
    if name in (None, "overall"):
        return result.overall
    for s in result.slices:
        if s.name == name:
            return s
    for s in result.slices:
        if tag_name(s) == name:
            return s
    raise InvalidInputError("slice", name, "is not a slice of the evaluation (has: "
                            + ", ".join(s.name for s in result.slices) + ")")


def _slice_metric(s: Any, metric: str) -> float:
    if metric not in s.metrics:
        raise InvalidInputError("metric", metric, f"was not computed for {s.name} (has: "
                                + ", ".join(sorted(s.metrics)) + ")")
    value = s.metrics[metric]
    return math.nan if value is None else float(value)


def _result_value(result: Any, check: Check) -> tuple[float, dict[str, Any]]:
    s = _result_slice(result, check.slice)
    return _slice_metric(s, str(check.metric)), {"slice": s.name, "count": s.count,
                                                 "small": s.small}


def _result_groups(result: Any, check: Check) -> tuple[dict[str, float], dict[str, str]]:
    groups = [s for s in result.slices if s.feature == check.across]
    if not groups:
        features = sorted({s.feature for s in result.slices if s.feature})
        raise InvalidInputError("across", check.across, "is not a slice feature of the "
                                f"evaluation (has: {', '.join(features) or 'none'})")
    values, left_out = {}, {}
    for s in groups:
        if s.small and not check.include_small:
            left_out[s.name] = f"small ({s.count} rows)"
        else:
            values[s.name] = _slice_metric(s, str(check.metric))
    return values, left_out


# -- values from a frame of outputs -------------------------------------------------------------
class _FrameMetrics:
    def __init__(self, data: Any, label: str | None, prediction: str | None,
                 score: str | None, min_rows: int) -> None:
        self.frame = _polars(data, "source")
        self.columns = {"label": label, "prediction": prediction, "score": score}
        self.min_rows = min_rows

    def _column(self, role: str, metric: str) -> np.ndarray:
        name = self.columns[role]
        if name is None or name not in self.frame.columns:
            raise InvalidInputError(role, name, f"metric {metric!r} needs the {role} column "
                                    f"of the outputs (columns: {', '.join(self.frame.columns)})")
        return self.frame[name].to_numpy()

    def _measure(self, metric: str, mask: np.ndarray) -> float:
        if not mask.any():
            return math.nan
        score = self._column("score", metric)[mask] if metric == "roc_auc" else None
        return frame_metric(metric, self._column("label", metric)[mask],
                            self._column("prediction", metric)[mask] if metric != "roc_auc"
                            else None, score)

    def _mask(self, name: str | None) -> np.ndarray:
        if name in (None, "overall"):
            return np.ones(self.frame.height, dtype=bool)
        column = name if name in self.frame.columns else name.split("=", 1)[0]
        if column in self.frame.columns:
            masks = slice_masks(self.frame, [column])
            if name not in masks:
                raise InvalidInputError("slice", name, "is not a slice of the outputs (has: "
                                        + ", ".join(masks) + ")")
            return masks[name]
        try:  # SQL text over the outputs' columns
            return boolean_column(self.frame, self.frame, name, name, "slice").to_numpy()
        except InvalidInputError:
            raise InvalidInputError("slice", name, "is neither a boolean column, column=value "
                                    "nor a SQL condition over the outputs' columns") from None

    def value(self, check: Check) -> tuple[float, dict[str, Any]]:
        mask = self._mask(check.slice)
        return (self._measure(str(check.metric), mask),
                {"slice": check.slice or "overall", "count": int(mask.sum())})

    def groups(self, check: Check) -> tuple[dict[str, float], dict[str, str]]:
        if check.across not in self.frame.columns:
            raise InvalidInputError("across", check.across, "is not a column of the outputs")
        values, left_out = {}, {}
        for name, mask in slice_masks(self.frame, [check.across]).items():
            rows = int(mask.sum())
            if rows < self.min_rows and not check.include_small:
                left_out[name] = f"small ({rows} rows)"
            else:
                values[name] = self._measure(str(check.metric), mask)
        return values, left_out


CLASSIFICATION = ("accuracy", "error_rate", "balanced_accuracy", "precision", "recall", "f1",
                  "fpr", "fnr", "selection_rate", "roc_auc")
REGRESSION = ("mae", "mse", "rmse", "r2")


def frame_metric(metric: str, y: Any, pred: Any = None, score: Any = None) -> float:
    """One metric from labels and predictions (``score`` for ``roc_auc``), as scikit-learn
    defines it; precision, recall and f1 are binary for 0/1 or boolean labels, else macro.

    >>> frame_metric("f1", [1, 1, 0, 0], [1, 0, 0, 0]), frame_metric("fpr", [0, 0, 1], [1, 0, 1])
    (0.6666666666666666, 0.5)
    """
    from sklearn import metrics as m

    if metric not in CLASSIFICATION + REGRESSION:
        raise InvalidInputError("metric", metric, "must be one of "
                                + ", ".join(CLASSIFICATION + REGRESSION))
    y = np.asarray(y)
    if metric == "roc_auc":
        if score is None:
            raise InvalidInputError("score", None, "roc_auc needs a score column")
        return float(m.roc_auc_score(y, np.asarray(score))) if len(np.unique(y)) == 2 \
            else math.nan
    pred = np.asarray(pred)
    if metric in REGRESSION:
        error = pred.astype(float) - y.astype(float)
        return {"mae": lambda: float(np.mean(np.abs(error))),
                "mse": lambda: float(np.mean(error ** 2)),
                "rmse": lambda: float(np.sqrt(np.mean(error ** 2))),
                "r2": lambda: float(m.r2_score(y, pred))}[metric]()
    if metric in ("accuracy", "error_rate"):
        accuracy = float(np.mean(y == pred))
        return accuracy if metric == "accuracy" else 1.0 - accuracy
    if metric == "balanced_accuracy":
        return float(m.balanced_accuracy_score(y, pred))
    binary = set(np.unique(np.concatenate([y, pred])).tolist()) <= {0, 1}
    if metric in ("fpr", "fnr", "selection_rate"):
        if not binary:
            raise InvalidInputError("metric", metric, "needs 0/1 or boolean labels")
        y, pred = y.astype(bool), pred.astype(bool)
        if metric == "selection_rate":
            return float(pred.mean())
        negatives = ~y if metric == "fpr" else y
        wrong = pred != y
        return float(wrong[negatives].mean()) if negatives.any() else math.nan
    scorer = {"precision": m.precision_score, "recall": m.recall_score, "f1": m.f1_score}[metric]
    return float(scorer(y, pred, average="binary" if binary else "macro", zero_division=np.nan))


def _json(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x
