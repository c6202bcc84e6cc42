"""Wall time, CPU time and peak memory of one step, cheaply enough for trivial steps.

:class:`~prodml.tracking.resources.ResourceMeter` starts a sampling thread per measurement
(about 2 ms), which would be most of a small step's bookkeeping. Here one sampler thread per
process serves every running step: it wakes every 50 ms only while some step runs and raises
each running step's peak; a step also reads the resident size when it starts and ends, so a
short step still gets a reading. CPU time is the step's own thread's (``time.thread_time``),
so concurrent steps do not count each other's work.

>>> meter = StepMeter()
>>> use = meter.stop()
>>> sorted(use), use["peak_memory_mb"] > 0
(['cpu_s', 'peak_memory_mb', 'wall_s', 'worker'], True)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil

SAMPLE_EVERY_S = 0.05

_process: psutil.Process | None = None
_running: set[StepMeter] = set()
_lock = threading.Lock()
_wake = threading.Event()
_sampler: threading.Thread | None = None


def _rss() -> int:
    global _process
    if _process is None or _process.pid != os.getpid():  # forked since: a new process
        _process = psutil.Process(os.getpid())
    try:
        return _process.memory_info().rss
    except psutil.Error:
        return 0


def _sample_forever() -> None:
    while True:
        _wake.wait()
        time.sleep(SAMPLE_EVERY_S)
        rss = _rss()
        with _lock:
            for meter in _running:
                meter.peak = max(meter.peak, rss)
            if not _running:
                _wake.clear()


class StepMeter:
    """Measures from creation to :meth:`stop`."""

    def __init__(self) -> None:
        global _sampler
        self.peak = _rss()
        self.wall0 = time.perf_counter()
        self.cpu0 = time.thread_time()
        with _lock:
            _running.add(self)
            if _sampler is None or not _sampler.is_alive():
                _sampler = threading.Thread(target=_sample_forever, daemon=True,
                                            name="prodml-step-meter")
                _sampler.start()
        _wake.set()

    def stop(self) -> dict[str, Any]:
        with _lock:
            _running.discard(self)
        self.peak = max(self.peak, _rss())
        return {"wall_s": round(time.perf_counter() - self.wall0, 6),
                "cpu_s": round(time.thread_time() - self.cpu0, 6),
                "peak_memory_mb": round(self.peak / 2**20, 1),
                "worker": threading.current_thread().name}
