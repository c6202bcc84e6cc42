"""``GET /metrics``: the server's numbers in Prometheus' text format.

Requests, errors and latency per endpoint, version and route; requests refused as the
client's mistake (4xx) apart from those the server or its model failed (5xx); micro-batch
sizes; the prediction log's queue depth and commit latency; process memory and CPU. Each server has
its own registry (several apps in one process, as in the tests, never mix numbers). With
``--workers N`` each worker answers with its own numbers unless ``PROMETHEUS_MULTIPROC_DIR``
is set, in which case prometheus-client aggregates the workers' files.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector,
                               disable_created_metrics,
                               generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # the *_created series only double the scrape
LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class ServingMetrics:
    """The counters and histograms one server updates, and their exposition."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess
            multiprocess.MultiProcessCollector(self.registry)
            own: CollectorRegistry | None = None
        else:
            own = self.registry
            ProcessCollector(registry=self.registry)
        self.requests = Counter("prodml_requests", "Requests answered, by outcome.",
                                ["endpoint", "version", "route", "status"], registry=own)
        self.rows = Counter("prodml_rows", "Rows predicted.", ["endpoint", "version", "route"],
                            registry=own)
        self.latency = Histogram("prodml_request_latency_seconds",
                                 "Time from routing to logged answer.",
                                 ["endpoint", "version", "route"], buckets=LATENCY_BUCKETS,
                                 registry=own)
        # A client's mistake (4xx) is never the model's or the server's failure: two series.
        self.client_errors = Counter("prodml_http_errors",
                                     "Requests refused as the client's mistake (4xx), by code.",
                                     ["path_kind", "code"], registry=own)
        self.server_errors = Counter("prodml_server_errors",
                                     "Requests the server or its model failed (5xx), by code.",
                                     ["path_kind", "code"], registry=own)
        self._children: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        if own is not None:
            self.registry.register(_LiveNumbers(service))
        self.registry.register(_MonitorValues(getattr(service, "store", None)))

    def observe(self, endpoint: str, version: int | None, route: str, status: str,
                seconds: float, rows: int = 1) -> None:
        key = (endpoint, version, route, status)
        children = self._children.get(key)
        if children is None:  # label lookups cost microseconds: keep the children
            v = "" if version is None else str(version)
            children = (self.requests.labels(endpoint, v, route, status),
                        self.rows.labels(endpoint, v, route),
                        self.latency.labels(endpoint, v, route))
            self._children[key] = children
        children[0].inc()
        children[1].inc(rows)
        children[2].observe(seconds)

    def refused(self, path_kind: str, code: int) -> None:
        """Count a request answered with an error status: 4xx and 5xx apart."""
        counter = self.server_errors if code >= 500 else self.client_errors
        counter.labels(path_kind, str(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveNumbers:
    """Numbers read when scraped: the log's queue and commits, batch sizes, deployments."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.service.log.stats
        depth = GaugeMetricFamily("prodml_log_queue_depth",
                                  "Prediction records waiting to be committed.")
        depth.add_metric([], float(getattr(stats, "queue_depth", 0)))
        yield depth
        commits = CounterMetricFamily("prodml_log_commits", "Prediction log commits.")
        commits.add_metric([], float(getattr(stats, "commits", 0)))
        yield commits
        latency = GaugeMetricFamily("prodml_log_commit_latency_seconds",
                                    "Mean and last commit latency of the prediction log.",
                                    labels=["stat"])
        for name in ("mean", "last"):
            for attr in (f"{name}_commit_latency_ms", f"{name}_commit_ms"):
                if hasattr(stats, attr):
                    latency.add_metric([name], float(getattr(stats, attr) or 0) / 1000)
                    break
        yield latency
        yield from _log_faults(stats, self.service.endpoint_names())
        batches = GaugeMetricFamily("prodml_batch_size_mean",
                                    "Mean requests per model call (recent calls).",
                                    labels=["model"])
        for ref, sizes in self.service.batch_sizes().items():
            recent = sizes[-1000:]
            batches.add_metric([ref], sum(recent) / len(recent) if recent else 0.0)
        yield batches
        yield from _fleet(self.service)
        weight = GaugeMetricFamily("prodml_endpoint_revision", "Deployment revision served.",
                                   labels=["endpoint"])
        for endpoint in self.service.endpoints():
            weight.add_metric([endpoint.name], float(endpoint.revision))
        yield weight


def _fleet(service: Any) -> Iterator[Metric]:
    """This replica's view of the fleet: can it read the store, is it the controller."""
    probe, controller = getattr(service, "store_probe", None), getattr(service, "controller",
                                                                         None)
    if probe is not None:
        up = GaugeMetricFamily("prodml_store_reachable",
                               "1 while this replica's polls of the store succeed (readiness "
                               "follows it), 0 while they fail.")
        up.add_metric([], 1.0 if probe.reachable else 0.0)
        yield up
    if controller is not None:
        held = GaugeMetricFamily("prodml_canary_controller",
                                 "1 while this replica is the fleet's canary controller.",
                                 labels=["replica"])
        held.add_metric([controller.replica], 1.0 if controller.active else 0.0)
        yield held
        checks = CounterMetricFamily("prodml_canary_checks",
                                     "Canary checks this replica ran as the controller.",
                                     labels=["replica"])
        checks.add_metric([controller.replica], float(controller.checks))
        yield checks


def _log_faults(stats: Any, endpoints: list[str]) -> Iterator[Metric]:
    """The prediction log's losses and failed commits (per endpoint, 0 for every endpoint
    served), and whether it commits now."""
    zero = dict.fromkeys(endpoints, 0)
    dropped = CounterMetricFamily("prodml_log_dropped",
                                  "Prediction records answered or mirrored but not stored "
                                  "(failed commit nobody waited on, full queue).",
                                  labels=["endpoint"])
    for endpoint, count in sorted({**zero, **getattr(stats, "dropped_by_endpoint", {})}
                                  .items()):
        dropped.add_metric([endpoint], float(count))
    yield dropped
    failures = CounterMetricFamily("prodml_log_commit_failures",
                                   "Prediction log commits that failed, by endpoint in them.",
                                   labels=["endpoint"])
    for endpoint, count in sorted({**zero, **getattr(stats, "failed_commits_by_endpoint",
                                                     {})}.items()):
        failures.add_metric([endpoint], float(count))
    yield failures
    up = GaugeMetricFamily("prodml_log_healthy",
                           "1 while the prediction log commits, 0 from a failed commit until "
                           "one succeeds (readiness follows it).")
    up.add_metric([], 0.0 if getattr(stats, "failing", None) else 1.0)
    yield up


class _MonitorValues:
    """The monitors' latest window values and firing alerts, as gauges.

    Read from the ``monitors`` table (each monitor keeps its last window's series there) and
    the ``alerts`` table: two small queries, at most once every ``ttl`` seconds.
    """

    def __init__(self, store: Any, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._read_at = -ttl
        self._rows: tuple[list[Any], list[Any]] = ([], [])

    def describe(self) -> list[Metric]:
        return []

    def _read(self) -> tuple[list[Any], list[Any]]:
        import time

        from sqlalchemy import func, select

        from prodml.store import tables as t

        if time.monotonic() - self._read_at < self.ttl or self.store is None:
            return self._rows
        m, a = t.monitors, t.alerts
        try:
            with self.store.read() as conn:
                monitors = conn.execute(select(m.c.name, m.c.endpoint, m.c.latest,
                                               m.c.latest_window_end)
                                        .where(m.c.enabled.is_(True))).all()
                firing = conn.execute(select(a.c.monitor, a.c.endpoint, a.c.severity,
                                             func.count()).where(a.c.status == "firing")
                                      .group_by(a.c.monitor, a.c.endpoint, a.c.severity)).all()
        except Exception:  # noqa: BLE001 - a scrape never fails on the monitors' account
            return self._rows
        self._rows, self._read_at = (monitors, firing), time.monotonic()
        return self._rows

    def collect(self) -> Iterator[Metric]:
        monitors, firing = self._read()
        values = GaugeMetricFamily("prodml_monitor_value",
                                   "A monitored series' value in the monitor's last window.",
                                   labels=["monitor", "endpoint", "series"])
        ends = GaugeMetricFamily("prodml_monitor_window_end_seconds",
                                 "End of the monitor's last complete window (Unix time).",
                                 labels=["monitor", "endpoint"])
        for name, endpoint, latest, window_end in monitors:
            for series, value in sorted((latest or {}).items()):
                if value is not None:
                    values.add_metric([name, endpoint, series], float(value))
            if window_end is not None:
                ends.add_metric([name, endpoint], window_end / 1000)
        yield values
        yield ends
        alerts = GaugeMetricFamily("prodml_alerts_firing", "Alerts firing now.",
                                   labels=["monitor", "endpoint", "severity"])
        for name, endpoint, severity, count in firing:
            alerts.add_metric([name, endpoint, severity], float(count))
        yield alerts
