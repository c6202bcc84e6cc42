"""Swaps under load across three replicas (issue 15, "Done when", first item).

Three real ``prodml serve`` processes on one PostgreSQL database (the suite's server), a
load of 12 clients round-robin over them that never pauses, and through the admin API of
one replica or another in turn: a canary deploy, a promote, a rollback, a direct deploy, a
pause and a resume. Each change reaches every replica (LISTEN/NOTIFY): the test waits until
each one has answered with the change's revision before making the next. Every request is
answered within the bound (none hung), none with a 5xx, and every 2xx answer's prediction id
is in the ``predictions`` table exactly once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from prodml.serving import endpoints as eps
from tests.serving.conftest import FEATURES, build_store, free_port, start_server, stop_server
from tests.serving.test_swaps import RULE, logged_once

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ADMIN = "pml_fleet-swaps-admin"
CLIENTS = 12
ROUNDS = 2
BOUND_S = 10.0  # a request not answered within this is counted as hung


class FleetLoad:
    """``CLIENTS`` threads posting predictions round-robin over the replicas until stopped."""

    def __init__(self, urls: list[str], records: list[dict]) -> None:
        self.urls, self.records = urls, records
        self.ok: list[str] = []
        self.statuses: dict[int, int] = {}
        self.hung: list[str] = []  # timed out, a 5xx, or the connection lost
        self.seen: dict[str, int] = {url: 0 for url in urls}  # the last revision answered
        self.routes: dict[str, set[str]] = {url: set() for url in urls}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def __enter__(self) -> "FleetLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(BOUND_S + 5)
        assert not any(thread.is_alive() for thread in self.threads), "a client never returned"

    def _client(self, i: int) -> None:
        clients = [httpx.Client(base_url=url, timeout=BOUND_S) for url in self.urls]
        try:
            while not self.stop.is_set():
                url, client = self.urls[i % len(self.urls)], clients[i % len(clients)]
                record = self.records[i % len(self.records)]
                i += 1
                try:
                    r = client.post("/endpoints/loan/predict", json=record)
                except httpx.TransportError as exc:  # a timeout included: none expected
                    with self.lock:
                        self.hung.append(f"{url}: {exc!r}")
                    continue
                with self.lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        body = r.json()
                        self.ok.append(body["prediction_id"])
                        self.seen[url] = max(self.seen[url], body["revision"])
                        self.routes[url].add(body["route"])
                    elif r.status_code >= 500:
                        self.hung.append(f"{url}: {r.status_code} {r.text[:300]}")
        finally:
            for client in clients:
                client.close()

    def wait_for_revision(self, revision: int, timeout: float = 10) -> dict[str, int]:
        """Until every replica has answered with ``revision`` (or later): what each had."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(seen >= revision for seen in self.seen.values()):
                    break
            time.sleep(0.02)
        with self.lock:
            return dict(self.seen)


@pytest.fixture
def fleet(pg_url, tmp_path):
    store, data = build_store(tmp_path, pg_url)
    eps.deploy("loan", "loan/1", store=store, fallback=RULE)
    env = {"PRODML_DATABASE_URL": pg_url, "PRODML_ADMIN_TOKEN": ADMIN}
    ports = [free_port() for _ in range(3)]
    processes = []
    try:
        with ThreadPoolExecutor(3) as starting:
            futures = [starting.submit(start_server, tmp_path, port, env_extra=env)
                       for port in ports]
        for future in futures:
            if future.exception() is None:
                processes.append(future.result()[0])
        for future in futures:
            future.result()
        yield ([f"http://127.0.0.1:{port}" for port in ports], processes, store,
               data[FEATURES].to_dict(orient="records"))
    finally:
        for process in processes:
            stop_server(process)
        store.close()


def test_swaps_under_load_across_three_replicas_drop_nothing(fleet):
    urls, processes, store, records = fleet
    admin = [httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {ADMIN}"}) for url in urls]
    steps = [("deploy", {"model": "loan/2", "strategy": "canary", "steps": [50, 100],
                         "step_every_seconds": 3600}),
             ("promote", None), ("rollback", None), ("deploy", {"model": "loan/2"}),
             ("pause", None), ("resume", None)] * ROUNDS
    changes: list[str] = []
    try:
        with FleetLoad(urls, records) as load:
            first = eps.get_endpoint("loan", store=store).revision
            assert load.wait_for_revision(first)  # every replica answering before the first
            for n, (action, body) in enumerate(steps):
                replica = n % len(urls)  # the change is made through each replica in turn
                before = len(load.ok)
                r = admin[replica].post(f"/endpoints/loan/{action}", json=body or {})
                assert r.status_code == 200, (action, r.text)
                revision = r.json()["revision"]
                seen = load.wait_for_revision(revision)
                changes.append(f"{action} via {replica}: r{revision} {seen}")
                assert all(s >= revision for s in seen.values()), changes
                time.sleep(1.0)  # the load goes on under the new deployment a while
                assert len(load.ok) > before, changes
            with load.lock:
                routes = {url: set(r) for url, r in load.routes.items()}
        assert not load.hung, f"{len(load.hung)} hung or 5xx: {load.hung[:5]} ({changes})"
        assert set(load.statuses) == {200}, load.statuses
        # every replica served the canary and, paused, the fallback rule
        assert all({"primary", "canary", "fallback"} <= r for r in routes.values()), routes
        assert len(load.ok) > 300, len(load.ok)
        assert len(set(load.ok)) == len(load.ok)
        print(f"{len(load.ok)} answers: {changes}")
        for url in urls:
            text = httpx.get(f"{url}/metrics", timeout=10).text
            assert not [line for line in text.splitlines()
                        if line.startswith("prodml_server_errors_total{")
                        and not line.endswith(" 0.0")], text
        for process in processes:  # SIGTERM: each replica flushes its prediction log
            stop_server(process)
        assert logged_once(store, load.ok) == (len(load.ok), len(load.ok))
    finally:
        for client in admin:
            client.close()
