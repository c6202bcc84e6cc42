"""What an alert that fires says about the change behind it: its kind, where it started,
how long it took to see it.

:func:`finding` runs :func:`~prodml.monitoring.change_kind.classify_change` over the
trailing windows of the series behind the alert (a 0/1 verdict such as ``drifted[age]`` is
judged on its score ``drift_score[age]``; a detector's firings on the labelled error rate),
with the noise ``scale`` of a rate where the window sizes give it (``sqrt(p(1-p)/n)``), and
measures the delay from the first window of the change to the firing (windows, seconds) and,
for a concept-drift detector, in labelled predictions from that window's first one to the
detection.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import select

from prodml.errors import ProdmlError
from prodml.monitoring.alerts import AlertEvent
from prodml.store import Store
from prodml.store import tables as t

TRAILING = 16  # windows the kind of change is judged on
RATE_PREFIXES = ("accuracy", "precision", "recall", "f1", "error_rate", "labelled_error_rate",
                 "class_share[", "missing_share[", "drift_share", "out_of_domain_share[",
                 "label_coverage", "null_prediction_share", "event_rate[", "skew_share")
LABEL_RATES = ("accuracy", "precision", "recall", "f1", "labelled_error_rate")


def judged(series: str) -> str:
    """The series whose course says what kind of change an alert on ``series`` saw.

    >>> judged("drifted[age]"), judged("concept_drift[adwin]"), judged("error_rate")
    ('drift_score[age]', 'labelled_error_rate', 'error_rate')
    """
    for prefix, target in (("drifted[", "drift_score["), ("skewed[", "skew_score["),
                           ("cbpe_outside_band[", "cbpe_gap[")):
        if series.startswith(prefix):
            return target + series[len(prefix):]
    return {"dataset_drift": "drift_share", "prior_shift": "prior_shift_score",
            "multivariate_drift": "multivariate_auc", "confidence_shift": "mean_confidence",
            "confidence_p_value": "mean_confidence"}.get(
        series, "labelled_error_rate" if series.startswith("concept_drift[") else series)


def finding(event: AlertEvent, *, store: Store, monitor: str, state: dict[str, Any],
            new_values: dict[str, dict[int, float]], stored: bool = True,
            trend_windows: int = 6) -> dict[str, Any]:
    """The kind of change behind a firing ``event``, where it started, how late we were.

    ``state`` is the monitor's (its recent windows and detections); ``new_values`` the
    series computed in this run, not stored yet; ``stored`` False ignores the stored ones
    (a full run that replaces them).
    """
    from prodml.monitoring.change_kind import classify_change

    series = judged(event.series)
    indices, values = trailing(store, monitor, series, event.at, new_values, stored)
    out: dict[str, Any] = {"series": series}
    try:
        found = classify_change(values, k=min(trend_windows, max(3, len(values))),
                                scale=_scale(store, monitor, series, indices, values, state,
                                             new_values, stored))
        out.update(found.to_dict())
        change = None if found.window is None else indices[found.window]
    except ProdmlError as exc:
        out.update({"kind": "none", "window": None, "evidence": {"reason": str(exc)}})
        change = None
    out["change_window"] = change
    detection = None
    if event.series.startswith("concept_drift["):
        name = event.series[len("concept_drift["):-1]
        detection = next((d for d in state.get("detections", [])
                          if d["detector"] == name and d["window_index"] == event.at), None)
        out["detection"] = detection
    if change is not None:
        windows = {w["index"]: w for w in state.get("recent", [])}
        start, fired = windows.get(change, {}), windows.get(event.at, {})
        detected_at = detection["time"] if detection else fired.get("end")
        out["delay"] = {
            "windows": event.at - change,
            "seconds": (detected_at - start["start"]) / 1000
            if start and detected_at is not None else None,
            "predictions": detection["position"] - start["stream_start"]
            if detection and start.get("stream_start") is not None else None}
    return out


def trailing(store: Store, monitor: str, series: str, at: int,
             new_values: dict[str, dict[int, float]], stored: bool = True,
             n: int = TRAILING) -> tuple[list[int], list[float]]:
    """The last ``n`` finite values of ``series`` up to window ``at``: (indices, values)."""
    r = t.monitor_results
    rows = []
    if stored:
        with store.read() as conn:
            rows = conn.execute(
                select(r.c.window_index, r.c.value).where(
                    r.c.monitor == monitor, r.c.series == series, r.c.window_index <= at)
                .order_by(r.c.window_index.desc()).limit(n)).all()
    points = {i: (math.nan if v is None else v) for i, v in rows}
    points.update({i: v for i, v in new_values.get(series, {}).items() if i <= at})
    ordered = sorted((i, v) for i, v in points.items() if math.isfinite(v))[-n:]
    return [i for i, _ in ordered], [v for _, v in ordered]


def _scale(store: Store, monitor: str, series: str, indices: list[int], values: list[float],
           state: dict[str, Any], new_values: dict[str, dict[int, float]], stored: bool
           ) -> float | None:
    """The noise of one window's value of a rate: ``sqrt(p(1-p)/n)``; None otherwise."""
    if not series.startswith(RATE_PREFIXES) or not values:
        return None
    p = float(np.median(values))
    if series.startswith(LABEL_RATES):
        _, counts = trailing(store, monitor, "labelled", indices[-1], new_values, stored)
    else:
        counts = [w["rows"] for w in state.get("recent", []) if w["index"] in indices]
    n = float(np.median(counts)) if counts else 0.0
    if n <= 0 or not 0 < p < 1:
        return None
    return math.sqrt(p * (1 - p) / n)
