"""Wall time, CPU time and peak memory of a run, measured without being asked.

Peak memory is the largest resident set size seen by a sampler thread during the run
(plus readings at start and end): the process's own lifetime peak (``ru_maxrss``) would
blame a run for memory used before it started.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import psutil

SAMPLE_EVERY_S = 0.05


@dataclass(frozen=True)
class ResourceUse:
    wall_time_s: float
    cpu_time_s: float
    peak_memory_bytes: int


class ResourceMeter:
    """Measure from ``start()`` to ``stop()``.

    >>> meter = ResourceMeter().start()
    >>> use = meter.stop()
    >>> use.wall_time_s >= 0 and use.peak_memory_bytes > 0
    True
    """

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._peak = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            rss = self._process.memory_info().rss
        except psutil.Error:
            return
        self._peak = max(self._peak, rss)

    def _loop(self) -> None:
        while not self._done.wait(SAMPLE_EVERY_S):
            self._sample()

    def start(self) -> "ResourceMeter":
        self._wall0 = time.perf_counter()
        t = os.times()
        self._cpu0 = t.user + t.system + t.children_user + t.children_system
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="prodml-resource-meter",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> ResourceUse:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        t = os.times()
        cpu = t.user + t.system + t.children_user + t.children_system - self._cpu0
        return ResourceUse(time.perf_counter() - self._wall0, cpu, self._peak)
