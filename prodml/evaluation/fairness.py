"""Group fairness of a binary decision: Fairlearn's disparities and Aequitas-style parity.

For each group of a protected attribute (or of a cross of several): selection rate, true and
false positive rates, accuracy and count, from one ``bincount`` of (group, true, predicted).
Then, as Fairlearn defines them (tests compare with ``MetricFrame`` and its functions):

- demographic parity difference / ratio: largest minus smallest selection rate / smallest over
  largest;
- equalized odds difference: the larger of the TPR and FPR differences; ratio: the smaller of
  their ratios. A group without positives (negatives) has TPR (FPR) 0, as in Fairlearn.

And as Aequitas does it: every group's rate divided by the reference group's rate (the
largest group unless named), fair when within ``parity_bounds`` (0.8 to 1.25, the four-fifths
rule both ways). Two zero rates are at parity (ratio 1); a rate over a zero reference is not.

>>> import numpy as np
>>> y = np.array([1, 0, 1, 0, 1, 0, 1, 0]); pred = np.array([1, 0, 1, 1, 0, 0, 1, 0])
>>> r = fairness_report(y, pred, {"sex": np.array(list("ffffmmmm"))})
>>> r.by_group["f"]["selection_rate"], r.demographic_parity_difference, r.ok
(0.75, 0.5, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError
from prodml.evaluation.slices import column_codes

PARITY_METRICS = ("selection_rate", "tpr", "fpr")


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates of one protected attribute, its disparities and parity verdicts."""

    attribute: str
    by_group: dict[str, dict[str, float]]
    reference: str
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float
    parity: dict[str, dict[str, dict[str, Any]]]
    parity_bounds: tuple[float, float] = (0.8, 1.25)
    positive_label: Any = 1

    @property
    def ok(self) -> bool:
        """Every group within the parity bounds on every rate."""
        return all(v["ok"] for by_metric in self.parity.values() for v in by_metric.values())

    @property
    def violations(self) -> list[tuple[str, str, float]]:
        return [(g, m, v["ratio"]) for g, by_metric in self.parity.items()
                for m, v in by_metric.items() if not v["ok"]]

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "reference": self.reference,
                "positive_label": self.positive_label, "ok": self.ok,
                "parity_bounds": list(self.parity_bounds),
                "demographic_parity_difference": _num(self.demographic_parity_difference),
                "demographic_parity_ratio": _num(self.demographic_parity_ratio),
                "equalized_odds_difference": _num(self.equalized_odds_difference),
                "equalized_odds_ratio": _num(self.equalized_odds_ratio),
                "by_group": {g: {k: (int(v) if k == "count" else _num(v)) for k, v in m.items()}
                             for g, m in self.by_group.items()},
                "parity": {g: {m: {"ratio": _num(v["ratio"]), "ok": bool(v["ok"])}
                               for m, v in by_metric.items()}
                           for g, by_metric in self.parity.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FairnessReport:
        return cls(
            attribute=d["attribute"], reference=d["reference"],
            positive_label=d.get("positive_label", 1),
            parity_bounds=tuple(d.get("parity_bounds", (0.8, 1.25))),  # type: ignore[arg-type]
            demographic_parity_difference=_float(d["demographic_parity_difference"]),
            demographic_parity_ratio=_float(d["demographic_parity_ratio"]),
            equalized_odds_difference=_float(d["equalized_odds_difference"]),
            equalized_odds_ratio=_float(d["equalized_odds_ratio"]),
            by_group={g: {k: (int(v) if k == "count" else _float(v)) for k, v in m.items()}
                      for g, m in d["by_group"].items()},
            parity={g: {m: {"ratio": _float(v["ratio"]), "ok": bool(v["ok"])}
                        for m, v in by_metric.items()} for g, by_metric in d["parity"].items()})

    def summary(self) -> str:
        lo, hi = self.parity_bounds
        lines = [(f"Fairness by {self.attribute}: {'ok' if self.ok else 'PARITY VIOLATED'} "
                  f"(reference {self.reference}, parity within {lo:g}-{hi:g})"),
                 (f"  demographic parity difference {self.demographic_parity_difference:.4g}, "
                  f"ratio {self.demographic_parity_ratio:.4g}"),
                 (f"  equalized odds difference {self.equalized_odds_difference:.4g}, "
                  f"ratio {self.equalized_odds_ratio:.4g}")]
        header = ["group", "count", "selection", "tpr", "fpr", "accuracy", "parity"]
        rows = [header]
        for g, m in self.by_group.items():
            bad = [k for k, v in self.parity.get(g, {}).items() if not v["ok"]]
            rows.append([g, f"{m['count']:,}", *(f"{m[k]:.3f}" for k in
                                                 ("selection_rate", "tpr", "fpr", "accuracy")),
                         "ok" if not bad else "off: " + ", ".join(bad)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines += ["  " + "  ".join(v.ljust(w) if i in (0, 6) else v.rjust(w)
                                   for i, (v, w) in enumerate(zip(r, widths))).rstrip()
                  for r in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _spread(values: np.ndarray) -> tuple[float, float]:
    """(max - min, min / max) over the groups, NaN-skipping as pandas does."""
    finite = values[~np.isnan(values)]
    if not len(finite):
        return math.nan, math.nan
    lo, hi = float(finite.min()), float(finite.max())
    return hi - lo, (lo / hi if hi != 0 else math.nan)


def report_from_codes(attribute: str, codes: np.ndarray, groups: tuple[str, ...],
                      y_pos: np.ndarray, pred_pos: np.ndarray, *, reference: Any = None,
                      parity_bounds: tuple[float, float] = (0.8, 1.25),
                      positive_label: Any = 1) -> FairnessReport:
    """The report from group codes (-1: left out) and boolean truth and decisions."""
    g_count = len(groups)
    index = (codes.astype(np.int64) + 1) * 4 + y_pos.astype(np.int64) * 2 + pred_pos
    cells = np.bincount(index, minlength=(g_count + 1) * 4)[4:].reshape(g_count, 4)
    tn, fp, fn, tp = (cells[:, i].astype(np.float64) for i in range(4))
    count = cells.sum(axis=1)
    keep = count > 0
    rates = {"selection_rate": _ratio(tp + fp, count), "tpr": _ratio(tp, tp + fn),
             "fpr": _ratio(fp, fp + tn), "accuracy": _ratio(tp + tn, count)}
    names = [g for g, k in zip(groups, keep) if k]
    by_group = {g: {**{m: float(v[i]) for m, v in rates.items()}, "count": int(count[i])}
                for i, g in enumerate(groups) if keep[i]}
    if reference is None:
        ref = names[int(np.argmax(count[keep]))] if names else ""
    else:
        ref = str(reference)
        if ref not in by_group:
            raise InvalidInputError("reference", reference, f"is not a group of {attribute} "
                                    f"(has: {', '.join(names)})")
    dp_diff, dp_ratio = _spread(rates["selection_rate"][keep])
    tpr_diff, tpr_ratio = _spread(rates["tpr"][keep])
    fpr_diff, fpr_ratio = _spread(rates["fpr"][keep])
    lo, hi = parity_bounds
    parity: dict[str, dict[str, dict[str, Any]]] = {}
    for g in names:
        parity[g] = {}
        for m in PARITY_METRICS:
            own, base = by_group[g][m], by_group[ref][m]
            r = own / base if base > 0 else (1.0 if own == 0 else math.inf)
            parity[g][m] = {"ratio": r, "ok": bool(lo <= r <= hi)}
    return FairnessReport(
        attribute=attribute, by_group=by_group, reference=ref,
        demographic_parity_difference=dp_diff, demographic_parity_ratio=dp_ratio,
        equalized_odds_difference=float(np.nanmax([tpr_diff, fpr_diff])),
        equalized_odds_ratio=float(np.nanmin([tpr_ratio, fpr_ratio])), parity=parity,
        parity_bounds=(float(lo), float(hi)), positive_label=positive_label)


def positive_mask(values: Any, pos_label: Any, field: str) -> np.ndarray:
    """Booleans: is each value the positive label? Without one, values must be 0/1 or bool."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInputError(field, f"shape {array.shape}", "must be one label per row")
    if pos_label is None:
        if array.dtype == bool:
            return array
        distinct = set(np.unique(array).tolist()) if array.size else set()
        if not distinct <= {0, 1}:
            raise InvalidInputError(field, sorted(map(str, distinct))[:5],
                                    "labels are not 0/1 or bool: name the positive label "
                                    "(pos_label=...)")
        pos_label = 1
    return array == pos_label


def _group_columns(groups: Any, n: int) -> dict[str, np.ndarray]:
    if isinstance(groups, dict):
        columns = {str(k): v for k, v in groups.items()}
    elif type(groups).__module__.split(".")[0] in ("pandas", "polars", "pyarrow"):
        table = to_arrow(groups)
        columns = {name: table.column(name).to_numpy(zero_copy_only=False)
                   for name in table.column_names}
    else:
        columns = {"group": groups}
    if not columns:
        raise InvalidInputError("groups", "empty", "needs at least one protected attribute")
    out = {}
    for name, values in columns.items():
        array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
        if array.shape != (n,):
            raise InvalidInputError(f"groups[{name!r}]", f"shape {array.shape}",
                                    f"needs one value per row ({n})")
        out[name] = array
    return out


def fairness_report(y_true: Any, y_pred: Any, groups: Any, *, reference: Any = None,
                    parity_bounds: tuple[float, float] = (0.8, 1.25),
                    pos_label: Any = None) -> FairnessReport:
    """Fairness of decisions ``y_pred`` against ``y_true`` across ``groups``.

    ``groups``: ``{attribute: values}`` (several attributes are crossed: groups ``"f & 30-50"``),
    a DataFrame of attribute columns, or one array. ``pos_label`` names the favourable
    outcome when labels are not 0/1 or bool. ``reference`` is the group the parity ratios
    divide by (default: the largest).
    """
    y_pos = positive_mask(y_true, pos_label, "y_true")
    pred_pos = positive_mask(y_pred, pos_label, "y_pred")
    if len(y_pos) != len(pred_pos):
        raise InvalidInputError("y_pred", f"{len(pred_pos)} values",
                                f"must have one per label ({len(y_pos)})")
    lo, hi = parity_bounds
    if not 0 < lo <= 1 <= hi:
        raise InvalidInputError("parity_bounds", parity_bounds, "must satisfy 0 < low <= 1 <= "
                                "high")
    columns = _group_columns(groups, len(y_pos))
    codes, names = None, None
    for values in columns.values():
        c, n = column_codes(pl.Series(values))
        if codes is None:
            codes, names = c, list(n)
        else:
            combined = codes * len(n) + c
            present = np.bincount(combined, minlength=len(names) * len(n)) > 0
            codes = (np.cumsum(present) - 1)[combined]
            names = [f"{a} & {b}" for a in names for b in n]  # type: ignore[union-attr]
            names = [x for x, p in zip(names, present) if p]
    assert codes is not None and names is not None
    return report_from_codes(" x ".join(columns), codes, tuple(names), y_pos, pred_pos,
                             reference=reference, parity_bounds=(float(lo), float(hi)),
                             positive_label=1 if pos_label is None else pos_label)
