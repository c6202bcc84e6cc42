"""The demo's monitoring act: later loan traffic with a drift and a concept change, watched.

After the serving act, applications keep coming to the ``loan`` endpoint over HTTP, and
their true outcomes arrive later through ``POST /feedback``. Two things happen to them, at
known points: salaries inflate, a ramp from ``drift_at`` on (data drift on ``salary``,
which the approval rule does not use), and at ``change_at`` the approval rule itself
changes (Agrawal's classification function 2, age and education, becomes function 0, age
bands): a sudden concept change. A monitor runs after each window of traffic, reading only
what is new; the act returns the alerts with the window each fired in, next to the windows
where the truth says they should, and the detection delays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from prodml.demo.data import FEATURES, LABEL, loan_applications
from prodml.demo.serving import ENDPOINT, running
from prodml.store import Store

MONITOR = "loan-watch"
FUNCTION_BEFORE, FUNCTION_AFTER = 2, 0  # Agrawal: age and education; then age bands only


def later_traffic(rows: int, seed: int, *, drift_at: int, ramp: int, inflation: float,
                  change_at: int) -> Any:
    """Applications in arrival order: salaries inflate from ``drift_at`` (linearly up to
    ``inflation`` over ``ramp`` rows); the approval rule changes at ``change_at``."""
    import pandas as pd

    before = loan_applications(change_at, seed, classification_function=FUNCTION_BEFORE)
    after = loan_applications(rows - change_at, seed + 1,
                              classification_function=FUNCTION_AFTER)
    frame = pd.concat([before, after], ignore_index=True)
    growth = np.clip((np.arange(rows) - drift_at) / ramp, 0, 1) * inflation
    frame["salary"] = frame["salary"] * (1 + growth)
    return frame


def monitoring_story(store: Store, *, seed: int = 42, rows: int = 12_000, window: int = 2_000,
                     drift_at: int = 4_000, change_at: int = 8_000, inflation: float = 0.3,
                     expected_accuracy: float = 0.95, server: Any = None,
                     since: int | None = None, actions: list[str] | None = None,
                     on_window: Callable[[int, Any], None] | None = None,
                     say: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Replay later traffic to the served ``loan`` endpoint and watch it; what fired when.

    The accuracy alert fires below ``expected_accuracy - 0.1`` (the models' test accuracy
    is what to expect of them)."""
    from prodml.monitoring.concept_drift import detection_delay
    from prodml.monitoring.runner import run_monitor
    from prodml.monitoring.store import list_alerts, save_monitor

    started = time.perf_counter()
    traffic = later_traffic(rows, seed + 7, drift_at=drift_at, ramp=window, inflation=inflation,
                            change_at=change_at)
    save_monitor({
        "endpoint": ENDPOINT, "name": MONITOR, "window": {"predictions": window},
        "since": since or "now",  # the later traffic only, not the serving act's
        "checks": {"performance": {"positive": 1, "min_coverage": 0.9},
                   "concept_drift": {"detectors": ["adwin"]}},
        "alerts": [*({"series": f"drifted[{f}]", "upper": 0.5} for f in FEATURES),
                   {"series": "accuracy", "lower": round(expected_accuracy - 0.1, 3),
                    "severity": "critical", "actions": list(actions or [])},
                   {"series": "concept_drift[adwin]", "upper": 0.5}]}, store=store)
    say(f"replaying {rows} later applications to {ENDPOINT}: salaries inflate from "
        f"application {drift_at}, the approval rule changes at {change_at}; monitor "
        f"{MONITOR} runs every {window} predictions")
    runs = []
    with running(store, server) as live, \
            httpx.Client(base_url=live.url, timeout=60) as client:
        for start in range(0, rows, window):
            part = traffic.iloc[start:start + window]
            answers: list[dict[str, Any]] = []
            for batch in range(0, len(part), 500):
                records = part[FEATURES].iloc[batch:batch + 500].to_dict(orient="records")
                response = client.post(f"/endpoints/{ENDPOINT}/predict",
                                       json={"records": records})
                response.raise_for_status()
                answers += response.json()["predictions"]
            live.feedback(answers, list(part[LABEL]))
            runs.append(run_monitor(MONITOR, store=store, lag_ms=0))
            if on_window is not None:  # e.g. the retraining act, once an alert asks for it
                on_window(start // window, runs[-1])
    alerts = sorted(list_alerts(monitor=MONITOR, store=store, limit=1000),
                    key=lambda a: (a.window_index or 0, a.id))
    detections = [d for run in runs for d in run.detections]
    found = detection_delay([d["position"] for d in detections], change_at)
    fired = [{"id": a.id, "rule": a.rule, "series": a.series, "window": a.window_index,
              "rows": f"{a.window_index * window}-{(a.window_index + 1) * window - 1}",
              "status": a.status, "kind": (a.finding or {}).get("kind"),
              "delay": (a.finding or {}).get("delay")} for a in alerts]
    for alert in fired:
        say(f"alert at window {alert['window']} (applications {alert['rows']}): "
            f"{alert['rule']}" + (f" — {alert['kind']}" if alert["kind"] not in (None, "none")
                                  else ""))
    return {"monitor": MONITOR, "endpoint": ENDPOINT, "rows": rows, "window": window,
            "drift_at": drift_at, "drift_window": drift_at // window,
            "change_at": change_at, "change_window": change_at // window,
            "alerts": fired, "detections": detections,
            "detection_delay": found.to_dict(),
            "early_alerts": [a for a in fired if a["window"] < drift_at // window],
            "read": sum(r.read for r in runs), "seconds": time.perf_counter() - started}
