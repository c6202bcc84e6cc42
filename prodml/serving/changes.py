"""Endpoint changes announced on PostgreSQL (``LISTEN/NOTIFY``), so replicas switch at once.

Every change to an endpoint's row bumps its revision; on PostgreSQL the same transaction
runs ``pg_notify('prodml_endpoints', '{"endpoint": ..., "revision": ...}')`` (see
:func:`announce`), which PostgreSQL delivers to every listening session when, and only when,
the change commits. Each serving process keeps one connection of its own (outside the
pool, autocommit) listening on that channel (:class:`ChangeListener`) and refreshes as soon
as a notification arrives. Polling the revisions stays underneath as the fallback: while
the listener is reconnecting, with ``PRODML_NOTIFY=0``, and on SQLite, which has no
notifications.

A notification is a hint, never the data: the service still reads the revisions and the
endpoint rows from the store, so a lost, duplicated or reordered notification costs at most
one poll interval, never a wrong deployment.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

CHANNEL = "prodml_endpoints"
# TCP keepalives on the listening connection: a silent network failure (no FIN, no RST)
# otherwise leaves it waiting forever for notifications that cannot come.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 3}

log = logging.getLogger("prodml.serving")


def announce(conn: Connection, endpoint: str, revision: int) -> None:
    """Announce ``endpoint`` at ``revision`` inside the caller's write transaction: sent to
    listeners on commit, never on rollback. A no-op on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                     {"channel": CHANNEL,
                      "payload": json.dumps({"endpoint": endpoint, "revision": revision})})


def conninfo(database_url: str) -> str:
    """The libpq connection string behind a SQLAlchemy PostgreSQL URL.

    >>> conninfo("postgresql+psycopg://app:s3cret@db:5432/prodml?sslmode=require")
    'postgresql://app:s3cret@db:5432/prodml?sslmode=require'
    """
    return make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)


def parse(payload: str) -> tuple[str | None, int | None]:
    """``(endpoint, revision)`` from a notification's payload; ``(None, None)`` if unreadable
    (treated as "something changed").

    >>> parse('{"endpoint": "loan", "revision": 7}'), parse("junk")
    (('loan', 7), (None, None))
    """
    try:
        body = json.loads(payload)
        return str(body["endpoint"]), int(body["revision"])
    except (ValueError, TypeError, KeyError):
        return None, None


class ChangeListener:
    """Listens on :data:`CHANNEL` on a dedicated connection, for as long as :meth:`run` runs.

    ``on_change(endpoint, revision)`` is called from the event loop for each notification,
    and ``on_change(None, None)`` after every (re)connection: changes committed while no
    connection listened were never delivered, so the caller looks at everything once.
    A lost connection (database restart, ``pg_terminate_backend``, network) is reopened
    with backoff, from ``retry_s`` up to ``max_retry_s``.
    """

    def __init__(self, database_url: str,
                 on_change: Callable[[str | None, int | None], None], *,
                 retry_s: float = 0.1, max_retry_s: float = 2.0) -> None:
        self.conninfo = conninfo(database_url)
        self.on_change = on_change
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.listening = False
        self.connections = 0  # how many times it has connected (1 + reconnections)
        self.received = 0
        self.backend_pid: int | None = None  # the listening session, for operators and tests

    async def run(self) -> None:
        import psycopg  # the PostgreSQL driver: only a PostgreSQL store needs it

        delay = self.retry_s
        warned = False  # one warning per outage, not one per retry
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                             connect_timeout=5, **_KEEPALIVES)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    self.listening = True
                    self.connections += 1
                    delay, warned = self.retry_s, False
                    if self.connections > 1:
                        log.warning("listening for endpoint changes again (backend %s)",
                                    self.backend_pid)
                    self.on_change(None, None)
                    async for note in conn.notifies():
                        self.received += 1
                        self.on_change(*parse(note.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: polling covers, we retry
                (log.debug if warned else log.warning)(
                    "listening for endpoint changes stopped (%s: %s); polling until it "
                    "reconnects", type(exc).__name__, str(exc).strip()[:200])
                warned = True
            finally:
                self.listening = False
                self.backend_pid = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_s)

    def to_dict(self) -> dict[str, Any]:
        return {"listening": self.listening, "connections": self.connections,
                "received": self.received}
