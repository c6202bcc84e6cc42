"""The dashboard's aggregates on SQLite and PostgreSQL: exact counts, the time sample, the
window's buckets, monitor thresholds, the deployment split and the reports folder's guard."""

from __future__ import annotations

import numpy as np
import pytest

from prodml.serving import deployment as d
from prodml.store import tables as t
from prodml.ui import queries, reports, views

MINUTE = 60_000


def _log(store, n: int, start: int, span_ms: int, seed: int = 0) -> dict:
    """``n`` predictions of endpoint ``e`` spread over ``span_ms``: 80% loan/1 primary, 20%
    loan/2 canary, 5% errors; returns the columns."""
    rng = np.random.default_rng(seed)
    times = np.sort(start + rng.integers(0, span_ms, n))
    canary = rng.random(n) < 0.2
    failed = rng.random(n) < 0.05
    latency = rng.lognormal(2, 0.5, n)
    answer = rng.choice(["approve", "reject"], n)
    rows = [{"id": f"{int(tm):012x}{i:020x}", "time": int(tm), "endpoint": "e",
             "model_name": "loan", "model_version": 2 if c else 1,
             "route": "canary" if c else "primary", "revision": 1,
             "prediction": None if f else f'"{a}"', "confidence": 0.5 + (i % 50) / 100,
             "latency_ms": float(lat), "status": "error" if f else "ok"}
            for i, (tm, c, f, lat, a) in enumerate(zip(times, canary, failed, latency, answer))]
    with store.write() as conn:
        conn.execute(t.predictions.insert(), rows)
    return {"time": times, "canary": canary, "failed": failed, "latency": latency}


def test_traffic_is_exact_below_the_sample_size(store):
    now = 1_700_000_000_000
    log = _log(store, 1000, now - 10 * MINUTE, 10 * MINUTE)
    window = queries.choose_window(store, "e", "1h", now=now)
    assert window.bucket_ms == 10_000 and window.start <= int(log["time"][0])
    traffic = queries.traffic(store, "e", window)
    assert traffic.exact and traffic.total == 1000 and traffic.sampled == 1000
    rows = {row["key"]: row for row in traffic.summary}
    canary = log["canary"]
    assert rows["loan/2 · canary"]["rows"] == canary.sum()
    assert rows["loan/1 · primary"]["error_rate"] == pytest.approx(log["failed"][~canary].mean())
    assert rows["loan/2 · canary"]["p99"] == pytest.approx(
        np.quantile(log["latency"][canary], 0.99))
    per_bucket = np.bincount((log["time"] - window.start) // window.bucket_ms,
                             minlength=len(traffic.buckets))
    assert traffic.counts == per_bucket.tolist()
    line = traffic.series["loan/1 · primary"]
    assert len(line["per_min"]) == len(traffic.buckets) and len(line["p50"]) == len(line["b"])
    assert traffic.outputs["kind"] == "classes"
    assert set(traffic.outputs["classes"]) == {"approve", "reject"}


def test_a_large_window_is_sampled_but_counted_exactly(store):
    now = 1_700_000_000_000
    log = _log(store, 6000, now - 50 * MINUTE, 50 * MINUTE, seed=1)
    window = queries.choose_window(store, "e", "1h", now=now)
    traffic = queries.traffic(store, "e", window, sample_limit=1000)
    assert not traffic.exact and traffic.fraction == pytest.approx(1000 / 6000)
    assert traffic.total == 6000  # the counts stay exact
    assert 500 < traffic.sampled < 1500  # a time sample of about a sixth of the rows
    shares = {row["key"]: row["rows"] / 6000 for row in traffic.summary}
    assert shares["loan/2 · canary"] == pytest.approx(log["canary"].mean(), abs=0.05)
    # the sample is spread over the whole window: every busy bucket holds sampled rows
    assert all(line["per_min"] for line in traffic.series.values())
    sampled_buckets = set(traffic.series["loan/1 · primary"]["b"])
    busy = {i for i, c in enumerate(traffic.counts) if c > 20}
    assert len(busy - sampled_buckets) <= len(busy) // 10


def test_no_predictions_no_traffic(store):
    window = queries.choose_window(store, "nobody", "24h", now=1_700_000_000_000)
    traffic = queries.traffic(store, "nobody", window)
    assert traffic.total == 0 and traffic.series == {} and traffic.summary == []
    assert queries.last_prediction(store, "nobody") is None


@pytest.mark.parametrize(("range_ms", "bucket"), [
    (0, 1_000), (50_000, 1_000), (3_600_000, 60_000), (86_400_000, 900_000),
    (7 * 86_400_000, 7_200_000)])
def test_buckets_are_round_and_about_a_hundred(range_ms, bucket):
    assert queries.nice_bucket(range_ms) == bucket


def test_drift_thresholds_from_the_monitor_spec():
    spec = {"checks": {"drift": {"threshold": 0.1, "thresholds": {"age": 0.2}}},
            "alerts": [{"series": "drift_score[salary]", "upper": 0.3},
                       {"series": "error_rate", "upper": 0.05}]}
    assert queries.drift_thresholds([{"spec": spec}]) == {"*": 0.1, "age": 0.2, "salary": 0.3}
    assert queries.drift_thresholds([{"spec": {"checks": {"drift": False}}}]) == {}


def test_the_split_read_off_the_deployment_tree():
    canary = d.parse_spec({"kind": "automation", "mode": "partial", "node": {
        "kind": "canary", "primary": "m/1", "candidate": "m/2", "steps": [20, 100]}})
    assert views.strategy(canary) == "partial automation · canary"
    assert [(s["model"], s["percent"], s["role"]) for s in views.split(canary)] == [
        ("m/1", 80.0, "primary"), ("m/2", 20.0, "canary")]
    pair = d.parse_spec({"kind": "blue_green", "blue": "m/1", "green": "m/2",
                         "active": "green"})
    assert [(s["model"], s["percent"]) for s in views.split(pair)] == [("m/2", 100.0),
                                                                       ("m/1", 0.0)]
    shadow = d.parse_spec({"kind": "shadow", "primary": "m/1",
                           "mirrors": [{"model": "m/3", "percent": 25}]})
    assert views.strategy(shadow) == "shadow"
    assert views.split(shadow)[1]["percent"] == 25 and "shadow" in views.split(shadow)[1]["role"]


def test_reports_are_served_from_their_folder_only(tmp_path):
    from prodml.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", str(tmp_path / "artifacts"))
    folder = reports.reports_folder(store)
    assert folder == tmp_path / "reports"
    folder.mkdir()
    (folder / "drift.html").write_text("<p>ok</p>")
    (folder / ".hidden.html").write_text("<p>no</p>")
    (tmp_path / "outside.html").write_text("<p>no</p>")
    (folder / "link.html").symlink_to(tmp_path / "outside.html")
    assert [r["name"] for r in reports.list_reports(store)] == ["drift.html"]
    assert reports.report_path(store, "drift.html") == (folder / "drift.html").resolve()
    for name in ("../outside.html", "..%2Foutside.html", ".hidden.html", "sub/x.html",
                 "p.db", "missing.html", "link.html", "..\\outside.html"):
        assert reports.report_path(store, name) is None, name
