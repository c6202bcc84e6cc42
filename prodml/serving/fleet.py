"""One server among several: is the store reachable from here, and who runs the controller.

Every ``prodml serve`` replica answers requests, logs them and polls the store's revisions.
Two things here make a fleet of them behave:

- :class:`StoreProbe`: the poll's own query is the store's health check. While it fails (or
  has not returned for ``stale_after_s``: a connection that hangs rather than fails) this
  replica is not ready, so a load balancer stops sending it traffic it could only refuse;
  the next poll that succeeds makes it ready again, with nobody stepping in.
- :class:`CanaryController`: the canary controller's queries (each canary's step numbers from
  the prediction log) run on one replica at a time, the holder of a lease row
  (:class:`~prodml.store.leases.Lease`), so their load does not grow with the number of
  replicas. If the holder dies another replica takes over within the lease's time. Two
  holders at once (a holder stalled past its lease) would still decide each step once: the
  endpoint revision's compare-and-set makes one of them lose.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from prodml.errors import StoreUnavailableError
from prodml.store import Store
from prodml.store.engine import describe_error
from prodml.store.leases import Lease, replica_id

log = logging.getLogger("prodml.serving")
CONTROLLER_LEASE = "canary-controller"


def store_fault(exc: BaseException) -> bool:
    """Is ``exc`` the store failing (unreachable, restarting), rather than a bug?"""
    return isinstance(exc, (DBAPIError, PoolTimeoutError, StoreUnavailableError, OSError))


class StoreProbe:
    """Whether the store answers this replica's polls (see the module docstring)."""

    def __init__(self, store: Store, *, stale_after_s: float) -> None:
        self.store = store
        self.stale_after_s = stale_after_s
        self.failure: str | None = None  # why the latest poll failed
        self._asking_since: float | None = None  # a poll's query in flight since
        self._failing_since = 0.0

    @property
    def reachable(self) -> bool:
        asking = self._asking_since
        return self.failure is None and (
            asking is None or time.monotonic() - asking < self.stale_after_s)

    def asking(self) -> None:
        """A poll's query starts (one that never returns makes the store unreachable)."""
        if self._asking_since is None:
            self._asking_since = time.monotonic()

    def succeeded(self) -> None:
        self._asking_since = None
        if self.failure is not None:
            log.warning("store %s answers again after %.1f s: ready", self.store.display_url,
                        time.monotonic() - self._failing_since)
            self.failure = None

    def failed(self, exc: BaseException) -> None:
        self._asking_since = None
        if not store_fault(exc):
            return
        reason = describe_error(exc)
        if self.failure is None:
            self._failing_since = time.monotonic()
            log.warning("store %s cannot be reached (%s): not ready until it answers",
                        self.store.display_url, reason)
        self.failure = reason


class CanaryController:
    """The right to run the fleet's canary checks, held by one replica at a time."""

    def __init__(self, store: Store, *, lease_s: float) -> None:
        self.lease = Lease(store, CONTROLLER_LEASE, ttl_s=lease_s)
        self.checks = 0  # canary checks this replica ran (a metric)

    @property
    def active(self) -> bool:
        return self.lease.held

    @property
    def replica(self) -> str:
        return self.lease.holder

    async def hold(self) -> bool:
        """Renew or take the lease; True while this replica is the controller."""
        was = self.lease.held
        try:
            held = await asyncio.to_thread(self.lease.hold)
        except Exception as exc:  # the store is down: nobody can act on a canary anyway
            if not store_fault(exc):
                log.exception("canary controller lease")
            self.lease.held = held = False
        if held != was:
            log.warning("replica %s %s the canary controller", self.replica,
                        "is now" if held else "is no longer")
        return held

    async def release(self) -> None:
        """Hand the controller on at once (a clean stop): nobody waits for the lease."""
        if not self.lease.held:
            return
        try:
            await asyncio.to_thread(self.lease.release)
        except Exception as exc:  # noqa: BLE001 - it lapses by itself
            log.warning("canary controller lease not released (%s); it lapses in %.1f s",
                        exc, self.lease.ttl_ms / 1000)


__all__ = ["CanaryController", "StoreProbe", "store_fault", "replica_id"]
