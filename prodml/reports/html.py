"""Self-contained HTML pages: shared helpers, and the drift report page.

A page carries its own CSS and, when it has charts, plotly.js once (from the installed plotly
package: no CDN, works offline). Charts are described by small JSON specs in one
``<script type="application/json">`` block and drawn only when scrolled into view, so a page
with hundreds of charts opens as fast as one with a few.

This module imports nothing else from prodml: results are read by their attributes, so data,
evaluation and monitoring can all render through it.
"""

from __future__ import annotations

import html
import math
from functools import lru_cache
from typing import Any, Iterable

import orjson

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:0;display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.muted{color:#59636e}.card{background:#fff;border:1px solid #d1d9e0;border-radius:8px;
padding:14px 16px;margin:12px 0}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:5px 8px;border-bottom:1px solid #e5e9ee;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.bad{background:#ffebe9;color:#cf222e}.good{background:#dafbe1;color:#116329}
.banner{padding:10px 14px;border-radius:8px;margin:12px 0;font-weight:600}
.chart{height:260px;margin-top:8px}.sides{display:grid;grid-template-columns:1fr 1fr;gap:12px;
font-size:13px;margin-top:6px}a{color:#0969da;text-decoration:none}
"""

# Draw each chart the first time it comes near the viewport; one observer for the page.
LAZY_CHARTS = """
(function(){
 var specs = JSON.parse(document.getElementById('chart-specs').textContent);
 function draw(el){ var s = specs[el.dataset.chart]; if (!s) return;
  var d = window.prodmlChart(s); Plotly.newPlot(el, d.data, d.layout,
   {displayModeBar:false, responsive:true}); }
 var els = document.querySelectorAll('div.chart[data-chart]');
 if (!('IntersectionObserver' in window)) { els.forEach(draw); return; }
 var io = new IntersectionObserver(function(entries){ entries.forEach(function(e){
  if (e.isIntersecting) { io.unobserve(e.target); draw(e.target); } }); },
  {rootMargin: '300px'});
 els.forEach(function(el){ io.observe(el); });
})();
"""

# Overlaid distributions from a compact spec: histogram bins or category shares per side.
DISTRIBUTION_CHART = """
window.prodmlChart = function(s){
 var names = s.names, colors = ['#4c78a8', '#f58518'], data = [], layout;
 layout = {margin:{l:48,r:12,t:8,b:40}, barmode: s.type === 'numeric' ? 'overlay' : 'group',
  yaxis:{title:{text:'share'}, tickformat:'.0%'}, legend:{orientation:'h', y:1.12},
  bargap: s.type === 'numeric' ? 0 : 0.2};
 ['reference', 'current'].forEach(function(side, i){
  var t = {type:'bar', name:names[i], y:s[side], marker:{color:colors[i]}, opacity:0.6};
  if (s.type === 'numeric') {
   var e = s.edges; t.x = []; t.width = [];
   for (var k = 0; k + 1 < e.length; k++) { t.x.push((e[k] + e[k+1]) / 2); t.width.push(e[k+1] - e[k]); }
  } else { t.x = s.labels.map(function(l){ return l.replace(/&/g, '&amp;').replace(/</g, '&lt;'); }); }
  data.push(t);
 });
 return {data: data, layout: layout};
};
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def json_script(element_id: str, value: Any) -> str:
    """JSON in a ``<script type="application/json">`` block, safe from ``</script>``."""
    text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The installed plotly package's bundled plotly.js, to inline (never a CDN)."""
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def page(title: str, body: str, *, charts: dict[str, Any] | None = None,
         chart_js: str = "") -> str:
    """A complete page. With ``charts`` (id -> spec), plotly.js is inlined once and each
    ``<div class="chart" data-chart="id">`` is drawn lazily by ``chart_js``'s
    ``window.prodmlChart(spec)``, which returns ``{data, layout}``."""
    scripts = ""
    if charts:
        scripts = (json_script("chart-specs", charts)
                   + f"<script>{plotly_js()}</script><script>{chart_js}{LAZY_CHARTS}</script>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main>{scripts}</body></html>")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]],
          numeric: Iterable[int] = ()) -> str:
    """A table of already-escaped cell HTML; columns in ``numeric`` are right-aligned."""
    right = set(numeric)
    head = "".join(f'<th{" class=num" if i in right else ""}>{h}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in right else ""}>{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def badge(ok: bool, yes: str, no: str) -> str:
    return f'<span class="badge {"bad" if ok else "good"}">{escape(yes if ok else no)}</span>'


def number(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.3g}" if x == 0 or abs(x) >= 1e-3 else f"{x:.2e}"
    return escape(f"{x:,}" if isinstance(x, int) else x)


# -- the drift report -------------------------------------------------------------------------
def drift_page(report: Any) -> str:
    """The page for a :class:`prodml.data.drift.DriftReport`: verdict, a table of columns, then
    one card per column (most drifted first) with both sides' distributions overlaid."""
    ref_name, cur_name = report.side_names
    ranked = sorted(report.columns, key=lambda c: -c.severity)
    extras = [(c, title) for c, title in ((report.label, "Prior shift (label)"),
                                          (report.prediction, "Prediction drift")) if c]
    anchors = {c.name: f"col-{i}" for i, c in enumerate([*ranked, *[c for c, _ in extras]])}
    charts: dict[str, Any] = {}
    cards = []
    for c in [*[c for c, _ in extras], *ranked]:
        anchor = anchors[c.name]
        if c.distribution:
            charts[anchor] = {**c.distribution, "names": [ref_name, cur_name]}
        cards.append(_column_card(c, anchor, ref_name, cur_name, bool(c.distribution)))
    overview = table(
        ["column", "kind", "method", "score", "threshold", "drifted"],
        [[f'<a href="#{anchors[c.name]}">{escape(c.name)}</a>', escape(c.kind),
          escape(c.method), number(c.score), number(c.threshold),
          badge(c.drifted, "drift", "no")] for c in ranked], numeric=(3, 4))
    parts = [f"<h1>{escape(report.title)}</h1>",
             f'<p class="muted">{escape(ref_name)}: {report.reference_rows:,} rows · '
             f"{escape(cur_name)}: {report.current_rows:,} rows · dataset drift when at least "
             f"{report.drift_share:.0%} of the columns drift</p>",
             f'<div class="banner {"bad" if report.dataset_drift else "good"}">'
             f"{escape(report.headline())}</div>"]
    if report.from_profiles:
        parts.append('<p class="card">Computed from profiles: numeric statistics are estimated '
                     "from KLL sketches and uniform samples, frequencies from frequent-items "
                     "sketches (each column says how).</p>")
    for c, title in extras:
        parts.append(f'<p><b>{escape(title)}</b> on <a href="#{anchors[c.name]}">'
                     f"{escape(c.name)}</a>: {badge(c.drifted, 'drift', 'no drift')} "
                     f"({escape(c.method)} {number(c.score)})</p>")
    if report.skipped:
        parts.append("<h2>Not compared</h2><ul>" + "".join(
            f"<li><b>{escape(n)}</b>: {escape(why)}</li>" for n, why in report.skipped.items())
            + "</ul>")
    parts += ["<h2>Columns</h2>", overview, "<h2>Distributions</h2>", *cards]
    return page(report.title, "".join(parts), charts=charts, chart_js=DISTRIBUTION_CHART)


def _column_card(c: Any, anchor: str, ref_name: str, cur_name: str, chart: bool) -> str:
    role = {"label": " · prior shift (label)", "prediction": " · prediction drift"}.get(
        c.role, "")
    head = (f'<h3 id="{anchor}">{escape(c.name)} {badge(c.drifted, "drift", "no drift")}'
            f'<span class="muted">{escape(c.kind)}{escape(role)} · {escape(c.method_title)}: '
            f"{number(c.score)} (threshold {number(c.threshold)})</span></h3>")
    sides = "".join(f"<div><b>{escape(name)}</b> {_side_summary(summary)}</div>"
                    for name, summary in ((ref_name, c.reference), (cur_name, c.current)))
    note = f'<div class="muted">{escape(c.note)}</div>' if c.note else ""
    plot = f'<div class="chart" data-chart="{anchor}"></div>' if chart else ""
    return f'<div class="card">{head}<div class="sides">{sides}</div>{note}{plot}</div>'


def _side_summary(summary: dict[str, Any]) -> str:
    if not summary:
        return ""
    items = []
    for key, value in summary.items():
        if key == "top":
            value = ", ".join(f"{k} {share:.0%}" for k, share in value)
            items.append(f"top: {escape(value)}")
        else:
            items.append(f"{escape(key)} {number(value)}")
    return '<span class="muted">' + " · ".join(items) + "</span>"
