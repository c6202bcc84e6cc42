"""Drift and skew: did the data move between a reference and a current window?

``drift(reference, current)`` compares each column with a statistical test or a distance (the
methods live in :mod:`prodml.data.drift_methods`), chosen as Evidently chooses them unless
told otherwise, and calls the dataset drifted when at least ``drift_share`` of the columns are.
Either side may be data (pandas, Polars, Arrow, a file path) or a :class:`~prodml.data.profile.
Profile`; from profiles the statistics are estimated from their sketches and the report says so.

``skew_by_key`` and ``domain_classifier`` (training-serving skew by entity, multivariate drift)
live in :mod:`prodml.data.skew` and are re-exported here.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"age": rng.normal(40, 10, 2000), "city": rng.choice(["a", "b"], 2000)})
>>> cur = pd.DataFrame({"age": rng.normal(48, 10, 2000), "city": rng.choice(["a", "b"], 2000)})
>>> report = drift(ref, cur)
>>> report.drifted_columns, report.dataset_drift, report["age"].method
(['age'], True, 'wasserstein')
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.data.drift_methods import (METHODS, CategoricalSide, NumericSide, aligned_counts,
                                       compare, get_method)
from prodml.data.frames import column_kind, logical_type, to_arrow
from prodml.data.profile import ColumnProfile, Profile
from prodml.errors import InvalidInputError

CHART_BINS = 40
CHART_CATEGORIES = 20
ROLE_TITLES = {"feature": "feature", "label": "prior shift", "prediction": "prediction drift"}
SIDE_NAMES = {"drift": ("reference", "current"), "skew": ("training", "serving")}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's comparison: method, score, threshold and verdict, and both sides' summary.

    ``score`` is a p-value for tests (drift when below the threshold) and a distance otherwise
    (drift when at or above it); ``statistic`` is the test statistic or the raw distance.
    """

    name: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    statistic: float = math.nan
    role: str = "feature"
    reference: dict[str, Any] = field(default_factory=dict)
    current: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    distribution: dict[str, Any] = field(default_factory=dict)  # small: for the charts

    @property
    def method_title(self) -> str:
        spec = METHODS.get(self.method)
        return spec.title if spec else "column type changed"

    @property
    def score_kind(self) -> str:
        spec = METHODS.get(self.method)
        return spec.score if spec else "none"

    @property
    def severity(self) -> float:
        """How far past its threshold the score is (1 at the threshold, larger = more drift)."""
        if self.method not in METHODS:
            return math.inf
        if self.score_kind == "distance":
            return self.score / self.threshold if self.threshold > 0 else math.inf
        if not 0 < self.threshold < 1:
            return 0.0
        return math.log(max(self.score, 1e-300)) / math.log(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "role": self.role, "method": self.method,
                "method_title": self.method_title, "score_kind": self.score_kind,
                "score": _json(self.score), "statistic": _json(self.statistic),
                "threshold": _json(self.threshold), "drifted": self.drifted,
                "reference": self.reference, "current": self.current, "note": self.note,
                "distribution": self.distribution}


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift verdicts and the dataset's: ``share drifted >= drift_share``."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    reference_rows: int
    current_rows: int
    kind: str = "drift"
    label: ColumnDrift | None = None
    prediction: ColumnDrift | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    from_profiles: bool = False

    @property
    def title(self) -> str:
        return "Training-serving skew" if self.kind == "skew" else "Data drift"

    @property
    def side_names(self) -> tuple[str, str]:
        return SIDE_NAMES[self.kind]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.share_drifted >= self.drift_share

    def __getitem__(self, name: str) -> ColumnDrift:
        for c in (*self.columns, self.label, self.prediction):
            if c is not None and c.name == name:
                return c
        raise InvalidInputError("column", name, "is not in the drift report")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "dataset_drift": self.dataset_drift,
                "share_drifted": self.share_drifted, "drift_share": self.drift_share,
                "drifted_columns": self.drifted_columns, "reference_rows": self.reference_rows,
                "current_rows": self.current_rows, "from_profiles": self.from_profiles,
                "columns": [c.to_dict() for c in self.columns],
                "prior_shift": self.label.to_dict() if self.label else None,
                "prediction_drift": self.prediction.to_dict() if self.prediction else None,
                "skipped": dict(self.skipped)}

    def headline(self) -> str:
        verdict = "DETECTED" if self.dataset_drift else "not detected"
        return (f"{self.title}: {verdict} — {len(self.drifted_columns)} of {len(self.columns)} "
                f"columns drifted ({self.share_drifted:.0%}; dataset drift at "
                f">= {self.drift_share:.0%})")

    def summary(self) -> str:
        """A plain-text table, one row per column, most drifted first."""
        rows = [("column", "kind", "method", "score", "threshold", "drifted")]
        ranked = sorted(self.columns, key=lambda c: -c.severity)
        extra = [c for c in (self.label, self.prediction) if c is not None]
        for c in [*ranked, *extra]:
            name = c.name if c.role == "feature" else f"{c.name} ({ROLE_TITLES[c.role]})"
            rows.append((name, c.kind, c.method, _fmt(c.score), _fmt(c.threshold),
                         "YES" if c.drifted else "no"))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = [self.headline(), ""]
        lines += ["  ".join(v.ljust(w) if i < 3 else v.rjust(w)
                            for i, (v, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        if self.from_profiles:
            lines.append("estimated from profiles' sketches (see each column's note)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_html(self) -> str:
        """A self-contained page (plotly.js inlined once, no network) with a chart per column."""
        from prodml.reports.html import drift_page
        return drift_page(self)

    def write_html(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_html())


def drift(reference: Any, current: Any, *, columns: list[str] | None = None,
          methods: dict[str, str | tuple[str, float]] | None = None,
          num_method: str | None = None, cat_method: str | None = None,
          threshold: float | None = None, thresholds: dict[str, float] | None = None,
          drift_share: float = 0.5, label: str | None = None, prediction: str | None = None,
          kind: str = "drift") -> DriftReport:
    """Compare ``current`` with ``reference`` column by column.

    ``methods`` overrides the method per column (``{"age": "psi"}`` or ``{"age": ("psi",
    0.2)}``); ``num_method``/``cat_method`` set it per kind; ``threshold`` sets every column's
    threshold and ``thresholds`` one column's. ``label`` and ``prediction`` columns are compared
    too but reported apart, as prior shift and prediction drift, and left out of the share.
    ``kind="skew"`` names the sides training and serving.
    """
    if kind not in SIDE_NAMES:
        raise InvalidInputError("kind", kind, "must be 'drift' or 'skew'")
    if not 0 < drift_share <= 1:
        raise InvalidInputError("drift_share", drift_share, "must be in (0, 1]")
    ref, cur = _source(reference), _source(current)
    # One side a profile (a training profile, a stored window): the side that is data stays
    # exact. Every method asks a side for shares, quantiles or values through the same API,
    # sketch or not, and the exact side is both more accurate and much cheaper than
    # profiling it first (a 100,000-row window: a sort per column instead of KLL, HLL and
    # frequent-items sketches).
    from_profiles = ref.is_profile or cur.is_profile
    features = _feature_columns(ref, cur, columns, label, prediction)
    plan = [(name, "feature") for name in features]
    plan += [(name, role) for name, role in ((label, "label"), (prediction, "prediction"))
             if name is not None]
    chosen = _choices(plan, ref, cur, methods or {}, num_method, cat_method, threshold,
                      thresholds or {})
    workers = max(1, min(len(plan), os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(workers) as pool:  # NumPy, SciPy and Arrow release the GIL
        results = list(pool.map(lambda task: _column(ref, cur, *task, *chosen[task[0]]),
                                plan))
    done = {name: r for (name, _), r in zip(plan, results)}
    return DriftReport(
        columns=tuple(r for (name, role), r in zip(plan, results)
                      if role == "feature" and isinstance(r, ColumnDrift)),
        drift_share=drift_share, reference_rows=ref.rows, current_rows=cur.rows, kind=kind,
        label=_role_result(done, label), prediction=_role_result(done, prediction),
        skipped={name: r for name, r in done.items() if isinstance(r, str)},
        from_profiles=from_profiles)


# -- sources: data or profiles ------------------------------------------------------------------

class _Source:
    def __init__(self, table: pa.Table | None = None, prof: Profile | None = None,
                 data: Any = None) -> None:
        self.table, self.profile, self.data = table, prof, data

    @property
    def is_profile(self) -> bool:
        return self.profile is not None

    @property
    def names(self) -> list[str]:
        return self.profile.column_names if self.profile else self.table.column_names

    @property
    def rows(self) -> int:
        return self.profile.rows if self.profile else self.table.num_rows

    def logical_type(self, name: str) -> str:
        if self.profile:
            return self.profile[name].logical_type
        return logical_type(self.table.schema.field(name).type)

    def side(self, name: str, kind: str) -> NumericSide | CategoricalSide:
        if self.profile:
            col: ColumnProfile = self.profile[name]
            return (NumericSide if kind == "numeric" else CategoricalSide).from_profile(col)
        column = self.table.column(name)
        return (NumericSide if kind == "numeric" else CategoricalSide).from_arrow(column)


def _source(data: Any) -> _Source:
    if isinstance(data, Profile):
        return _Source(prof=data)
    table = to_arrow(data)
    if table.num_columns == 0:
        raise InvalidInputError("data", "0 columns", "drift needs at least one column")
    return _Source(table=table, data=data)


def _feature_columns(ref: _Source, cur: _Source, columns: list[str] | None,
                     label: str | None, prediction: str | None) -> list[str]:
    ref_names, cur_names = ref.names, set(cur.names)
    for role, name in (("label", label), ("prediction", prediction)):
        if name is not None and (name not in ref_names or name not in cur_names):
            side = "reference" if name not in ref_names else "current"
            raise InvalidInputError(role, name, f"is not a column of the {side} data")
    if columns is not None:
        for name in columns:
            if name not in ref_names or name not in cur_names:
                side = "reference" if name not in ref_names else "current"
                raise InvalidInputError("columns", name, f"is not a column of the {side} data")
        return [c for c in columns if c not in (label, prediction)]
    only_ref = [c for c in ref_names if c not in cur_names]
    only_cur = [c for c in cur.names if c not in set(ref_names)]
    if only_ref or only_cur:
        raise InvalidInputError(
            "columns", ", ".join(only_ref + only_cur),
            "reference and current must have the same columns"
            + (f"; only in reference: {', '.join(only_ref)}" if only_ref else "")
            + (f"; only in current: {', '.join(only_cur)}" if only_cur else "")
            + " (pass columns=[...] to compare the shared ones)")
    return [c for c in ref_names if c not in (label, prediction)]


def _choices(plan: list[tuple[str, str]], ref: _Source, cur: _Source, methods: dict[str, Any],
             num_method: str | None, cat_method: str | None, threshold: float | None,
             thresholds: dict[str, float]) -> dict[str, tuple[str | None, float | None]]:
    """Method and threshold per column, validated before any statistic is computed."""
    planned = {name for name, _ in plan}
    for name in [*methods, *thresholds]:
        if name not in planned:
            raise InvalidInputError("methods", name, "names no compared column")
    chosen = {}
    for name, _role in plan:
        kind = column_kind(ref.logical_type(name))
        spec = methods.get(name)
        method, limit = (spec if isinstance(spec, (tuple, list)) else (spec, None))
        method = method or (num_method if kind == "numeric" else cat_method if
                            kind == "categorical" else None)
        if method is not None and kind != "other":
            get_method(method, kind, name)
        limit = limit if limit is not None else thresholds.get(name, threshold)
        if limit is not None and not (isinstance(limit, (int, float)) and math.isfinite(limit)):
            raise InvalidInputError(f"threshold for {name!r}", limit, "must be a number")
        chosen[name] = (method, limit)
    return chosen


def _column(ref: _Source, cur: _Source, name: str, role: str, method: str | None,
            limit: float | None) -> ColumnDrift | str:
    """One column's result, or the reason it was not compared."""
    rtype, ctype = ref.logical_type(name), cur.logical_type(name)
    kind, ckind = column_kind(rtype), column_kind(ctype)
    if "null" in (rtype, ctype):  # Arrow's type for a column of nulls only
        return f"no non-null values in the {'reference' if rtype == 'null' else 'current'} data"
    if kind == "other" or ckind == "other":
        return f"type {rtype if kind == 'other' else ctype} has no drift method"
    if kind != ckind:
        return ColumnDrift(name, kind, "type", math.nan, math.nan, True, role=role,
                           note=f"type changed: {rtype} in reference, {ctype} in current")
    rs, cs = ref.side(name, kind), cur.side(name, kind)
    if rs.n == 0 or cs.n == 0:
        empty = "reference" if rs.n == 0 else "current"
        return f"no non-null values in the {empty} data"
    result = compare(rs, cs, kind, method, limit, column=name)
    return ColumnDrift(name, kind, result.method, result.score, result.threshold,
                       result.drifted, result.statistic, role, rs.summary(), cs.summary(),
                       _note(result.method, rs, cs, ref.is_profile), _distribution(rs, cs))


def _role_result(done: dict[str, Any], name: str | None) -> ColumnDrift | None:
    if name is None:
        return None
    result = done[name]
    if isinstance(result, str):
        raise InvalidInputError("column", name, f"cannot be compared: {result}")
    return result


def _note(method: str, rs: Any, cs: Any, from_profiles: bool) -> str:
    if not from_profiles:
        return ""
    if isinstance(rs, CategoricalSide):
        if rs.exact and cs.exact:
            return "from profiles: exact frequencies"
        return "from profiles: frequencies estimated by frequent-items sketches (> 1024 values)"
    if rs.exact and cs.exact:
        return "from profiles: their samples hold every value, so this is exact"
    if method in ("ks", "anderson", "cramer_von_mises"):
        return (f"from profiles: test on uniform samples ({rs.values.size:,} of {rs.n:,} and "
                f"{cs.values.size:,} of {cs.n:,} values): valid, less power than on all rows")
    if method == "wasserstein":
        return "from profiles: integrated over KLL quantile sketches (rank error about 1.3 %)"
    return "from profiles: shares estimated from KLL sketches and uniform samples (averaged)"


def _distribution(rs: Any, cs: Any) -> dict[str, Any]:
    """Both sides' shares over at most 40 bins or 20 categories, for the report's charts."""
    if isinstance(rs, NumericSide) and (rs.distinct(cap=CHART_CATEGORIES) is None
                                        or cs.distinct(cap=CHART_CATEGORIES) is None):
        q = np.array([0.005, 0.995])
        (lo_r, hi_r), (lo_c, hi_c) = rs.quantiles(q), cs.quantiles(q)
        lo, hi = min(lo_r, lo_c), max(hi_r, hi_c)
        if not lo < hi:
            lo, hi = min(rs.min, cs.min), max(rs.max, cs.max) + 1e-9
        edges = np.linspace(lo, hi, CHART_BINS + 1)  # outer bins also hold the tails
        return {"type": "numeric", "edges": _round(edges, 6),
                "reference": _round(rs.bin_shares(edges[1:-1]), 5),
                "current": _round(cs.bin_shares(edges[1:-1]), 5)}
    keys, ref_c, cur_c = aligned_counts(rs, cs)
    p, q = ref_c / max(ref_c.sum(), 1), cur_c / max(cur_c.sum(), 1)
    order = np.argsort(-(p + q), kind="stable")
    top, rest = order[:CHART_CATEGORIES], order[CHART_CATEGORIES:]
    labels = [str(k) for k in keys[top]]
    ref_share, cur_share = list(p[top]), list(q[top])
    if rest.size:
        labels.append(f"(other {rest.size})")
        ref_share.append(p[rest].sum())
        cur_share.append(q[rest].sum())
    return {"type": "categorical", "labels": labels, "reference": _round(ref_share, 5),
            "current": _round(cur_share, 5)}


def _round(values: Any, digits: int) -> list[float]:
    return [float(f"{v:.{digits}g}") if digits == 6 else round(float(v), digits)
            for v in values]


def _json(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g}" if x >= 1e-3 or x == 0 else f"{x:.2e}"


from prodml.data.skew import (DomainClassifierReport, KeySkewReport,  # noqa: E402,F401
                              domain_classifier, skew_by_key)
