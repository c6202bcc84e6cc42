"""The evaluation page: overall metrics, confusion-matrix heatmap, per-slice bars with bootstrap
error bars, critical subsets, fairness tables and baselines, on one self-contained page.

Rendered with the shared helpers of :mod:`prodml.reports.html` (plotly.js inlined once from the
installed package, charts drawn lazily; no CDN). The result is read by its attributes only.
"""

from __future__ import annotations

import math
from typing import Any

from prodml.reports.html import badge, escape, number, page, table

# One drawing function for the page's three chart kinds.
EVALUATION_CHART = """
window.prodmlChart = function(s){
 function esc(l){ return String(l).replace(/&/g, '&amp;').replace(/</g, '&lt;'); }
 var margin = {l:56, r:12, t:8, b:60};
 if (s.kind === 'heatmap') {
  var labels = s.labels.map(esc);
  return {data:[{type:'heatmap', z:s.z, x:labels, y:labels, colorscale:'Blues', reversescale:true, showscale:false,
    text:s.z, texttemplate:'%{text}',
    hovertemplate:'true %{y}, predicted %{x}: %{z}<extra></extra>'}],
   layout:{margin:margin, xaxis:{title:{text:'predicted'}, type:'category'},
    yaxis:{title:{text:'true'}, type:'category', autorange:'reversed'}}};
 }
 if (s.kind === 'bars') {
  var bar = {type:'bar', x:s.x.map(esc), y:s.y, name:s.metric,
   marker:{color:s.small.map(function(v){ return v ? '#c8d1dc' : '#4c78a8'; })},
   error_y:{type:'data', symmetric:false, array:s.up, arrayminus:s.down, visible:true,
    color:'#59636e'}};
  var shapes = s.overall === null ? [] : [{type:'line', xref:'paper', x0:0, x1:1, y0:s.overall,
   y1:s.overall, line:{dash:'dot', color:'#cf222e'}}];
  return {data:[bar], layout:{margin:margin, yaxis:{title:{text:s.metric}}, shapes:shapes,
   xaxis:{type:'category'}}};
 }
 var colors = ['#4c78a8', '#f58518', '#54a24b', '#b279a2'];
 var data = s.metrics.map(function(m, i){ return {type:'bar', name:m, x:s.groups.map(esc),
  y:s.values[i], marker:{color:colors[i % colors.length]}}; });
 return {data:data, layout:{margin:margin, barmode:'group', legend:{orientation:'h', y:1.15},
  yaxis:{tickformat:'.0%'}, xaxis:{type:'category'}}};
};
"""


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _with_ci(s: Any, metric: str) -> str:
    value = s.metrics.get(metric)
    ci = s.intervals.get(metric)
    text = number(value)
    if ci and _finite(ci[0]) and _finite(ci[1]):
        text += f' <span class="muted">[{number(ci[0])}, {number(ci[1])}]</span>'
    return text


def _headline(result: Any) -> list[str]:
    from prodml.evaluation.metrics import HEADLINE
    return [m for m in HEADLINE[result.task] if m in result.overall.metrics]


def _slice_rows(result: Any, slices: list[Any], names: list[str]) -> str:
    rows = [[escape(s.value if s.value is not None else s.name)
             + (' <span class="badge bad">small</span>' if s.small else ""),
             number(s.count), f"{s.share:.1%}", *(_with_ci(s, m) for m in names)]
            for s in slices]
    return table(["slice", "rows", "share", *map(escape, names)], rows,
                 numeric=range(1, 3 + len(names)))


def _bars(slices: list[Any], metric: str, overall: Any) -> dict[str, Any]:
    ys, up, down = [], [], []
    for s in slices:
        v = s.metrics.get(metric)
        ys.append(v if _finite(v) else None)
        lo, hi = s.intervals.get(metric, (math.nan, math.nan))
        ok = _finite(v) and _finite(lo) and _finite(hi)
        up.append(max(hi - v, 0.0) if ok else 0.0)
        down.append(max(v - lo, 0.0) if ok else 0.0)
    o = overall.metrics.get(metric)
    return {"kind": "bars", "metric": metric,
            "x": [s.value if s.value is not None else s.name for s in slices], "y": ys,
            "up": up, "down": down, "small": [s.small for s in slices],
            "overall": o if _finite(o) else None}


def _fairness_card(attribute: str, report: Any, chart_id: str) -> str:
    lo, hi = report.parity_bounds
    facts = (f"demographic parity difference {number(report.demographic_parity_difference)}, "
             f"ratio {number(report.demographic_parity_ratio)} · equalized odds difference "
             f"{number(report.equalized_odds_difference)}, ratio "
             f"{number(report.equalized_odds_ratio)} · reference group "
             f"<b>{escape(report.reference)}</b>, parity within {lo:g}–{hi:g}")
    rows = []
    for group, m in report.by_group.items():
        verdicts = report.parity.get(group, {})
        cells = []
        for metric in ("selection_rate", "tpr", "fpr"):
            v = verdicts.get(metric, {})
            ratio = v.get("ratio")
            cells.append(f"{number(m[metric])} "
                         f'<span class="muted">(×{number(ratio)})</span> '
                         + badge(not v.get("ok", True), "off", "ok"))
        rows.append([escape(group), number(m["count"]), *cells, number(m["accuracy"])])
    head = (f"<h3>{escape(attribute)} {badge(not report.ok, 'parity violated', 'parity ok')}"
            "</h3>")
    return (f'<div class="card">{head}<p class="muted">{facts}</p>'
            + table(["group", "rows", "selection rate", "TPR", "FPR", "accuracy"], rows,
                    numeric=(1, 5))
            + f'<div class="chart" data-chart="{chart_id}"></div></div>')


def evaluation_page(result: Any) -> str:
    """The page for an :class:`~prodml.evaluation.evaluate.EvaluationResult`."""
    names = _headline(result)
    primary = "accuracy" if result.task == "classification" else "mae"
    charts: dict[str, Any] = {}
    settings = result.settings or {}
    facts = [f"{result.task}", f"label <b>{escape(result.label)}</b>",
             f"{result.overall.count:,} rows"]
    if result.classes:
        facts.append("classes " + escape(", ".join(map(str, result.classes))))
    if result.positive_label is not None:
        facts.append(f"positive {escape(result.positive_label)}")
    if settings.get("bootstrap"):
        facts.append(f"{settings.get('ci', 0.95):.0%} intervals from {settings['bootstrap']} "
                     "bootstrap replicates")
    parts = ["<h1>Model evaluation</h1>", f'<p class="muted">{" · ".join(facts)}</p>',
             "<h2>Overall</h2>",
             table(["metric", "value"], [[escape(m), _with_ci(result.overall, m)]
                                         for m in result.overall.metrics if "[" not in m],
                   numeric=(1,))]
    if result.confusion is not None:
        charts["confusion"] = {"kind": "heatmap",
                               "labels": [str(v) for v in result.confusion.labels],
                               "z": result.confusion.matrix.tolist()}
        parts += ["<h2>Confusion matrix</h2>",
                  '<div class="card"><div class="chart" data-chart="confusion"></div></div>']
    features: dict[str, list[Any]] = {}
    for s in result.slices:
        features.setdefault(s.feature if s.value is not None else "named slices", []).append(s)
    if features:
        small = settings.get("min_slice_size")
        parts.append("<h2>Slices</h2>")
        if small:
            parts.append(f'<p class="muted">Grey bars and <span class="badge bad">small</span> '
                         f"mark slices under {small} rows (left out of worst-slice checks); "
                         f"the dotted line is the overall {escape(primary)}.</p>")
    for i, (feature, slices) in enumerate(features.items()):
        chart = ""
        if primary in result.overall.metrics:
            charts[f"slice-{i}"] = _bars(slices, primary, result.overall)
            chart = f'<div class="chart" data-chart="slice-{i}"></div>'
        parts.append(f'<div class="card"><h3>{escape(feature)}</h3>{chart}'
                     f"{_slice_rows(result, slices, names)}</div>")
    if result.critical:
        extra = sorted({m for s in result.critical for m in s.metrics
                        if m.startswith(("weighted_", "error_cost"))})
        parts += ["<h2>Critical subsets</h2>",
                  table(["subset", "rows", *map(escape, [*names, *extra])],
                        [[escape(s.value or s.name), number(s.count),
                          *(_with_ci(s, m) for m in [*names, *extra])]
                         for s in result.critical], numeric=range(1, 2 + len(names) + len(extra)))]
    if result.fairness:
        parts.append("<h2>Fairness</h2>")
        for i, (attribute, report) in enumerate(result.fairness.items()):
            groups = list(report.by_group)
            metrics = ["selection_rate", "tpr", "fpr"]
            charts[f"fair-{i}"] = {"kind": "groups", "groups": groups, "metrics": metrics,
                                   "values": [[report.by_group[g][m] for g in groups]
                                              for m in metrics]}
            parts.append(_fairness_card(attribute, report, f"fair-{i}"))
    if result.baselines:
        rows = [["this model", *(number(result.overall.metrics.get(m)) for m in names)]]
        for name in result.baselines:
            rows.append([escape(name), *(number(result.baseline(name, "overall", m))
                                         for m in names)])
        parts += ["<h2>Baselines</h2>", table(["", *map(escape, names)], rows,
                                              numeric=range(1, 1 + len(names)))]
    return page("Model evaluation", "".join(parts), charts=charts, chart_js=EVALUATION_CHART)
