"""Work that the store tests run in separate (spawned) processes.

Every task first waits on a barrier shared by all the pool's processes, so a batch of
``POOL_SIZE`` tasks runs in ``POOL_SIZE`` different processes at the same moment.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any

POOL_SIZE = 8
_barrier: Any = None


def init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier
    import prodml  # noqa: F401 - pay the import once per process, before any test waits on it


def _together() -> None:
    _barrier.wait(timeout=120)


def _reported(task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # Hand any failure back as a plain RuntimeError carrying the child's traceback: prodml's
    # own errors do not survive pickling, and an unpicklable result stalls the whole pool.
    @functools.wraps(task)
    def run(args: Any) -> Any:
        try:
            return task(args)
        except BaseException as exc:  # noqa: BLE001
            raise RuntimeError(f"in process {os.getpid()}: {type(exc).__name__}: {exc}\n"
                               + traceback.format_exc()) from None
    return run


@_reported
def open_store_task(args: tuple[str, str]) -> tuple[int, str | None]:
    """Open (and so migrate) the store; return this process's id and the store's revision."""
    url, artifacts = args
    from prodml.store import open_store

    _together()
    store = open_store(url, artifacts)
    try:
        return os.getpid(), store.revision()
    finally:
        store.close()


def metric_value(worker: int, run: int, step: int) -> float:
    return worker * 1_000_000 + run * 1_000 + step + 0.5


@_reported
def log_runs_task(args: tuple[str, str, int, int, int, str]) -> tuple[int, list[str]]:
    """Start ``runs`` runs, each with params and ``points`` points of ``loss`` logged one by one."""
    url, artifacts, worker, runs, points, code_dir = args
    import prodml as pm
    from prodml.store import open_store, reset_default_store

    open_store(url, artifacts, make_default=True)
    _together()
    ids = []
    try:
        for run_index in range(runs):
            with pm.start_run("concurrency", params={"worker": worker, "run": run_index},
                              tags={"pid": os.getpid()}, name=f"w{worker}-r{run_index}",
                              code_dir=code_dir) as run:
                run.log_param("points", points)
                for step in range(points):
                    run.log_metric("loss", metric_value(worker, run_index, step))
                run.log_metric("done", 1.0)
                ids.append(run.id)
    finally:
        reset_default_store()
    return os.getpid(), ids
