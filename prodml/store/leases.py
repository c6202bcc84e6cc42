"""Which process is which, and jobs that one process at a time does for a whole fleet.

Several ``prodml serve`` replicas share one store. Each change they record names the
process that made it (:func:`replica_id`: ``host:pid``), and a job that needs doing once for
all of them (the canary controller) is a :class:`Lease`: a row held by one process until it
expires, renewed while that process works, taken over by another once it lapses.

Why a lease row and not a PostgreSQL advisory lock: an advisory lock lives in one database
session, so it needs a connection held open for the process's life, is silently shared or
lost behind PgBouncer's transaction pooling, and after a host vanishes without closing its
socket it is freed only when TCP gives up (minutes). A lease row works the same on SQLite and
PostgreSQL and through any pooler, is one single-row ``UPDATE`` per renewal, shows in the
store who holds it, and bounds a takeover: at most ``ttl_s`` plus one renewal interval after
the holder stops renewing. Expiry is read on the database's clock, never a replica's, so
clocks that differ between hosts cannot make two holders.

>>> from prodml.store import open_store
>>> import tempfile
>>> home = tempfile.mkdtemp()
>>> store = open_store(f"sqlite:///{home}/p.db", f"{home}/artifacts")
>>> a = Lease(store, "job", ttl_s=5, holder="a:1")
>>> b = Lease(store, "job", ttl_s=5, holder="b:2")
>>> a.hold(), b.hold(), a.hold()
(True, False, True)
>>> a.release(); b.hold()
True
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import and_, case, literal_column, or_, update
from sqlalchemy.sql.elements import ColumnElement

from prodml.store import tables as t
from prodml.store.store import _DB_NOW_MS, Store

_replica: tuple[int, str] | None = None


def replica_id() -> str:
    """This process as the fleet's records name it: ``host:pid``.

    >>> replica_id() == f"{socket.gethostname()}:{os.getpid()}"
    True
    """
    global _replica
    pid = os.getpid()  # worked out again after a fork (uvicorn workers)
    if _replica is None or _replica[0] != pid:
        _replica = (pid, f"{socket.gethostname()}:{pid}")
    return _replica[1]


def database_now_ms(dialect: str) -> ColumnElement[int]:
    """The database's clock in epoch milliseconds, as a SQL expression (the clock
    :func:`~prodml.store.store.db_now_ms` reads), so a lease is judged in the same
    statement that takes it."""
    return literal_column(f"({_DB_NOW_MS[dialect]})")


class Lease:
    """A named job held by one process at a time (see the module docstring).

    Call :meth:`hold` at least every ``ttl_s / 2`` seconds while the job runs: it renews the
    lease held by this process, takes it over when it is free or lapsed, and says whether
    this process holds it now. :meth:`release` hands it on at once (on a clean stop).
    """

    def __init__(self, store: Store, name: str, *, ttl_s: float,
                 holder: str | None = None) -> None:
        self.store = store
        self.name = name
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.holder = holder or replica_id()
        self.held = False

    def hold(self) -> bool:
        """Renew or take the lease; True while this process holds it."""
        c = t.leases.c
        now = database_now_ms(self.store.dialect)
        with self.store.write() as conn:
            taken = conn.execute(
                update(t.leases)
                .where(c.name == self.name, or_(c.holder == self.holder, c.expires_at < now))
                .values(holder=self.holder, expires_at=now + self.ttl_ms,
                        acquired_at=case((c.holder == self.holder, c.acquired_at), else_=now))
            ).rowcount == 1
            if not taken:
                taken = conn.execute(
                    self.store.insert(t.leases)
                    .values(name=self.name, holder=self.holder, acquired_at=now,
                            expires_at=now + self.ttl_ms)
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(t.leases.c.name)).first() is not None  # rowcount is -1 on psycopg
        self.held = taken
        return taken

    def release(self) -> None:
        """Give the lease up now if this process holds it, so another takes over at once."""
        c = t.leases.c
        with self.store.write() as conn:
            conn.execute(update(t.leases)
                         .where(and_(c.name == self.name, c.holder == self.holder))
                         .values(expires_at=0))
        self.held = False
