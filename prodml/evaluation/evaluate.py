"""``evaluate``: a model's metrics overall and per slice, with intervals, fairness and baselines.

One call scores a model (or its predictions) on labelled data and returns an
:class:`EvaluationResult`: the overall metrics, every slice's (see
:mod:`prodml.evaluation.slices`), the critical subsets', bootstrap intervals (see
:mod:`prodml.evaluation.bootstrap`), the confusion matrix, a fairness report per protected
attribute and the baselines to compare with. The metrics are scikit-learn's definitions (see
:mod:`prodml.evaluation.metrics`), computed for all slices in a few vectorised passes.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"y": rng.integers(0, 2, 400), "city": rng.choice(["a", "b"], 400)})
>>> df["p"] = np.clip(df["y"] * 0.6 + rng.random(400) * 0.5, 0, 1)
>>> r = evaluate("p", df, label="y", slices=["city"], bootstrap=50)
>>> [s.name for s in r.slices], round(r.metric("roc_auc"), 3) == round(r.overall.metrics["roc_auc"], 3)
(['city=a', 'city=b'], True)
>>> r.baseline("hlp") is None
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: baseline='hlp': no such baseline (has: none)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError
from prodml.evaluation.bootstrap import family_intervals
from prodml.evaluation.fairness import FairnessReport, _float, _num, report_from_codes
from prodml.evaluation.inputs import outcomes_for
from prodml.evaluation.metrics import (HEADLINE, ConfusionMatrix, confusion_cells,
                                       weighted_metrics)
from prodml.evaluation.slices import critical_subsets, families


@dataclass(frozen=True)
class SliceMetrics:
    """One slice's size, metrics and bootstrap intervals."""

    name: str
    feature: str | None
    value: str | None
    count: int
    share: float
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    small: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "feature": self.feature, "value": self.value,
                "count": self.count, "share": self.share, "small": self.small,
                "metrics": {k: _num(v) for k, v in self.metrics.items()},
                "intervals": {k: [_num(lo), _num(hi)] for k, (lo, hi) in self.intervals.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SliceMetrics:
        return cls(name=d["name"], feature=d["feature"], value=d["value"], count=int(d["count"]),
                   share=float(d["share"]), small=bool(d["small"]),
                   metrics={k: _float(v) for k, v in d["metrics"].items()},
                   intervals={k: (_float(v[0]), _float(v[1]))
                              for k, v in d["intervals"].items()})


@dataclass(frozen=True)
class MetricDelta:
    slice: str
    metric: str
    value: float
    other: float

    @property
    def delta(self) -> float:
        return self.value - self.other


@dataclass(frozen=True)
class EvaluationComparison:
    """Per slice and metric: this evaluation's value, the other's, and ``delta = this - other``."""

    rows: tuple[MetricDelta, ...]
    headline: tuple[str, ...] = ()

    def delta(self, metric: str, slice: str = "overall") -> float:
        for r in self.rows:
            if r.metric == metric and r.slice == slice:
                return r.delta
        raise InvalidInputError("metric", metric, f"is not compared on slice {slice!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [{"slice": r.slice, "metric": r.metric, "value": _num(r.value),
                          "other": _num(r.other), "delta": _num(r.delta)} for r in self.rows]}

    def summary(self) -> str:
        shown = [r for r in self.rows if not self.headline or r.metric in self.headline]
        table = [("slice", "metric", "this", "other", "delta")]
        table += [(r.slice, r.metric, f"{r.value:.4f}", f"{r.other:.4f}", f"{r.delta:+.4f}")
                  for r in shown]
        return _columns(table, left=2)

    def __str__(self) -> str:
        return self.summary()


def _columns(rows: list[tuple[str, ...]], left: int = 1) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) if i < left else v.rjust(w)
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


@dataclass(frozen=True)
class EvaluationResult:
    """Everything ``evaluate`` found; prints as a table, renders as HTML, round-trips a dict."""

    task: str
    label: str
    overall: SliceMetrics
    slices: tuple[SliceMetrics, ...]
    critical: tuple[SliceMetrics, ...]
    confusion: ConfusionMatrix | None
    fairness: dict[str, FairnessReport]
    baselines: dict[str, EvaluationResult | dict[str, float]]
    classes: tuple[Any, ...] = ()
    positive_label: Any = None
    settings: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def _by_name(self) -> dict[str, SliceMetrics]:
        out: dict[str, SliceMetrics] = {}
        for s in (self.overall, *self.slices, *self.critical):
            out.setdefault(s.name, s)
        return out

    @property
    def slice_names(self) -> list[str]:
        return list(self._by_name)

    def slice(self, name: str) -> SliceMetrics:
        """A slice by name (``"overall"``, ``"city=a"``, ``"critical:vip"``...)."""
        found = self._by_name.get(name)
        if found is None:
            names = self.slice_names
            shown = ", ".join(names[:25]) + (", ..." if len(names) > 25 else "")
            raise InvalidInputError("slice", name, f"is not in the evaluation (has: {shown})")
        return found

    def metric(self, name: str, slice: str = "overall") -> float:
        s = self.slice(slice)
        if name not in s.metrics:
            raise InvalidInputError("metric", name, f"was not computed for {slice} (has: "
                                    f"{', '.join(m for m in s.metrics if '[' not in m)})")
        return s.metrics[name]

    def baseline(self, name: str, slice: str = "overall",
                 metric: str = "accuracy") -> float | None:
        """A baseline's value of ``metric`` on ``slice``; None where it has none. Numeric
        baselines (human-level performance) are accuracies."""
        if name not in self.baselines:
            raise InvalidInputError("baseline", name, "no such baseline (has: "
                                    f"{', '.join(self.baselines) or 'none'})")
        b = self.baselines[name]
        if isinstance(b, EvaluationResult):
            try:
                return b.metric(metric, slice)
            except InvalidInputError:
                return None
        return b.get(slice) if metric == "accuracy" else None

    def compare(self, other: EvaluationResult) -> EvaluationComparison:
        """Deltas (self - other) on every slice and metric both evaluations have."""
        rows = []
        for s in (self.overall, *self.slices, *self.critical):
            theirs = other._by_name.get(s.name)
            if theirs is None:
                continue
            rows += [MetricDelta(s.name, m, v, theirs.metrics[m]) for m, v in s.metrics.items()
                     if m in theirs.metrics]
        return EvaluationComparison(tuple(rows), HEADLINE[self.task])

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "label": self.label,
                "classes": [_plain(c) for c in self.classes],
                "positive_label": _plain(self.positive_label), "settings": dict(self.settings),
                "overall": self.overall.to_dict(), "slices": [s.to_dict() for s in self.slices],
                "critical": [s.to_dict() for s in self.critical],
                "confusion": self.confusion.to_dict() if self.confusion is not None else None,
                "fairness": {k: v.to_dict() for k, v in self.fairness.items()},
                "baselines": {k: ({"evaluation": v.to_dict()} if isinstance(v, EvaluationResult)
                                  else {"levels": dict(v)}) for k, v in self.baselines.items()}}

    def to_json(self) -> str:
        import orjson
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        baselines: dict[str, Any] = {}
        for k, v in d.get("baselines", {}).items():
            baselines[k] = (cls.from_dict(v["evaluation"]) if "evaluation" in v
                            else {s: float(x) for s, x in v["levels"].items()})
        return cls(task=d["task"], label=d["label"], classes=tuple(d.get("classes", ())),
                   positive_label=d.get("positive_label"), settings=dict(d.get("settings", {})),
                   overall=SliceMetrics.from_dict(d["overall"]),
                   slices=tuple(SliceMetrics.from_dict(s) for s in d["slices"]),
                   critical=tuple(SliceMetrics.from_dict(s) for s in d["critical"]),
                   confusion=(ConfusionMatrix.from_dict(d["confusion"]) if d.get("confusion")
                              else None),
                   fairness={k: FairnessReport.from_dict(v) for k, v in d["fairness"].items()},
                   baselines=baselines)

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        import orjson
        return cls.from_dict(orjson.loads(text))

    def summary(self) -> str:
        """A plain-text table: one row per slice, the headline metrics with their intervals."""
        names = [m for m in HEADLINE[self.task] if m in self.overall.metrics]
        head = (f"Evaluation ({self.task}) of {self.label!r} on {self.overall.count:,} rows"
                + (f"; classes {', '.join(map(str, self.classes))}" if self.classes else "")
                + (f"; positive {self.positive_label}" if self.positive_label is not None
                   else ""))
        rows = [("slice", "rows", *names)]
        for s in (self.overall, *self.slices, *self.critical):
            cells = []
            for m in names:
                v = s.metrics.get(m, math.nan)
                ci = s.intervals.get(m)
                cells.append("-" if math.isnan(v) else f"{v:.3f}"
                             + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
            rows.append((s.name + (" (small)" if s.small else ""), f"{s.count:,}", *cells))
        lines = [head, "", _columns(rows)]
        if any(s.small for s in self.slices):
            lines.append(f"(small: fewer than {self.settings.get('min_slice_size', '?')} rows; "
                         "left out of worst-slice checks)")
        for report in self.fairness.values():
            lines += ["", report.summary()]
        for name in self.baselines:
            value = self.baseline(name, metric=names[0]) if names else None
            lines.append(f"baseline {name}: {names[0] if names else ''} "
                         f"{'-' if value is None else f'{value:.4f}'} overall")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_html(self) -> str:
        """A self-contained page (plotly.js inlined once, no network)."""
        from prodml.evaluation.report import evaluation_page
        return evaluation_page(self)

    def write_html(self, path: Any) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_html())


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _check_settings(min_slice_size: Any, bootstrap: Any, ci: Any, threshold: Any,
                    task: Any) -> None:
    checks = [("min_slice_size", min_slice_size, isinstance(min_slice_size, int)
               and min_slice_size >= 0, "must be an integer >= 0"),
              ("bootstrap", bootstrap, isinstance(bootstrap, int) and bootstrap >= 0,
               "must be an integer >= 0 (0 disables intervals)"),
              ("ci", ci, isinstance(ci, (int, float)) and 0 < ci < 1, "must be in (0, 1)"),
              ("threshold", threshold, isinstance(threshold, (int, float))
               and 0 <= threshold <= 1, "must be in [0, 1]"),
              ("task", task, task in (None, "classification", "regression"),
               "must be 'classification', 'regression' or None (inferred)")]
    for name, value, ok, rule in checks:
        if not ok or isinstance(value, bool):
            raise InvalidInputError(name, value, rule)


def evaluate(model_or_predictions: Any, data: Any, label: str = "y", *, slices: Any = None,
             critical: Any = None, protected: Any = None, baselines: dict[str, Any] | None = None,
             min_slice_size: int = 30, bootstrap: int = 200, ci: float = 0.95,
             threshold: float = 0.5, positive_label: Any = None, task: str | None = None,
             seed: int = 0, classes: Any = None, features: list[str] | None = None,
             ) -> EvaluationResult:
    """Score a model, or its predictions, on labelled ``data``, overall and per slice.

    ``model_or_predictions``: a fitted model (``predict_proba`` when it has one, else
    ``predict``; fed ``features`` or its ``feature_names_in_``, else every column but the
    label), a column of ``data``, an array of labels, of positive-class probabilities (1-D) or
    of class probabilities (``(n, k)``, columns in ``classes`` order: the model's ``classes_``,
    else the sorted labels). ``slices``: a spec or a list of them (columns, crosses, bins,
    predicates). ``critical``: subsets whose errors cost more, with optional weights.
    ``protected``: attributes for the fairness report (binary tasks, or ``positive_label``).
    ``baselines``: ``{name: predictions or model}`` (evaluated the same way), ``{name:
    accuracy}`` or ``{name: {slice: accuracy}}`` (human-level performance). Probabilities
    ``>= threshold`` predict the positive class. ``bootstrap`` replicates (0: none) give
    ``ci`` percentile intervals; ``seed`` makes them repeatable.
    """
    _check_settings(min_slice_size, bootstrap, ci, threshold, task)
    frame = pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        raise InvalidInputError("data", "0 rows", "needs at least one labelled row")
    if not isinstance(label, str) or label not in frame.columns:
        raise InvalidInputError("label", label, "no such column in data (has: "
                                f"{', '.join(frame.columns[:20])})")
    fams = families(frame, slices)
    subsets = critical_subsets(frame, critical)
    attributes = [protected] if isinstance(protected, (str, tuple)) else list(protected or [])
    guarded = [f for spec in attributes for f in families(frame, [spec], "protected")]
    if any(f.kind == "predicate" for f in guarded):
        raise InvalidInputError("protected", attributes, "must be columns (or crosses or bins "
                                "of columns), not predicates")
    settings = {"min_slice_size": min_slice_size, "bootstrap": bootstrap, "ci": ci,
                "threshold": threshold, "seed": seed}
    options = {"threshold": threshold, "positive_label": positive_label, "task": task,
               "classes": classes, "features": features}

    def one(source: Any, field: str) -> EvaluationResult:
        outcomes, positive = outcomes_for(source, frame, label, field=field, **options)
        return _evaluate(outcomes, positive, label, fams, subsets, guarded, settings)

    result = one(model_or_predictions, "predictions")
    kept: dict[str, Any] = {}
    for name, value in (baselines or {}).items():
        field_name = f"baselines[{name!r}]"
        if isinstance(value, EvaluationResult):
            kept[name] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            kept[name] = {"overall": float(value)}
        elif isinstance(value, dict):
            unknown = [k for k in value if k not in result.slice_names]
            if unknown or not all(isinstance(v, (int, float)) for v in value.values()):
                raise InvalidInputError(field_name, unknown or value, "must map slice names "
                                        "of this evaluation to numbers (accuracy)")
            kept[name] = {k: float(v) for k, v in value.items()}
        else:
            kept[name] = one(value, field_name)
    return replace(result, baselines=kept)


def _evaluate(outcomes: Any, positive: Any, label: str, fams: list[Any], subsets: list[Any],
              guarded: list[Any], settings: dict[str, Any]) -> EvaluationResult:
    rng = np.random.default_rng(settings["seed"])
    n, small_below = outcomes.n, settings["min_slice_size"]
    replicates, ci = settings["bootstrap"], settings["ci"]

    def build(codes: Any, n_groups: int, naming: list[tuple[str, str | None, str | None]],
              extra: list[dict[str, float]] | None = None) -> list[SliceMetrics]:
        fam = outcomes.family(codes, n_groups)
        intervals = family_intervals(outcomes, fam, codes, replicates, ci, rng)
        out = []
        for g, (name, feature, value) in enumerate(naming):
            count = int(fam.counts[g])
            metrics = {**fam.slice_metrics(g), **(extra[g] if extra else {})}
            out.append(SliceMetrics(name, feature, value, count, count / n if n else 0.0,
                                    metrics, intervals[g], count < small_below))
        return out

    overall = build(None, 1, [("overall", None, None)])[0]
    sliced: list[SliceMetrics] = []
    for f in fams:
        sliced += build(f.codes, f.n_groups, [(name, f.feature, value) for name, value in
                                             zip(f.names, f.values)])
    critical = []
    for sub in subsets:
        extra = ([weighted_metrics(outcomes, sub.mask, sub.weights)]
                 if sub.weights is not None else None)
        critical += build(np.where(sub.mask, 0, -1), 1,
                          [(f"critical:{sub.name}", "critical", sub.name)], extra)
    confusion = None
    if outcomes.task == "classification":
        cells = confusion_cells(None, 1, outcomes.y, outcomes.pred, outcomes.k)
        confusion = ConfusionMatrix(tuple(_plain(c) for c in outcomes.classes),
                                    cells[0].astype(np.int64))
    fairness = {}
    if guarded:
        if outcomes.task != "classification" or positive is None:
            raise InvalidInputError("protected", [f.feature for f in guarded],
                                    "fairness needs a binary classification, or a multiclass "
                                    "one with positive_label= (the favourable class)")
        pos = outcomes.classes.index(positive)
        y_pos, pred_pos = outcomes.y == pos, outcomes.pred == pos
        for f in guarded:
            fairness[f.feature] = report_from_codes(f.feature, f.codes, f.values, y_pos,
                                                    pred_pos, positive_label=_plain(positive))
    return EvaluationResult(
        task=outcomes.task, label=label, overall=overall, slices=tuple(sliced),
        critical=tuple(critical), confusion=confusion, fairness=fairness, baselines={},
        classes=tuple(_plain(c) for c in outcomes.classes),
        positive_label=_plain(positive), settings=settings)

