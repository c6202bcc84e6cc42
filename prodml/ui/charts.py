"""Plotly figures (``{"data": [...], "layout": {...}}``) from the dashboard's aggregates.

Figures are plain dicts: the page carries them as JSON and ``static/dashboard.js`` draws
each with the plotly.js the server streams from the installed plotly package. Text that
Plotly would read as its HTML subset (trace names, categories, titles) is escaped here.
Times are milliseconds since the epoch on a date axis (UTC).
"""

from __future__ import annotations

from typing import Any

from prodml.ui.queries import Traffic

COLORS = ("#0969da", "#e16f24", "#1a7f37", "#8250df", "#cf222e", "#9a6700", "#1b7c83",
          "#bf3989", "#57606a", "#0550ae")
Figure = dict[str, Any]


def text(value: Any) -> str:
    """A label as Plotly's pseudo-HTML shows it literally."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def layout(y_title: str, *, percent: bool = False, dates: bool = True,
           events: list[dict[str, Any]] | None = None, span: tuple[int, int] | None = None,
           **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "margin": {"l": 60, "r": 16, "t": 24, "b": 30}, "height": 300,
        "yaxis": {"title": {"text": text(y_title)}, "rangemode": "tozero", "automargin": True},
        "xaxis": {"type": "date", **({"range": list(span)} if span else {})} if dates else {},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"}, "hovermode": "x unified" if dates
        else "closest", "showlegend": True}
    if percent:
        out["yaxis"]["tickformat"] = ".1%"
    if events:
        out["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": e["time"],
                          "x1": e["time"], "y0": 0, "y1": 1,
                          "line": {"dash": "dot", "width": 1, "color": "#8c959f"}}
                         for e in events]
        out["annotations"] = [{"x": e["time"], "xref": "x", "yref": "paper", "y": 1,
                               "yanchor": "bottom", "showarrow": False, "font": {"size": 10},
                               "text": text(f"{e['action']} r{e['revision']}")}
                              for e in events]
    out.update(extra)
    return out


def _span(traffic: Traffic) -> tuple[int, int]:
    return traffic.window.start, traffic.window.until


def _times(traffic: Traffic, buckets: list[int]) -> list[int]:
    return [traffic.buckets[b] for b in buckets]


def _lines(traffic: Traffic, field: str, *, dash: str | None = None,
           suffix: str = "") -> list[dict[str, Any]]:
    traces = []
    for i, (key, line) in enumerate(traffic.series.items()):
        trace = {"type": "scatter", "mode": "lines+markers", "name": text(key + suffix),
                 "x": _times(traffic, line["b"]), "y": line[field],
                 "line": {"color": COLORS[i % len(COLORS)], "width": 1.5},
                 "marker": {"size": 3}, "connectgaps": False}
        if dash:
            trace["line"]["dash"] = dash
        traces.append(trace)
    return traces


def latency(traffic: Traffic, events: list[dict[str, Any]]) -> Figure:
    data = _lines(traffic, "p50", suffix=" p50") + _lines(traffic, "p99", dash="dash",
                                                          suffix=" p99")
    return {"data": data, "layout": layout("latency (ms)", events=events, span=_span(traffic))}


def throughput(traffic: Traffic, events: list[dict[str, Any]]) -> Figure:
    data = [{**trace, "x": traffic.buckets, "mode": "lines"}
            for trace in _lines(traffic, "per_min")]
    minutes = traffic.window.bucket_ms / 60_000
    data.append({"type": "scatter", "mode": "lines", "name": "all (exact)",
                 "x": traffic.buckets, "y": [c / minutes for c in traffic.counts],
                 "line": {"color": "#57606a", "width": 1, "dash": "dot"}})
    return {"data": data, "layout": layout("predictions / min", events=events, span=_span(traffic))}


def errors(traffic: Traffic, events: list[dict[str, Any]]) -> Figure:
    return {"data": _lines(traffic, "error_rate"),
            "layout": layout("error rate", percent=True, events=events, span=_span(traffic))}


def confidence(traffic: Traffic, events: list[dict[str, Any]]) -> Figure:
    return {"data": _lines(traffic, "confidence"),
            "layout": layout("mean confidence", events=events, span=_span(traffic))}


def outputs(traffic: Traffic) -> dict[str, Figure]:
    """The answers over time (class shares, stacked) and per version; or a histogram of
    numeric answers per version."""
    found = traffic.outputs
    if not found:
        return {}
    if found["kind"] == "numeric":
        data = [{"type": "histogram", "name": text(key), "x": values, "opacity": 0.6,
                 "histnorm": "probability", "marker": {"color": COLORS[i % len(COLORS)]}}
                for i, (key, values) in enumerate(found["values"].items())]
        return {"outputs": {"data": data, "layout": layout(
            "share", dates=False, barmode="overlay",
            xaxis={"title": {"text": "prediction"}})}}
    over_time = [{"type": "scatter", "mode": "lines", "stackgroup": "classes",
                  "name": text(name), "x": _times(traffic, line["b"]), "y": line["share"],
                  "line": {"width": 0.5, "color": COLORS[i % len(COLORS)]}}
                 for i, (name, line) in enumerate(found["over_time"].items())]
    classes = found["classes"]
    by_version = [{"type": "bar", "name": text(key), "x": [text(c) for c in classes],
                   "y": [shares.get(c, 0.0) for c in classes],
                   "marker": {"color": COLORS[i % len(COLORS)]}}
                  for i, (key, shares) in enumerate(found["by_version"].items())]
    return {"outputs": {"data": over_time, "layout": layout("share of answers", percent=True,
                                                            span=_span(traffic))},
            "outputs-by-version": {"data": by_version, "layout": layout(
                "share of answers", percent=True, dates=False, barmode="group",
                xaxis={"title": {"text": "answer"}, "type": "category"})}}


# -- monitors ---------------------------------------------------------------------------------
def _flatten(found: dict[str, dict[str, dict[str, list[Any]]]]) -> dict[str, dict[str, Any]]:
    """One ``{series: line}`` over all monitors, names prefixed when there are several."""
    several = len(found) > 1
    return {(f"{monitor}: {name}" if several else name): line
            for monitor, series in found.items() for name, line in series.items()}


def _inner(name: str, prefix: str) -> str | None:
    """``age`` from ``drift_score[age]`` (or ``daily: drift_score[age]``)."""
    bare = name.rpartition(": ")[2]
    if bare.startswith(prefix) and bare.endswith("]"):
        return bare[len(prefix):-1]
    return None


def monitor_figures(found: dict[str, dict[str, dict[str, list[Any]]]],
                    thresholds: dict[str, float]) -> dict[str, Figure]:
    """Drift per feature with thresholds, output shares, confidence and performance
    (realised and estimated) from the monitors' stored series; only those present."""
    series = _flatten(found)
    figures: dict[str, Figure] = {}
    drift = [(name, _inner(name, "drift_score["), line) for name, line in series.items()
             if _inner(name, "drift_score[") is not None]
    if drift:
        data: list[dict[str, Any]] = []
        first, last = (min(line["t"][0] for _, _, line in drift if line["t"]),
                       max(line["t"][-1] for _, _, line in drift if line["t"]))
        shared = thresholds.get("*")
        for i, (name, feature, line) in enumerate(drift):
            color = COLORS[i % len(COLORS)]
            data.append({"type": "scatter", "mode": "lines+markers", "name": text(feature),
                         "x": line["t"], "y": line["v"], "line": {"color": color},
                         "marker": {"size": 4}})
            bound = thresholds.get(str(feature))
            if bound is not None and bound != shared:
                data.append(_threshold(f"{feature} threshold", bound, first, last, color))
            flags = series.get(name.replace("drift_score[", "drifted["))
            if flags:
                hit = [(t, v) for t, v, f in zip(line["t"], line["v"], flags["v"]) if f]
                if hit:
                    data.append({"type": "scatter", "mode": "markers", "showlegend": False,
                                 "name": text(f"{feature} drifted"),
                                 "x": [h[0] for h in hit], "y": [h[1] for h in hit],
                                 "marker": {"symbol": "x", "size": 9, "color": "#cf222e"}})
        if shared is not None:
            data.append(_threshold("threshold", shared, first, last, "#cf222e"))
        figures["drift"] = {"data": data, "layout": layout("drift score")}
    shares = [(name, _inner(name, "class_share["), line) for name, line in series.items()
              if _inner(name, "class_share[") is not None]
    if shares:
        figures["monitor-outputs"] = {"data": [
            {"type": "scatter", "mode": "lines+markers", "name": text(cls), "x": line["t"],
             "y": line["v"], "line": {"color": COLORS[i % len(COLORS)]}}
            for i, (name, cls, line) in enumerate(shares)],
            "layout": layout("share of answers", percent=True)}
    confidence_lines = {name: line for name, line in series.items()
                        if name.rpartition(": ")[2] == "mean_confidence"}
    if confidence_lines:
        figures["monitor-confidence"] = {"data": [
            {"type": "scatter", "mode": "lines+markers", "name": text(name), "x": line["t"],
             "y": line["v"], "line": {"color": COLORS[i % len(COLORS)]}}
            for i, (name, line) in enumerate(confidence_lines.items())],
            "layout": layout("mean confidence")}
    performance = _performance(series)
    if performance:
        figures["performance"] = {"data": performance, "layout": layout("metric")}
    return figures


def _threshold(name: str, bound: float, first: int, last: int, color: str) -> dict[str, Any]:
    return {"type": "scatter", "mode": "lines", "name": text(name), "x": [first, last],
            "y": [bound, bound], "line": {"color": color, "dash": "dash", "width": 1}}


def _performance(series: dict[str, dict[str, Any]], most: int = 2) -> list[dict[str, Any]]:
    """Realised metrics (solid) and CBPE estimates (dashed, with a ±3 standard error band)
    for the first ``most`` of accuracy, ROC AUC, F1, precision, recall the monitor has."""
    bare_names = {name.rpartition(": ")[2] for name in series}
    metrics = tuple(m for m in ("accuracy", "roc_auc", "f1", "precision", "recall")
                    if m in bare_names or f"estimated_{m}" in bare_names)[:most]
    data: list[dict[str, Any]] = []
    i = 0
    for name, line in series.items():
        prefix, _, bare = name.rpartition(": ")
        head = f"{prefix}: " if prefix else ""
        if bare in metrics:
            data.append({"type": "scatter", "mode": "lines+markers",
                         "name": text(f"{head}{bare} (realised)"), "x": line["t"],
                         "y": line["v"], "line": {"color": COLORS[i % len(COLORS)]}})
            i += 1
        elif bare.startswith("estimated_") and bare.removeprefix("estimated_") in metrics:
            color = COLORS[i % len(COLORS)]
            se = series.get(f"{head}{bare}_se")
            if se and len(se["v"]) == len(line["v"]):
                upper = [None if v is None or s is None else v + 3 * s
                         for v, s in zip(line["v"], se["v"])]
                lower = [None if v is None or s is None else v - 3 * s
                         for v, s in zip(line["v"], se["v"])]
                data.append({"type": "scatter", "mode": "lines", "x": line["t"], "y": upper,
                             "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip",
                             "name": text(f"{head}{bare} +3se")})
                data.append({"type": "scatter", "mode": "lines", "x": line["t"], "y": lower,
                             "line": {"width": 0}, "fill": "tonexty", "showlegend": False,
                             "fillcolor": "rgba(87,96,106,0.15)", "hoverinfo": "skip",
                             "name": text(f"{head}{bare} -3se")})
            data.append({"type": "scatter", "mode": "lines+markers",
                         "name": text(f"{head}{bare.removeprefix('estimated_')} (estimated)"),
                         "x": line["t"], "y": line["v"],
                         "line": {"color": color, "dash": "dash"}})
            i += 1
    return data


# -- runs -------------------------------------------------------------------------------------
def metric_steps(key: str, points: list[Any]) -> Figure:
    return {"data": [{"type": "scatter", "mode": "lines+markers", "name": text(key),
                      "x": [p.step for p in points],
                      "y": [None if p.value != p.value else p.value for p in points],
                      "line": {"color": COLORS[0]}}],
            "layout": layout(key, dates=False, height=220, showlegend=False,
                             xaxis={"title": {"text": "step"}})}
