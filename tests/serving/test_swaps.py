"""Swaps and shutdown that never drop a request (issue 15, finding 1).

A version being replaced stops taking work, answers what it holds (up to a deadline), then
is closed; a request left over at the deadline fails with a clear error, never a hang. The
same on SIGTERM: uvicorn stops taking connections, the service drains its batchers, then
flushes the prediction log, then the process exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from prodml.serving import endpoints as eps
from prodml.serving.runtime import LoadedModel, MicroBatcher
from prodml.store import tables as t
from tests.serving.conftest import FEATURES, admin_headers, build_store, free_port, \
    start_server, stop_server


class Gated:
    """A model whose ``predict`` waits for ``gate``: a batch held as long as a test likes."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def predict(self, frame: Any) -> np.ndarray:
        self.calls += 1
        self.gate.wait(10)
        return np.asarray(frame["x"], dtype=float) * 2


def gated_batcher(**kwargs: Any) -> tuple[MicroBatcher, Gated]:
    model = Gated()
    loaded = LoadedModel(ref="m/1", name="m", version=1, model=model, signature=None,
                         schema=None, columns=["x"])
    return MicroBatcher(loaded, **kwargs), model


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


# ---- the micro-batcher alone ----------------------------------------------------------------
def test_close_with_a_batch_queued_resolves_every_future():
    """The bug as found: the executor is busy, the next batch waits in its queue; ``close``
    used to cancel it (``cancel_futures=True``) and the caller's future never resolved."""
    async def scenario() -> list[Any]:
        executor = concurrent.futures.ThreadPoolExecutor(1)
        busy = threading.Event()
        executor.submit(busy.wait, 10)  # the one thread is taken: the batch queues
        batcher, model = gated_batcher(executor=executor)
        model.gate.set()
        first = asyncio.ensure_future(batcher.predict({"x": [1.0]}, 1))
        for _ in range(5):
            await asyncio.sleep(0)  # the batch is handed to the executor, and waits there
        batcher.close()
        second = asyncio.ensure_future(batcher.predict({"x": [2.0]}, 1))
        busy.set()
        done, pending = await asyncio.wait({first, second}, timeout=5)
        assert not pending, "a caller's future was never resolved"
        return [f.exception() or f.result() for f in (first, second)]

    first, second = run(scenario())
    # What was taken before the close is answered; what came after is refused clearly.
    assert not isinstance(first, BaseException) and first.predictions == [2.0]
    assert type(second).__name__ == "BatcherClosedError", repr(second)


def test_drain_answers_what_it_holds_then_refuses_new_work():
    from prodml.serving.runtime import BatcherClosedError

    async def scenario() -> None:
        batcher, model = gated_batcher()
        held = [asyncio.ensure_future(batcher.predict({"x": [float(i)]}, 1))
                for i in range(3)]
        await asyncio.sleep(0.05)  # one batch in the model, two requests queued behind it
        draining = asyncio.ensure_future(batcher.drain(timeout=5))
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosedError, match="m/1"):
            await batcher.predict({"x": [9.0]}, 1)  # refused at once: nothing ran
        model.gate.set()
        assert await draining == 0  # none left over
        assert [(await f).predictions for f in held] == [[0.0], [2.0], [4.0]]
        assert batcher.closed

    run(scenario())


def test_drain_deadline_fails_leftovers_with_a_clear_error():
    from prodml.serving.runtime import BatcherClosedError

    async def scenario() -> None:
        batcher, model = gated_batcher()
        held = [asyncio.ensure_future(batcher.predict({"x": [float(i)]}, 1))
                for i in range(3)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        left = await batcher.drain(timeout=0.3)  # the model never answers in time
        assert time.monotonic() - started < 2
        assert left == 3
        for future in held:
            with pytest.raises(BatcherClosedError, match="0.3 s"):
                await future
        model.gate.set()  # free the thread

    run(scenario())


# ---- a real server under load ---------------------------------------------------------------
RULE = "1 if salary > 100000 else 0"
ROUNDS = 4


class Load:
    """``clients`` threads posting predictions until stopped: what each answer was."""

    def __init__(self, url: str, records: list[dict], clients: int = 16,
                 bound: float = 10.0) -> None:
        self.url, self.records, self.bound = url, records, bound
        self.ok: list[str] = []
        self.statuses: dict[int, int] = {}
        self.hung: list[str] = []
        self.gone: list[str] = []  # connection refused or closed (a server shutting down)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i, clients))
                        for i in range(clients)]

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.bound + 5)

    def _client(self, i: int, step: int) -> None:
        with httpx.Client(base_url=self.url, timeout=self.bound) as client:
            while not self.stop.is_set():
                try:
                    r = client.post("/endpoints/loan/predict",
                                    json=self.records[i % len(self.records)])
                except httpx.TimeoutException as exc:
                    with self.lock:
                        self.hung.append(repr(exc))
                    continue
                except httpx.TransportError as exc:
                    with self.lock:
                        self.gone.append(repr(exc))
                    if self.stop.is_set():
                        return
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        self.ok.append(r.json()["prediction_id"])
                    elif r.status_code >= 500:
                        self.hung.append(f"{r.status_code} {r.text[:300]}")
                i += step

    def wait_for(self, answers: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.ok)
        while len(self.ok) - start < answers and time.monotonic() < deadline:
            time.sleep(0.02)


def logged_once(store: Any, ids: list[str]) -> tuple[int, int]:
    """How many of ``ids`` are in the log, and how many rows they have there."""
    found = rows = 0
    with store.read() as conn:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            counts = conn.execute(select(t.predictions.c.id, func.count()).where(
                t.predictions.c.id.in_(chunk)).group_by(t.predictions.c.id)).all()
            found += len(counts)
            rows += sum(n for _, n in counts)
    return found, rows


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("swaps")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store, fallback=RULE)
    return home, store, data[FEATURES].to_dict(orient="records")


@pytest.mark.slow
def test_swaps_under_load_drop_nothing(home):
    """Promote, rollback, direct deploys and pause/resume through the admin API while 16
    clients post: every request answered within the bound, none with a 5xx, every 2xx in
    the log exactly once."""
    home, store, records = home
    port = free_port()
    process, _ = start_server(home, port)
    url = f"http://127.0.0.1:{port}"
    changes: list[str] = []
    try:
        with httpx.Client(base_url=url, headers=admin_headers(home), timeout=30) as admin, \
                Load(url, records) as load:

            def change(path: str, body: dict | None = None) -> None:
                load.wait_for(40)  # the load runs between every change
                r = admin.post(f"/endpoints/loan/{path}", json=body or {})
                assert r.status_code == 200, (path, r.text)
                changes.append(f"{path}: {r.json()['revision']}")

            for _ in range(ROUNDS):
                change("deploy", {"model": "loan/2", "strategy": "canary", "steps": [50, 100],
                                  "step_every_seconds": 3600})
                change("promote")
                change("rollback")
                change("deploy", {"model": "loan/2"})
                change("deploy", {"model": "loan/1"})
                change("pause")
                change("resume")
            load.wait_for(40)
        assert not load.hung, f"{len(load.hung)} hung or 5xx: {load.hung[:5]} ({changes})"
        assert not load.gone, load.gone[:5]
        assert set(load.statuses) == {200}, load.statuses
        assert len(load.ok) > 500
        assert logged_once(store, load.ok) == (len(load.ok), len(load.ok))
        with httpx.Client(base_url=url) as client:
            metrics = client.get("/metrics").text
        assert not [line for line in metrics.splitlines()
                    if line.startswith("prodml_server_errors_total{") and
                    not line.endswith(" 0.0")], metrics
    finally:
        stop_server(process)


@pytest.mark.slow
@pytest.mark.parametrize("log_mode", ["durable", "fast"])
def test_sigterm_mid_load_answers_and_logs_what_it_took(home, log_mode):
    """SIGTERM under load: the server stops taking connections, answers what it holds,
    flushes the log, exits. No client hangs; every 2xx is in the log (fast mode too)."""
    home, store, records = home
    eps.deploy("loan", "loan/1", store=store, fallback=RULE)
    port = free_port()
    process, _ = start_server(home, port, "--log-mode", log_mode)
    url = f"http://127.0.0.1:{port}"
    try:
        with Load(url, records) as load:
            load.wait_for(300)
            process.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once it has shut down gracefully
            assert process.wait(40) in (0, -signal.SIGTERM)
            time.sleep(0.5)  # every client notices the server is gone
        assert not load.hung, load.hung[:5]
        assert set(load.statuses) <= {200}, load.statuses
        assert len(load.ok) >= 300
        assert logged_once(store, load.ok) == (len(load.ok), len(load.ok))
    finally:
        stop_server(process)
