"""The demo's serving act: serve the champion, shadow a challenger, then canary it.

A real uvicorn server runs in a thread on 127.0.0.1; loan applications are replayed to it
over HTTP by a few concurrent clients. Deployments go through its admin API with a
``deployer`` token and labels through ``/feedback`` with a ``labeler`` token, as a team's CI
job and labelling tool would; the history records the tokens' names. The challenger is first mirrored (its answers logged,
never returned) and then canaried with guards, stepping up until promoted, or rolled back
if a guard fails. Everything shows in the prediction log and the deployment history.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from prodml.serving import endpoints as eps
from prodml.store import Store
from prodml.store import tables as t

ENDPOINT = "loan"


class DemoServer:
    """uvicorn serving ``store`` in a background thread, for as long as the ``with`` lasts."""

    def __init__(self, store: Store, port: int | None = None) -> None:
        import uvicorn

        from prodml.access import create_token
        from prodml.serving.app import create_app

        self.store = store
        self.tokens = {role: create_token(f"demo-{role}", role, created_by="prodml demo",
                                          store=store).token
                       for role in ("deployer", "labeler")}
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(store, poll_interval=0.2), host="127.0.0.1",
                                port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "DemoServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        from prodml.access import revoke_token

        self.server.should_exit = True
        self.thread.join(timeout=15)
        for role in self.tokens:  # the demo's tokens live as long as its server
            revoke_token(f"demo-{role}", by="prodml demo", store=self.store)

    def client(self, role: str | None = None, timeout: float = 30) -> httpx.Client:
        """A client of this server, holding the demo's token for ``role`` when named."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def deploy(self, model: str, strategy: str = "direct", **options: Any) -> dict[str, Any]:
        """Deploy through the admin API, as the demo's deployer."""
        with self.client("deployer") as client:
            answer = client.post(f"/endpoints/{ENDPOINT}/deploy",
                                 json={"model": model, "strategy": strategy, **options})
        if answer.status_code != 200:
            raise RuntimeError(f"deploy {model} was refused: {answer.text}")
        return answer.json()

    def feedback(self, answers: list[dict[str, Any]], labels: list[int]) -> None:
        """Labels for earlier answers, as the demo's labeler."""
        items = [{"prediction_id": a["prediction_id"], "label": int(y)}
                 for a, y in zip(answers, labels)]
        with self.client("labeler") as client:
            client.post("/feedback", json=items).raise_for_status()


@contextlib.contextmanager
def running(store: Store, server: DemoServer | None) -> Iterator[DemoServer]:
    """``server`` itself when given (left running), else a server for the ``with`` only."""
    if server is not None:
        yield server
        return
    with DemoServer(store) as own:
        yield own


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replay(url: str, records: list[dict[str, Any]], *, concurrency: int = 8,
           stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """POST each record to the endpoint (keyed by applicant, so canaries are sticky)."""
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        def send(pair: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
            if stop is not None and stop():
                return None
            i, record = pair
            response = client.post(f"/endpoints/{ENDPOINT}/predict",
                                   json={"record": record, "routing_key": f"applicant-{i}"})
            response.raise_for_status()
            return response.json()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            answers = [a for a in pool.map(send, enumerate(records)) if a is not None]
    return answers


def serving_story(store: Store, records: list[dict[str, Any]], labels: list[int],
                  champion: str, challenger: str, *, server: DemoServer | None = None,
                  say: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Serve ``champion``, shadow then canary ``challenger``; return what happened.

    ``server`` is the demo's running server (one for the whole demo, so the dashboard's URL
    stays the same); without it, one runs for this act only."""
    story: dict[str, Any] = {"endpoint": ENDPOINT}
    third = len(records) // 3
    with running(store, server) as live:
        story["url"] = live.url
        live.deploy(champion, reason="serve the blessed champion",
                    fallback="1 if salary > 100000 else 0")
        _wait_for_revision(live.url, store)
        say(f"serving {champion} at {live.url}/endpoints/{ENDPOINT}/predict; replaying "
            f"{third} applications")
        first = replay(live.url, records[:third])
        live.feedback(first, labels[:third])

        live.deploy(challenger, "shadow", percent=100,
                    reason="shadow the challenger on live traffic")
        _wait_for_revision(live.url, store)
        say(f"shadowing {challenger} on 100% of traffic (answers logged, never returned)")
        replay(live.url, records[third:2 * third])
        story["shadow_agreement"] = shadow_agreement(store, challenger)

        per_step = max(10, min(40, len(records) // 15))  # small demos step sooner
        live.deploy(challenger, "canary", steps=[10, 50, 100], step_every_requests=per_step,
                    guards={"max_error_rate": 0.01, "max_latency_p99_ms": 1000,
                            "max_disagreement": 0.25, "min_requests": per_step},
                    reason="canary the challenger: 10%, 50%, 100%")
        _wait_for_revision(live.url, store)
        say(f"canary {challenger}: 10% → 50% → 100%, guarded on errors, p99 latency and "
            "disagreement with the champion")
        done = lambda: d_finished(store)  # noqa: E731
        rest = records[2 * third:]
        deadline = time.monotonic() + 60
        while not done() and time.monotonic() < deadline:
            replay(live.url, rest, stop=done)  # until the controller promotes or rolls back
            for _ in range(10):
                if done():
                    break
                time.sleep(0.1)
    story["final"] = eps.get_endpoint(ENDPOINT, store=store).describe()
    story["history"] = [{"revision": e.revision, "action": e.action, "actor": e.actor,
                         "to": e.to_dict()["to_summary"], "reason": e.reason}
                        for e in reversed(eps.history(ENDPOINT, store=store))]
    story["log"] = log_counts(store)
    return story


def d_finished(store: Store) -> bool:
    from prodml.serving import deployment as d
    return d.find(eps.get_endpoint(ENDPOINT, store=store).spec, d.Canary) is None


def _wait_for_revision(url: str, store: Store, timeout: float = 10) -> None:
    revision = eps.get_endpoint(ENDPOINT, store=store).revision
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.monotonic() < deadline:
            served = client.get(f"/endpoints/{ENDPOINT}")  # 404 until a new endpoint loads
            if served.status_code == 200 and served.json()["revision"] >= revision:
                break
            time.sleep(0.1)
    time.sleep(0.5)  # the server polls the store: let every part of it see the change


def shadow_agreement(store: Store, challenger: str) -> dict[str, Any]:
    """How often the shadow's answer equals the answer the caller got."""
    name, _, version = challenger.rpartition("/")
    p = t.predictions
    shadow = aliased(p)
    with store.read() as conn:
        total, same = conn.execute(
            select(func.count(), func.sum(case((shadow.c.prediction == p.c.prediction, 1),
                                               else_=0))).select_from(p.join(shadow, shadow.c.parent_id == p.c.id))
            .where(shadow.c.route == "shadow", shadow.c.status == "ok",
                   shadow.c.model_name == name, shadow.c.model_version == int(version),
                   p.c.route == "primary")).one()
    return {"compared": int(total or 0), "agreement": (same or 0) / total if total else None}


def log_counts(store: Store) -> dict[str, int]:
    """Logged answers by route and version: the rollout as the log saw it."""
    p = t.predictions
    with store.read() as conn:
        rows = conn.execute(select(p.c.route, p.c.model_version, func.count())
                            .where(p.c.endpoint == ENDPOINT)
                            .group_by(p.c.route, p.c.model_version)).all()
    counts: Counter[str] = Counter()
    for route, version, n in rows:
        counts[f"{route} v{version}" if version is not None else route] += n
    return dict(sorted(counts.items()))
