"""One canary controller at a time across replicas, and another takes over when it dies.

Three real ``prodml serve`` processes on one PostgreSQL database, traffic round-robin over
them, a canary with many short steps. Every step is taken by one replica (the replica
recorded on each event); only that replica runs canary checks (``prodml_canary_checks_total``)
and says it is the controller. Killed with SIGKILL (no release), another replica takes the
controller over within the lease's time and finishes the canary.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from prodml.serving import endpoints as eps
from tests.serving.conftest import FEATURES, build_store, free_port, start_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
LEASE_S = 1.5


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def controller_events(store) -> list[eps.DeploymentEvent]:
    return [e for e in reversed(eps.history("loan", limit=1000, store=store))
            if e.actor == "canary-controller"]


def test_one_replica_runs_the_canary_and_another_takes_over_when_it_dies(pg_url, tmp_path):
    store, data = build_store(tmp_path, pg_url)
    eps.deploy("loan", "loan/1", store=store)
    # An admin token from the environment: three servers starting at once in one home must
    # not race to write the same admin-token file.
    env = {"PRODML_DATABASE_URL": pg_url, "PRODML_CONTROLLER_LEASE_S": str(LEASE_S),
           "PRODML_ADMIN_TOKEN": "pml_fleet-test-admin"}
    servers = []
    try:
        ports = [free_port() for _ in range(3)]
        with ThreadPoolExecutor(3) as starting:  # started together: each takes seconds
            futures = [starting.submit(start_server, tmp_path, port, env_extra=env)
                       for port in ports]
        for port, future in zip(ports, futures):
            if future.exception() is None:  # every one started is stopped at the end
                servers.append((f"http://127.0.0.1:{port}", future.result()[0]))
        for future in futures:
            future.result()
        replicas = {f"{socket.gethostname()}:{p.pid}": (url, p) for url, p in servers}
        records = data[FEATURES].to_dict(orient="records")
        live = list(servers)
        stop = threading.Event()
        failures: list[str] = []
        killed: set[int] = set()

        def load(worker: int) -> None:
            clients = {url: httpx.Client(base_url=url, timeout=30) for url, _ in servers}
            i = worker
            while not stop.is_set():
                url, process = live[i % len(live)]
                try:
                    r = clients[url].post("/endpoints/loan/predict",
                                          json=records[i % len(records)])
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.TransportError as exc:
                    if process.pid not in killed:  # only the killed replica may not answer
                        failures.append(f"{url}: {exc!r}")
                i += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        # Many short steps at 50%, so that the canary outlives its first controller.
        eps.deploy("loan", "loan/2", "canary", steps=[50] * 12 + [100],
                   step_every_requests=3, guards={"min_requests": 3,
                                                  "max_latency_p99_ms": None},
                   store=store)
        deadline = time.monotonic() + 60
        while len(controller_events(store)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        first = controller_events(store)
        assert len(first) >= 3, [e.action for e in eps.history("loan", store=store)]
        holder = first[0].replica
        assert {e.replica for e in first} == {holder} and holder in replicas
        scraped = {r: httpx.get(f"{url}/metrics", timeout=10).text
                   for r, (url, _) in replicas.items()}
        assert [metric(scraped[r], "prodml_canary_controller") for r in replicas] == \
            [1.0 if r == holder else 0.0 for r in replicas]
        assert metric(scraped[holder], "prodml_canary_checks_total") > 0
        assert all(metric(scraped[r], "prodml_canary_checks_total") == 0
                   for r in replicas if r != holder)

        # The controller dies without a word; another replica takes over the lease.
        url, process = replicas[holder]
        live[:] = [s for s in servers if s[1] is not process]
        killed_at = time.monotonic()
        killed.add(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                e.replica != holder for e in controller_events(store)):
            time.sleep(0.1)
        taken_over_in = time.monotonic() - killed_at
        after = [e for e in controller_events(store) if e.replica != holder]
        assert after, "no replica took over the canary"
        successor = after[0].replica
        assert {e.replica for e in after} == {successor} and successor in replicas
        # The lease lapses LEASE_S after the last renewal; a step needs a few answers more.
        assert taken_over_in < LEASE_S + 5, taken_over_in
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and \
                eps.get_endpoint("loan", store=store).describe() != "loan/2":
            time.sleep(0.2)
        assert eps.get_endpoint("loan", store=store).describe() == "loan/2"
        assert controller_events(store)[-1].action == "promote"
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not failures, failures[:5]
        url, _ = replicas[successor]
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert metric(text, "prodml_canary_controller") == 1.0
    finally:
        for _, process in servers:
            stop_server(process)
        store.close()
