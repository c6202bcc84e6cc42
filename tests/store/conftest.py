"""A pool of spawned processes shared by the multi-process store tests.

Starting a process that imports prodml costs about 2 s of CPU. One pool serves the whole
session, and it is started as soon as collection shows a test will need it, so the eight
children import prodml on the second core while the first tests run.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The spawned children import the workers by module name; make that name resolvable whatever
# pytest import mode is in use (children inherit sys.path).
_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import store_workers  # noqa: E402

RunTogether = Callable[[Callable[[Any], Any], list[Any]], list[Any]]


class _Pool:
    """The session's worker processes and the barrier that makes their tasks start at once."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(store_workers.POOL_SIZE)
        self.pool = ctx.Pool(store_workers.POOL_SIZE, initializer=store_workers.init,
                             initargs=(self.barrier,))

    def run(self, task: Callable[[Any], Any], args: list[Any]) -> list[Any]:
        assert len(args) == store_workers.POOL_SIZE, "one task per process: the barrier waits"
        self.barrier.reset()  # in case an earlier batch broke it
        return self.pool.map_async(task, args, chunksize=1).get(timeout=240)

    def stop(self) -> None:
        self.pool.terminate()
        self.pool.join()


_pool: _Pool | None = None


def _get_pool() -> _Pool:
    global _pool
    if _pool is None:
        _pool = _Pool()
    return _pool


def _stop_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.stop()
        _pool = None


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("run_together" in getattr(item, "fixturenames", ()) for item in session.items):
        _get_pool()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_pool()


@pytest.fixture(scope="session")
def run_together() -> Iterator[RunTogether]:
    """``run_together(task, args)``: run ``len(args)`` tasks, each in its own process, at once."""
    yield _get_pool().run
    _stop_pool()
