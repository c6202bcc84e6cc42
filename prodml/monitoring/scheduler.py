"""Running monitors on a schedule: a loop for ``prodml monitor run --every 1m``, and a
background task inside ``prodml serve`` (``--monitor-every 60s`` or
``PRODML_MONITOR_EVERY=60s``).

In the server each run happens on a worker thread (``asyncio.to_thread``), so requests are
never waiting on it, and the windows it closes get the server's own numbers too: resident
memory, CPU use and the prediction log's queue depth at the time of the run. With several
workers every worker has the task; a monitor that ran within the interval is skipped, and
the compare-and-set on the monitor's revision keeps two runs from both committing.

>>> parse_interval("1m"), parse_interval("30s"), parse_interval("250ms"), parse_interval("2")
(60.0, 30.0, 0.25, 2.0)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from prodml.errors import InvalidInputError

log = logging.getLogger("prodml.monitoring")
ENV = "PRODML_MONITOR_EVERY"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*$")


def parse_interval(text: str | float) -> float:
    """Seconds from ``"1m"``, ``"30s"``, ``"500ms"``, ``"2h"`` or a plain number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _INTERVAL.match(str(text))
        if match is None:
            raise InvalidInputError("every", text, "must be a duration such as 30s, 1m, 2h "
                                    "or 500ms")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds > 0:
        raise InvalidInputError("every", text, "must be longer than 0")
    return seconds


def run_every(every_s: float, *, monitor: str | None = None, store: Any = None,
              on_run: Callable[[Any], None] = lambda run: None,
              stop: threading.Event | None = None, lag_ms: int | None = None) -> None:
    """Run ``monitor`` (or every enabled monitor) now and then every ``every_s`` seconds,
    until ``stop`` is set; each run is passed to ``on_run``. A failing run is logged and the
    loop goes on."""
    from prodml.monitoring.runner import DEFAULT_LAG_MS, run_all, run_monitor

    stop = stop or threading.Event()
    lag = DEFAULT_LAG_MS if lag_ms is None else lag_ms
    while not stop.is_set():
        started = time.monotonic()
        try:
            runs = [run_monitor(monitor, store=store, lag_ms=lag)] if monitor else \
                run_all(store=store, lag_ms=lag)
            for run in runs:
                on_run(run)
        except Exception as exc:  # noqa: BLE001 - a schedule outlives one failed run
            log.error("monitor run failed: %s: %s", type(exc).__name__, exc)
        stop.wait(max(0.0, every_s - (time.monotonic() - started)))


def process_probe(service: Any) -> Callable[[], dict[str, float]]:
    """The serving process's memory, CPU share since the last call and log queue depth."""
    import psutil

    process = psutil.Process()
    process.cpu_percent(None)  # the first call starts the measurement

    def probe() -> dict[str, float]:
        out = {"memory_rss_mb": process.memory_info().rss / 2**20,
               "cpu_percent": float(process.cpu_percent(None))}
        stats = getattr(getattr(service, "log", None), "stats", None)
        if stats is not None:
            out["log_queue_depth"] = float(stats.queue_depth)
        return out
    return probe


class MonitorTask:
    """The server's background task: every monitor, every ``every_s`` seconds."""

    def __init__(self, service: Any, every_s: float | None) -> None:
        self.service = service
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None
        self.runs = 0

    def start(self) -> MonitorTask:
        if self.every_s is not None:
            self.task = asyncio.get_running_loop().create_task(self._forever(),
                                                               name="prodml-monitors")
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _forever(self) -> None:
        from prodml.monitoring.runner import run_all

        assert self.every_s is not None
        probe = process_probe(self.service)
        skip_within = int(self.every_s * 900)  # another worker ran it within 90 % of a period
        while True:
            started = time.monotonic()
            try:
                await asyncio.to_thread(run_all, store=self.service.store, probe=probe,
                                        skip_within_ms=skip_within)
                self.runs += 1
            except Exception as exc:  # noqa: BLE001 - the server outlives a failed run
                log.error("monitor run failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(max(0.0, self.every_s - (time.monotonic() - started)))


class ServerSchedule:
    """The server's background tasks: monitors (when ``PRODML_MONITOR_EVERY`` is set) and
    the prediction log's retention (hourly and at start; ``PRODML_PRUNE_EVERY``)."""

    def __init__(self, *tasks: Any) -> None:
        self.tasks = tasks

    async def stop(self) -> None:
        for task in self.tasks:
            await task.stop()


def start_in_server(service: Any) -> ServerSchedule:
    """Start the server's background tasks (see :class:`ServerSchedule`)."""
    from prodml.serving.retention import RetentionTask

    every = os.environ.get(ENV, "").strip()
    return ServerSchedule(MonitorTask(service, parse_interval(every) if every else None).start(),
                          RetentionTask.from_env(service.store).start())
