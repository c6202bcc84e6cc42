"""The demo's last page: one self-contained HTML summary of the whole lifecycle.

It reads the demo's result (a plain dict: what each act returned) and links to the other
reports (evaluation, drift) and to the dashboard pages where the same records live. A
section whose act did not run (``--no-serve``) is left out rather than shown empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prodml.reports.html import badge, escape, number, page, table


def write_summary(result: dict[str, Any], path: str | Path) -> Path:
    """Write the summary page for ``result`` (``DemoResult.to_dict()``) to ``path``.

    >>> import tempfile, os
    >>> out = write_summary({"rows": 10, "runs": {}, "metrics": {}, "gates": {}},
    ...                     os.path.join(tempfile.mkdtemp(), "s.html"))
    >>> "<h1>" in out.read_text()
    True
    """
    path = Path(path)
    sections = [_headline(result), _data(result), _models(result), _serving(result),
                _monitoring(result), _retraining(result), _links(result)]
    path.write_text(page("prodml demo: the loan-approval lifecycle",
                         "".join(s for s in sections if s)))
    return path


def _headline(r: dict[str, Any]) -> str:
    final = (r.get("retraining") or {}).get("final") or (r.get("serving") or {}).get("final")
    url = r.get("dashboard_url")
    return ("<h1>The loan-approval lifecycle</h1>"
            f"<p class=muted>{number(r.get('rows'))} generated applications · store "
            f"{escape(r.get('store_url', ''))}</p>"
            + (f"<div class='banner good'>serving now: {escape(final)}</div>" if final else "")
            + (f"<p>Dashboard: <a href='{escape(url)}/ui'>{escape(url)}/ui</a> (live while "
               "the demo serves)</p>" if url else ""))


def _data(r: dict[str, Any]) -> str:
    rows = []
    profile = r.get("training_profile") or {}
    if profile:
        rows.append(["training profile", f"{number(profile.get('rows'))} rows x "
                     f"{len(profile.get('columns', []))} columns"])
    check = r.get("validation") or {}
    if check:
        rows.append(["schema check of later traffic",
                     badge(not check.get("ok", True), "anomalies", "valid") + " "
                     + escape(check.get("headline", ""))])
    lab = r.get("labelling") or {}
    if lab:
        rows += [["labels", f"{lab['annotations']} annotations of {lab['items']} items by "
                  f"{len(lab['labelers'])} labelers"],
                 ["agreement", f"Krippendorff's alpha {lab['krippendorff_alpha']:.3f}, "
                  f"Fleiss' kappa {lab['fleiss_kappa']:.3f}"],
                 ["careless labeler", f"{escape(lab['careless'])} agrees with the consensus "
                  f"{lab['careless_agreement']:.0%} of the time"],
                 ["human-level performance", f"{lab['hlp']:.1%} (without "
                  f"{escape(lab['careless'])}: {lab['hlp_without_careless']:.1%})"]]
    drift = r.get("drift") or {}
    if drift:
        rows.append(["a year later", escape(drift.get("headline", ""))])
    return "<h2>1. Data</h2>" + table(["", ""], rows) if rows else ""


def _models(r: dict[str, Any]) -> str:
    metrics = r.get("metrics") or {}
    if not metrics:
        return ""
    names = ("accuracy", "f1", "roc_auc", "log_loss")
    rows = [[escape(role), f"<code>{escape(r['runs'].get(role, '')[:8])}</code>",
             *[number(m.get(k)) for k in names]] for role, m in metrics.items()]
    gates = [[escape(v["ref"]), escape(role), badge(not v["blessed"], "not blessed", "blessed"),
              escape("; ".join(v["failures"][:3]))] for role, v in (r.get("gates") or {}).items()]
    return ("<h2>2. Models</h2>" + table(["role", "run", *names], rows, numeric=range(2, 6))
            + "<h3>Release gate</h3>" + table(["version", "role", "verdict", "failures"], gates)
            + f"<p>champion: <b>{escape(r.get('champion', ''))}</b></p>")


def _history(events: list[dict[str, Any]]) -> str:
    return table(["rev", "action", "by", "deployment", "why"],
                 [[str(e["revision"]), escape(e["action"]), escape(e["actor"]),
                   escape(e["to"] or "-"), escape(e["reason"] or "")] for e in events])


def _serving(r: dict[str, Any]) -> str:
    act = r.get("serving") or {}
    if "history" not in act:
        return ""
    shadow = act.get("shadow_agreement") or {}
    agreed = (f"<p>shadow {escape(act['challenger'])} agreed with the champion on "
              f"{shadow['agreement']:.1%} of {shadow['compared']} requests</p>"
              if shadow.get("agreement") is not None else "")
    log = ", ".join(f"{escape(k)}: {v}" for k, v in act.get("log", {}).items())
    return ("<h2>3. Serving: shadow, then canary</h2>" + agreed + _history(act["history"])
            + f"<p class=muted>prediction log: {log}</p>")


def _monitoring(r: dict[str, Any]) -> str:
    story = (r.get("serving") or {}).get("monitoring") or {}
    if not story:
        return ""
    rows = [[str(a["window"]), escape(a["rows"]), escape(a["rule"]), escape(a["status"]),
             escape(a.get("kind") or "")] for a in story.get("alerts", [])]
    delay = story.get("detection_delay") or {}
    return ("<h2>4. Monitoring later traffic</h2>"
            f"<p>{story['rows']} applications in windows of {story['window']}: salaries "
            f"inflate from application {story['drift_at']} (window {story['drift_window']}), "
            f"the approval rule changes at {story['change_at']} (window "
            f"{story['change_window']}).</p>"
            + table(["window", "applications", "alert", "status", "kind of change"], rows)
            + (f"<p>ADWIN detection delay: {escape(delay.get('delay'))} predictions</p>"
               if delay.get("delay") is not None else ""))


def _retraining(r: dict[str, Any]) -> str:
    act = r.get("retraining") or {}
    if not act:
        return ""
    steps = [[escape(s["step"]), escape(s["status"]), number(s.get("seconds"))]
             for s in act.get("steps", [])]
    return ("<h2>5. Retraining, from the alert to a new champion</h2>"
            f"<p>alert <b>{escape(act.get('alert', ''))}</b> started pipeline run "
            f"<code>{escape(act.get('pipeline_run', ''))}</code> with strategy "
            f"<b>{escape(act.get('strategy', ''))}</b>: {escape(act.get('why', ''))}</p>"
            + table(["step", "status", "seconds"], steps, numeric=[2])
            + (f"<p>gate against the champion on recent traffic: "
               f"{badge(not act.get('blessed'), 'not blessed', 'blessed')} "
               f"{escape(act.get('gate', ''))}</p>")
            + (_history(act["history"]) if act.get("history") else ""))


def _links(r: dict[str, Any]) -> str:
    links = [(name, r.get(key)) for name, key in (("evaluation report", "evaluation_report"),
                                                  ("drift report", "drift_report"))]
    links.append(("validation report", (r.get("validation") or {}).get("report")))
    url = r.get("dashboard_url")
    if url:
        links += [("dashboard: endpoint loan", f"{url}/ui/endpoints/loan"),
                  ("dashboard: models", f"{url}/ui/models")]
    items = "".join(f"<li><a href='{escape(_href(href))}'>{escape(name)}</a></li>"
                    for name, href in links if href)
    return f"<h2>Reports and pages</h2><ul>{items}</ul>" if items else ""


def _href(target: str) -> str:
    return target if target.startswith("http") else Path(target).resolve().as_uri()
