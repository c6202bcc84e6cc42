"""Gates: bless a candidate only if it clears declared bounds where it matters.

A :class:`GateSpec` lists conditions, as TFMA's value and change thresholds do:

- **value bounds** on a metric, overall, on one slice, or on *every* slice of a feature
  (slices smaller than the evaluation's ``min_slice_size`` are skipped unless asked for);
- **change bounds** against a baseline evaluation (the current champion, an older system):
  absolute and relative, with the direction in which the metric improves;
- **fairness bounds** on a protected attribute's summary numbers (demographic parity ratio,
  equalized odds difference...) or on its Aequitas parity verdicts.

``gate(result, spec, baseline=...)`` returns a :class:`Blessing`: blessed or not, with every
condition's observed number, its bound and whether it passed.

>>> spec = GateSpec.model_validate({"name": "release", "conditions": [
...     {"metric": "accuracy", "min": 0.8},
...     {"metric": "accuracy", "slices": "age_band", "min": 0.7}]})
>>> [c.describe() for c in spec.conditions]
['accuracy >= 0.8 (overall)', 'accuracy >= 0.7 (every age_band slice)']
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prodml.errors import InvalidInputError
from prodml.specs import read_spec

LOWER_IS_BETTER = {"log_loss", "calibration_error", "ece", "mae", "rmse", "mape", "fpr",
                   "equalized_odds_difference", "demographic_parity_difference"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Change(_Strict):
    """How far a metric may move against the baseline (negative = may get worse by this)."""

    baseline: str = "baseline"
    direction: Literal["higher", "lower", "auto"] = "auto"
    min_absolute: float | None = None  # improvement must be >= this (e.g. -0.01: lose <= 1 pt)
    min_relative: float | None = None  # relative improvement must be >= this (e.g. -0.02)


class Condition(_Strict):
    """One bound: on a metric (of a slice) or on a fairness summary of an attribute."""

    name: str | None = None
    metric: str | None = None
    slice: str = "overall"
    slices: str | None = None  # a slice feature: the bound applies to each of its slices
    include_small: bool = False
    attribute: str | None = None  # fairness: the protected attribute
    parity: bool = False  # fairness: every Aequitas parity verdict must hold
    min: float | None = None
    max: float | None = None
    change: Change | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Condition":
        if self.attribute is None and self.metric is None:
            raise ValueError("a condition needs a metric, or an attribute for fairness")
        if not self.parity and self.min is None and self.max is None and self.change is None:
            raise ValueError("a condition needs min, max, change or parity")
        if self.slices is not None and self.slice != "overall":
            raise ValueError("give either slice (one) or slices (every slice of a feature)")
        return self

    def describe(self) -> str:
        if self.name:
            return self.name
        if self.attribute is not None:
            what = "parity" if self.parity else str(self.metric)
            where = f"for {self.attribute}"
        else:
            what = str(self.metric)
            where = (f"every {self.slices} slice" if self.slices else self.slice)
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        if self.change is not None:
            c = self.change
            moves = [f"{v:+g}{'' if k == 'abs' else ' relative'}" for k, v in
                     (("abs", c.min_absolute), ("rel", c.min_relative)) if v is not None]
            bounds.append(f"change vs {c.baseline} >= " + " and ".join(moves))
        return f"{what} {' and '.join(bounds) or 'holds'} ({where})".replace("  ", " ")


class GateSpec(_Strict):
    """A named list of conditions; YAML or dict on the way in."""

    name: str = "gate"
    conditions: list[Condition] = Field(min_length=1)

    @classmethod
    def load(cls, spec: "GateSpec | dict[str, Any] | str | os.PathLike[str]") -> "GateSpec":
        """Accept a spec, its dict, YAML text or a YAML file; errors name the field and rule."""
        if isinstance(spec, GateSpec):
            return spec
        spec, source = read_spec(spec, "gate spec")
        if not isinstance(spec, dict):
            raise InvalidInputError(source, type(spec).__name__, "must be a mapping with "
                                    "'conditions'")
        try:
            return cls.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            raise InvalidInputError(f"{source}: {where}", first.get("input"),
                                    first["msg"]) from None


class ConditionResult(_Strict):
    condition: str
    passed: bool
    observed: float | None
    bound: str
    slice: str | None = None
    detail: str = ""


class Blessing(_Strict):
    """The verdict: blessed only when every condition passed."""

    gate: str
    blessed: bool
    results: list[ConditionResult]

    @property
    def failures(self) -> list[ConditionResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> "Blessing":
        return cls.model_validate(value)

    def summary(self) -> str:
        verdict = "BLESSED" if self.blessed else "NOT BLESSED"
        lines = [f"{self.gate}: {verdict} ({len(self.failures)} of {len(self.results)} "
                 "conditions failed)"]
        for r in self.results:
            observed = "-" if r.observed is None else f"{r.observed:.4g}"
            where = f" [{r.slice}]" if r.slice and r.slice not in r.condition else ""
            lines.append(f"  {'ok  ' if r.passed else 'FAIL'} {r.condition}{where}: {observed} "
                         f"(bound {r.bound}){f'; {r.detail}' if r.detail else ''}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _improves_when_higher(metric: str, direction: str) -> bool:
    if direction != "auto":
        return direction == "higher"
    return metric not in LOWER_IS_BETTER


def _check_bounds(cond: Condition, observed: float | None, slice_name: str | None,
                  baseline_value: float | None = None) -> ConditionResult:
    bounds, ok, detail = [], observed is not None and not math.isnan(observed), ""
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        detail = "metric not available"
    if cond.min is not None:
        bounds.append(f">= {cond.min:g}")
        ok = ok and observed >= cond.min  # type: ignore[operator]
    if cond.max is not None:
        bounds.append(f"<= {cond.max:g}")
        ok = ok and observed <= cond.max  # type: ignore[operator]
    if cond.change is not None:
        change = cond.change
        if baseline_value is None or math.isnan(baseline_value):
            ok, detail = False, f"baseline {change.baseline!r} has no value here"
        elif ok:
            sign = 1.0 if _improves_when_higher(str(cond.metric), change.direction) else -1.0
            gain = sign * (observed - baseline_value)  # type: ignore[operator]
            relative = gain / abs(baseline_value) if baseline_value else math.inf
            detail = f"baseline {baseline_value:.4g}, improvement {gain:+.4g} ({relative:+.2%})"
            if change.min_absolute is not None:
                bounds.append(f"improvement >= {change.min_absolute:+g}")
                ok = ok and gain >= change.min_absolute
            if change.min_relative is not None:
                bounds.append(f"relative improvement >= {change.min_relative:+g}")
                ok = ok and relative >= change.min_relative
    return ConditionResult(condition=cond.describe(), passed=bool(ok), observed=observed,
                           bound=" and ".join(bounds), slice=slice_name, detail=detail)


def gate(result: Any, spec: GateSpec | dict[str, Any] | str | os.PathLike[str], *,
         baseline: Any = None, baselines: dict[str, Any] | None = None) -> Blessing:
    """Check an :class:`~prodml.evaluation.evaluate.EvaluationResult` against ``spec``.

    ``baseline`` (or ``baselines={name: result}``) are evaluations of the comparison models,
    on the same data and slices, for change bounds.
    """
    spec = GateSpec.load(spec)
    named = dict(baselines or {})
    if baseline is not None:
        named.setdefault("baseline", baseline)
    outcomes: list[ConditionResult] = []
    for cond in spec.conditions:
        if cond.attribute is not None:
            outcomes.extend(_fairness(result, cond))
            continue
        other = None
        if cond.change is not None:
            other = named.get(cond.change.baseline)
            if other is None:
                raise InvalidInputError("baseline", cond.change.baseline,
                                        f"condition {cond.describe()!r} compares with a "
                                        "baseline evaluation: pass baseline= or baselines=")
        for slice_name in _slices(result, cond):
            observed = _metric(result, str(cond.metric), slice_name)
            before = _metric(other, str(cond.metric), slice_name) if other is not None else None
            outcomes.append(_check_bounds(cond, observed, slice_name, before))
    return Blessing(gate=spec.name, blessed=all(o.passed for o in outcomes), results=outcomes)


def _slices(result: Any, cond: Condition) -> list[str]:
    if cond.slices is None:
        result.slice(cond.slice)  # a clear error for an unknown slice
        return [cond.slice]
    chosen = [s.name for s in result.slices if s.feature == cond.slices
              and (cond.include_small or not s.small)]
    if not chosen:
        features = sorted({s.feature for s in result.slices if s.feature})
        raise InvalidInputError("slices", cond.slices, "no such slice feature in the evaluation"
                                f" (has: {', '.join(features) or 'none'})")
    return chosen


def _metric(result: Any, metric: str, slice_name: str) -> float | None:
    try:
        return float(result.metric(metric, slice_name))
    except (InvalidInputError, KeyError):
        return None


def _fairness(result: Any, cond: Condition) -> list[ConditionResult]:
    report = result.fairness.get(cond.attribute) if result.fairness else None
    if report is None:
        raise InvalidInputError("attribute", cond.attribute, "was not evaluated for fairness "
                                "(pass protected=[...] to evaluate)")
    if cond.parity:
        rows = []
        for group, by_metric in report.parity.items():
            for metric, verdict in by_metric.items():
                if cond.metric is not None and metric != cond.metric:
                    continue
                rows.append(ConditionResult(
                    condition=cond.describe(), passed=bool(verdict["ok"]),
                    observed=verdict.get("ratio"), bound="0.8 <= ratio <= 1.25",
                    slice=f"{cond.attribute}={group}", detail=f"{metric} parity"))
        return rows
    observed = getattr(report, str(cond.metric), None)
    if observed is None:
        raise InvalidInputError("metric", cond.metric, "is not a fairness summary; use e.g. "
                                "demographic_parity_ratio or equalized_odds_difference")
    return [_check_bounds(cond, float(observed), cond.attribute)]
