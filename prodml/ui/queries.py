"""Read-only aggregates for the dashboard, bounded in cost whatever the log's size.

An endpoint page covers a time window (the last hour, 6 hours, day or week) cut into about
a hundred buckets of a round size (1 s up to a day). Two statements read the log:

- the number of predictions per bucket, exact: one index range count per bucket on
  ``predictions (endpoint, time)``, which SQLite and PostgreSQL answer from the index alone
  (faster than one ``GROUP BY`` over the window, which sorts);
- the rows of a time sample of at most ``sample_rows`` predictions for everything that
  needs more than ``time``: latency percentiles, error rate, the split by version and
  route, confidence and the answers. The sample is the same share of every bucket, taken as
  short time slices spread over it, each slice one index range seek: a window of 1,000,000
  predictions costs 50,000 row reads, not a million. Below ``sample_rows`` the sample is
  the whole window, so small logs are exact. Shares found in the sample are scaled to the
  exact bucket counts.

Monitor series and alerts are read from the monitor runner's tables (``monitors``,
``monitor_results``, ``alerts``); an endpoint without a monitor simply has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
from sqlalchemy import CTE, BigInteger, and_, cast, func, literal, or_, select

from prodml.store import Store, now_ms
from prodml.store import tables as t

SPANS_MS = {"1h": 3_600_000, "6h": 6 * 3_600_000, "24h": 24 * 3_600_000,
            "7d": 7 * 24 * 3_600_000}
BUCKETS_MS = (1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
              600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
              43_200_000, 86_400_000)
TARGET_BUCKETS = 100
SAMPLE_ROWS = 50_000
SLICES_PER_BUCKET = 8  # sample slices spread over each bucket
ERROR_STATUSES = ("error", "timeout")
TOP_CLASSES = 8


# -- the window -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """``since <= time < until`` in ``bucket_ms`` buckets from ``start`` (the first data)."""

    span: str
    since: int
    until: int
    start: int  # the first bucket's start: the window's first prediction, floored
    bucket_ms: int

    @property
    def starts(self) -> list[int]:
        return list(range(self.start, self.until, self.bucket_ms))


def nice_bucket(range_ms: int) -> int:
    """The smallest round bucket giving at most ``TARGET_BUCKETS`` buckets over the range."""
    wanted = max(range_ms, 1) / TARGET_BUCKETS
    return next((b for b in BUCKETS_MS if b >= wanted), BUCKETS_MS[-1])


def choose_window(store: Store, endpoint: str, span: str = "24h", *,
                  now: int | None = None) -> Window:
    """The window ending now; buckets fit the stretch that holds data (two index seeks)."""
    span_ms = SPANS_MS.get(span, SPANS_MS["24h"])
    until = (now if now is not None else now_ms()) + 1
    since = until - span_ms
    p = t.predictions
    with store.read() as conn:
        first = conn.execute(select(func.min(p.c.time)).where(
            p.c.endpoint == endpoint, p.c.time >= since, p.c.time < until)).scalar()
    first = since if first is None else int(first)
    bucket = nice_bucket(until - first)
    return Window(span if span in SPANS_MS else "24h", since, until,
                  max(since, first - first % bucket), bucket)


def last_prediction(store: Store, endpoint: str) -> int | None:
    p = t.predictions
    with store.read() as conn:
        value = conn.execute(select(func.max(p.c.time)).where(p.c.endpoint == endpoint)
                             ).scalar()
    return None if value is None else int(value)


# -- traffic ----------------------------------------------------------------------------------
@dataclass
class Traffic:
    """Per-bucket aggregates of an endpoint's window, by series (``loan/2 · canary``)."""

    window: Window
    buckets: list[int]  # bucket starts (ms)
    counts: list[int]  # exact predictions per bucket
    sampled: int  # rows read for the sample
    fraction: float  # share of each bucket's time sampled (1.0: every row)
    series: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    summary: list[dict[str, Any]] = field(default_factory=list)  # one row per series
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def exact(self) -> bool:
        return self.fraction >= 1.0


def bucket_counts(store: Store, endpoint: str, window: Window) -> list[int]:
    """Exact predictions per bucket: an index range count each (no sort of the window)."""
    p = t.predictions
    starts = window.starts
    buckets = _sequence("buckets", window.start, window.bucket_ms, window.until)
    count = (select(func.count()).select_from(p)
             .where(p.c.endpoint == endpoint, p.c.time >= buckets.c.x,
                    p.c.time < buckets.c.x + window.bucket_ms)
             .correlate(buckets).scalar_subquery())
    with store.read() as conn:
        found = dict(conn.execute(select(buckets.c.x, count)).all())
    return [int(found.get(s, 0)) for s in starts]


def _sequence(name: str, start: int, step: int, stop: int) -> CTE:
    """``start, start + step, ...`` below ``stop`` as a one-column table ``x`` (a recursive
    CTE: SQLite has no ``VALUES ... AS t (x)``)."""
    first = select(cast(literal(start), BigInteger).label("x")).cte(name, recursive=True)
    return first.union_all(select((first.c.x + step).label("x"))
                           .where(first.c.x + step < stop))


_SAMPLE_COLUMNS = ("time", "model_name", "model_version", "route", "status", "latency_ms",
                   "confidence", "prediction")


def sample_rows(store: Store, endpoint: str, window: Window, fraction: float) -> pl.DataFrame:
    """The window's rows, or a time sample of ``fraction`` of each bucket (short slices)."""
    p = t.predictions
    columns = [p.c[name] for name in _SAMPLE_COLUMNS]
    if fraction >= 1.0:
        statement = select(*columns).where(p.c.endpoint == endpoint,
                                           p.c.time >= window.start, p.c.time < window.until)
    else:
        period = max(1, window.bucket_ms // SLICES_PER_BUCKET)
        length = max(1, round(period * fraction))
        slices = _sequence("slices", window.start, period, window.until)
        statement = (select(*columns).select_from(slices).join(
            p, and_(p.c.endpoint == endpoint, p.c.time >= slices.c.x,
                    p.c.time < slices.c.x + length)))
    with store.read() as conn:
        rows = conn.execute(statement).all()
    schema = {"time": pl.Int64, "model_name": pl.String, "model_version": pl.Int64,
              "route": pl.String, "status": pl.String, "latency_ms": pl.Float64,
              "confidence": pl.Float64, "prediction": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def traffic(store: Store, endpoint: str, window: Window, *,
            sample_limit: int = SAMPLE_ROWS) -> Traffic:
    """Throughput, latency p50/p99, error rate and confidence per bucket and series."""
    counts = bucket_counts(store, endpoint, window)
    total = sum(counts)
    fraction = 1.0 if total <= sample_limit else sample_limit / total
    frame = sample_rows(store, endpoint, window, fraction) if total else pl.DataFrame()
    result = Traffic(window, window.starts, counts, frame.height, fraction)
    if frame.height == 0:
        return result
    frame = frame.with_columns(
        ((pl.col("time") - window.start) // window.bucket_ms).alias("b"),
        pl.when(pl.col("model_name").is_null()).then(pl.col("route"))
        .otherwise(pl.col("model_name") + "/" + pl.col("model_version").cast(pl.String)
                   + " · " + pl.col("route")).alias("key"),
        pl.col("status").is_in(ERROR_STATUSES).alias("failed"))
    n = len(result.buckets)
    per_bucket = frame.group_by("b").agg(pl.len().alias("sampled"))
    sampled_in = np.zeros(n)
    sampled_in[per_bucket["b"].to_numpy()] = per_bucket["sampled"].to_numpy()
    scale = np.divide(np.asarray(counts, dtype=float), sampled_in,
                      out=np.zeros(n), where=sampled_in > 0)
    grouped = (frame.group_by("key", "b")
               .agg(pl.len().alias("n"), pl.col("failed").mean().alias("error_rate"),
                    pl.col("latency_ms").quantile(0.5, "linear").alias("p50"),
                    pl.col("latency_ms").quantile(0.99, "linear").alias("p99"),
                    pl.col("confidence").mean().alias("confidence"))
               .sort("key", "b"))
    minutes = window.bucket_ms / 60_000
    for key, part in grouped.group_by("key", maintain_order=True):
        b = part["b"].to_numpy()
        line: dict[str, list[float | None]] = {"b": b.tolist()}
        # Over every bucket: 0 where the bucket was read and this series had no row.
        rate = np.where((sampled_in > 0) | (np.asarray(counts) == 0), 0.0, np.nan)
        rate[b] = part["n"].to_numpy() * scale[b] / minutes
        line["per_min"] = _clean(rate)
        for name in ("error_rate", "p50", "p99", "confidence"):
            line[name] = _clean(part[name].to_numpy())
        result.series[str(key[0])] = line
    result.summary = (frame.group_by("key")
                      .agg(pl.len().alias("sampled"), pl.col("failed").mean().alias("error_rate"),
                           pl.col("latency_ms").quantile(0.5, "linear").alias("p50"),
                           pl.col("latency_ms").quantile(0.99, "linear").alias("p99"),
                           pl.col("confidence").mean().alias("confidence"),
                           (pl.col("status") == "review").sum().alias("review"))
                      .with_columns((pl.col("sampled") / frame.height * total)
                                    .round(0).cast(pl.Int64).alias("rows"))
                      .sort("rows", descending=True).to_dicts())
    result.outputs = outputs(frame, window)
    return result


def outputs(frame: pl.DataFrame, window: Window) -> dict[str, Any]:
    """What the endpoint answered: class shares per bucket and per version, or a histogram
    of numbers per version when the answers are numeric with many values."""
    answered = frame.filter(pl.col("route") != "shadow", pl.col("prediction").is_not_null(),
                            ~pl.col("failed"))
    if answered.height == 0:
        return {}
    text = answered["prediction"]
    numbers = text.cast(pl.Float64, strict=False)
    if numbers.null_count() == 0 and numbers.n_unique() > 20:
        by_version = {}
        for key, part in answered.with_columns(numbers.alias("value")).group_by(
                "key", maintain_order=True):
            by_version[str(key[0])] = _clean(part["value"].to_numpy())
        return {"kind": "numeric", "values": by_version}
    labels = {text: _label(text) for text in answered["prediction"].unique().to_list()}
    answered = answered.with_columns(
        pl.col("prediction").replace_strict(labels, return_dtype=pl.String).alias("class"))
    top = answered["class"].value_counts(sort=True)["class"].head(TOP_CLASSES).to_list()
    answered = answered.with_columns(
        pl.when(pl.col("class").is_in(top)).then(pl.col("class")).otherwise(pl.lit("other"))
        .alias("class"))
    classes = top + (["other"] if answered["class"].eq("other").any() else [])
    over_time = (answered.group_by("b", "class").agg(pl.len().alias("n"))
                 .with_columns((pl.col("n") / pl.col("n").sum().over("b")).alias("share")))
    shares: dict[str, dict[str, list[Any]]] = {}
    for name in classes:
        part = over_time.filter(pl.col("class") == name).sort("b")
        shares[name] = {"b": part["b"].to_list(), "share": _clean(part["share"].to_numpy())}
    by_version = (answered.group_by("key", "class").agg(pl.len().alias("n"))
                  .with_columns((pl.col("n") / pl.col("n").sum().over("key")).alias("share")))
    versions: dict[str, dict[str, float]] = {}
    for row in by_version.iter_rows(named=True):
        versions.setdefault(row["key"], {})[row["class"]] = float(row["share"])
    return {"kind": "classes", "classes": classes, "over_time": shares,
            "by_version": versions}


def _label(text: str) -> str:
    """An answer's JSON as a short label: strings unquoted, anything else as written."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text[:40]
    return value[:40] if isinstance(value, str) else text[:40]


def _clean(array: Any) -> list[float | None]:
    """Floats for JSON: NaN and infinities as None (a gap in a chart)."""
    out = np.asarray(array, dtype=float)
    return [None if not math.isfinite(v) else float(v) for v in out.tolist()]


# -- overview ---------------------------------------------------------------------------------
def recent_counts(store: Store, since: int) -> dict[str, int]:
    """Predictions per endpoint since ``since`` (index range counts)."""
    p, e = t.predictions, t.endpoints
    count = (select(func.count()).select_from(p)
             .where(p.c.endpoint == e.c.name, p.c.time >= since).scalar_subquery())
    with store.read() as conn:
        return {name: int(n) for name, n in conn.execute(select(e.c.name, count)).all()}


def open_review_counts(store: Store) -> dict[str, int]:
    r = t.review_items
    with store.read() as conn:
        return dict(conn.execute(select(r.c.endpoint, func.count()).where(r.c.status == "open")
                                 .group_by(r.c.endpoint)).all())


def models_of_run(store: Store, run_id: str) -> list[str]:
    """References of the model versions registered from a run."""
    v = t.model_versions
    with store.read() as conn:
        rows = conn.execute(select(v.c.model_name, v.c.version).where(v.c.run_id == run_id)
                            .order_by(v.c.model_name, v.c.version)).all()
    return [f"{name}/{version}" for name, version in rows]


def blessings(store: Store) -> dict[str, bool]:
    """Each gated version's latest verdict (``{"loan/2": True}``): one query for a list."""
    e, v = t.evaluations, t.model_versions
    statement = (select(v.c.model_name, v.c.version, e.c.blessed)
                 .join(v, v.c.id == e.c.version_id).where(e.c.blessed.is_not(None))
                 .order_by(e.c.id))
    with store.read() as conn:
        return {f"{name}/{version}": bool(blessed)
                for name, version, blessed in conn.execute(statement)}


# -- monitors and alerts ----------------------------------------------------------------------
def monitors(store: Store, endpoint: str) -> list[dict[str, Any]]:
    """The endpoint's monitors: name, spec, progress (no pending rows or detectors)."""
    m = t.monitors
    columns = [m.c[name] for name in ("name", "endpoint", "spec", "enabled", "windows",
                                      "latest_window_end", "last_run_at", "last_error")]
    with store.read() as conn:
        return [dict(r) for r in conn.execute(select(*columns).where(m.c.endpoint == endpoint)
                                              .order_by(m.c.name)).mappings().all()]


MONITOR_SERIES = ("drift_score[%", "drifted[%", "class_share[%", "mean_confidence", "estimated_%",
                  "accuracy", "precision", "recall", "f1", "roc_auc", "drift_share",
                  "prior_shift_score")


def monitor_series(store: Store, endpoint: str, since: int, *, limit: int = 200_000
                   ) -> dict[str, dict[str, dict[str, list[Any]]]]:
    """``{monitor: {series: {"t": [window_end...], "v": [value...]}}}`` of the charted
    series of the endpoint's monitors, windows ending since ``since``."""
    r = t.monitor_results
    wanted = [r.c.series.like(s) if "%" in s else r.c.series == s for s in MONITOR_SERIES]
    statement = (select(r.c.monitor, r.c.series, r.c.window_end, r.c.value)
                 .where(r.c.endpoint == endpoint, r.c.window_end >= since, or_(*wanted))
                 .order_by(r.c.window_end, r.c.id).limit(limit))
    out: dict[str, dict[str, dict[str, list[Any]]]] = {}
    with store.read() as conn:
        for monitor, name, end, value in conn.execute(statement):
            line = out.setdefault(monitor, {}).setdefault(name, {"t": [], "v": []})
            line["t"].append(int(end))
            line["v"].append(None if value is None or not math.isfinite(value) else value)
    return out


def alerts(store: Store, *, endpoint: str | None = None, status: str | None = "firing",
           limit: int = 100) -> list[dict[str, Any]]:
    """Alert episodes, newest first (every column of the ``alerts`` table)."""
    a = t.alerts
    statement = select(a).order_by(a.c.fired_at.desc(), a.c.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(a.c.status == status)
    if endpoint is not None:
        statement = statement.where(a.c.endpoint == endpoint)
    with store.read() as conn:
        return [dict(r) for r in conn.execute(statement).mappings().all()]


def drift_thresholds(monitor_rows: list[dict[str, Any]]) -> dict[str, float]:
    """Thresholds on ``drift_score[...]`` declared in monitor specs: an alert rule's static
    bound on a feature's score, else the drift check's threshold for the feature, else its
    threshold for every feature (``*``). Undeclared, each method's default applies (the
    charts then mark the windows the monitor found drifted)."""
    found: dict[str, float] = {}
    for row in monitor_rows:
        spec = row.get("spec")
        if not isinstance(spec, dict):
            continue
        drift = (spec.get("checks") or {}).get("drift")
        if isinstance(drift, dict):
            if isinstance(drift.get("threshold"), (int, float)):
                found.setdefault("*", float(drift["threshold"]))
            for feature, bound in (drift.get("thresholds") or {}).items():
                if isinstance(bound, (int, float)):
                    found.setdefault(str(feature), float(bound))
        for rule in spec.get("alerts") or ():
            if not isinstance(rule, dict):
                continue
            series = str(rule.get("series", ""))
            bound = rule.get("upper", rule.get("lower"))
            if series.startswith("drift_score[") and series.endswith("]") \
                    and isinstance(bound, (int, float)):
                found[series[len("drift_score["):-1]] = float(bound)
    return found
