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


# ---- the service: swaps and stop, in one process ---------------------------------------------
class Held:
    """A loaded version's model, answering only once ``gate`` is set (the real model's
    answers): requests held in a version while a test swaps it out."""

    def __init__(self, real: Any) -> None:
        self.real, self.gate = real, threading.Event()
        self.classes_ = real.classes_

    def predict_proba(self, frame: Any) -> np.ndarray:
        self.gate.wait(10)
        return self.real.predict_proba(frame)


def hold(service: Any, ref: str) -> Held:
    loaded = service._models[ref]
    held = Held(loaded.model)
    loaded.model, loaded._matrix_model = held, None
    return held


@pytest.fixture()
def loan_store(tmp_path):
    store, data = build_store(tmp_path)
    eps.deploy("loan", "loan/1", store=store)
    return store, data[FEATURES].iloc[:1].to_dict(orient="list")


def service_for(store: Any) -> Any:
    from prodml.serving.metrics import ServingMetrics
    from prodml.serving.service import ServingService

    service = ServingService(store, drain_timeout=0.5, poll_interval=3600,
                             canary_interval=3600)
    service.metrics = ServingMetrics(service)
    return service


def test_a_swap_answers_held_requests_with_the_old_version(loan_store):
    store, row = loan_store

    async def scenario() -> None:
        service = service_for(store)
        await service.start()
        try:
            held = hold(service, "loan/1")
            before = [asyncio.ensure_future(service.score("loan", row)) for _ in range(3)]
            await asyncio.sleep(0.05)
            eps.deploy("loan", "loan/2", store=store)
            await service.refresh()
            after = await service.score("loan", row)  # the new version, at once
            assert after.model_version == 2
            assert not any(f.done() for f in before)
            held.gate.set()
            answers = await asyncio.gather(*before)
            assert [a.model_version for a in answers] == [1, 1, 1]
            await asyncio.sleep(0.05)
            assert "loan/1" not in service._batchers and not service._retiring
        finally:
            await service.stop()

    run(scenario())


def test_a_leftover_past_the_drain_deadline_is_a_counted_503(loan_store):
    from prodml.serving.service import ModelUnavailableError

    store, row = loan_store

    async def scenario() -> None:
        service = service_for(store)
        await service.start()
        held = hold(service, "loan/1")
        try:
            stuck = asyncio.ensure_future(service.score("loan", row))
            await asyncio.sleep(0.05)
            eps.deploy("loan", "loan/2", store=store)
            await service.refresh()
            started = time.monotonic()
            with pytest.raises(ModelUnavailableError, match="drain deadline of 0.5 s"):
                await stuck
            assert time.monotonic() - started < 2
            metrics = service.metrics.render().decode()
            assert 'prodml_requests_total{endpoint="loan",route="primary",status="error",' \
                   'version="1"} 1.0' in metrics
        finally:
            held.gate.set()
            await service.stop()
        with store.read() as conn:
            errors = conn.execute(select(t.predictions.c.error).where(
                t.predictions.c.status == "error")).scalars().all()
        assert len(errors) == 1 and "drain deadline" in errors[0]

    run(scenario())


def test_stop_answers_what_is_held_then_flushes_the_log(loan_store):
    from prodml.serving.service import ModelUnavailableError

    store, row = loan_store

    async def scenario() -> list[str]:
        service = service_for(store)
        service.log.mode = "fast"  # answered before committed: stop must commit it
        await service.start()
        held = hold(service, "loan/1")
        before = [asyncio.ensure_future(service.score("loan", row)) for _ in range(3)]
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(service.stop())
        await asyncio.sleep(0.05)
        with pytest.raises(ModelUnavailableError, match="shutting down"):
            await service.score("loan", row)
        held.gate.set()
        answers = await asyncio.gather(*before)
        await stopping
        return [a.prediction_ids[0] for a in answers]

    ids = run(scenario())
    assert logged_once(store, ids) == (3, 3)


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
