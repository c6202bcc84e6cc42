"""Leases: one holder at a time, renewed by it, taken over once it lapses (both backends)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from prodml.store import tables as t
from prodml.store.leases import Lease, replica_id


def test_one_holder_renews_and_another_takes_over_once_it_lapses(store) -> None:
    a = Lease(store, "controller", ttl_s=0.4, holder="host-a:1")
    b = Lease(store, "controller", ttl_s=0.4, holder="host-b:2")
    assert a.hold() and not b.hold()
    with store.read() as conn:
        first = conn.execute(select(t.leases)).one()
    assert first.holder == "host-a:1" and first.expires_at - first.acquired_at == 400
    for _ in range(4):  # renewed within its time: never lost
        time.sleep(0.15)
        assert a.hold() and not b.hold()
    with store.read() as conn:
        renewed = conn.execute(select(t.leases)).one()
    assert renewed.acquired_at == first.acquired_at and renewed.expires_at > first.expires_at
    time.sleep(0.5)  # a stops renewing (it died): b takes over, a has lost it
    assert b.hold() and not a.hold()
    b.release()
    assert a.hold()


def test_many_threads_racing_for_a_free_lease_make_one_holder(store) -> None:
    leases = [Lease(store, "race", ttl_s=30, holder=f"h:{i}") for i in range(6)]
    results: list[bool] = []
    start = threading.Barrier(len(leases))

    def race(lease: Lease) -> None:
        start.wait()
        results.append(lease.hold())

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]


def test_replica_id_names_host_and_process() -> None:
    import os
    import socket

    assert replica_id() == f"{socket.gethostname()}:{os.getpid()}"
