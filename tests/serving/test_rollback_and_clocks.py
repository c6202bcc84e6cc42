"""Rollback means back, and every canary starts its own clock (issue 15, findings 2 and 3).

Library level, on SQLite and PostgreSQL (the ``store`` fixture): what a rollback restores
after a direct deploy, a blue-green switch, a canary step and a promote (by a person or by
the controller), and that the controller never brings a rolled-back canary back; that every
canary, however it was deployed and however deep in the tree, has its step started by the
database's clock in the write that made it, and is judged only on the answers given since.
"""

from __future__ import annotations

import time
import uuid

import pytest

from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.serving.canary import check_endpoint
from prodml.store import now_ms
from prodml.store import tables as t


@pytest.fixture
def models(store):
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    from prodml.tracking import registry

    X = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    for _ in range(3):
        registry.register("m", DummyClassifier().fit(X, [0, 1, 1]), input_example=X,
                          store=store)
    return store


def answers(store, endpoint: str, model: str, n: int, *, revision: int, status: str = "ok",
            route: str = "canary", at: int | None = None) -> None:
    """``n`` answers of ``model`` in the prediction log, as a replica serving ``revision``
    writes them (its own clock for ``time``)."""
    name, _, version = model.rpartition("/")
    rows = [dict(id=uuid.uuid4().hex, time=at if at is not None else now_ms(),
                 endpoint=endpoint, model_name=name, model_version=int(version), route=route,
                 revision=revision, prediction="1", latency_ms=1.0, status=status)
            for _ in range(n)]
    with store.write() as conn:
        conn.execute(t.predictions.insert(), rows)


def canaries(node):
    found = [node] if isinstance(node, d.Canary) else []
    for child in d._children(node):
        found += canaries(child)
    return found


# ---- rollback means back ------------------------------------------------------------------

def test_rollback_after_a_direct_deploy(models):
    store = models
    eps.deploy("ep", "m/1", store=store)
    eps.deploy("ep", "m/2", store=store)
    assert eps.rollback("ep", store=store).spec == d.Direct(model="m/1")
    # a second rollback undoes the same deploy again: it does not walk forward to m/2
    assert eps.rollback("ep", store=store).spec == d.Direct(model="m/1")


def test_rollback_after_a_person_promotes_the_canary(models):
    store = models
    eps.deploy("ep", "m/1", store=store)
    eps.deploy("ep", "m/2", "canary", steps=[10, 100], store=store)
    assert eps.promote("ep", store=store).spec == d.Direct(model="m/2")
    back = eps.rollback("ep", reason="worse", store=store)
    assert back.spec == d.Direct(model="m/1")
    assert check_endpoint(store, back) is None  # no canary left for the controller
    event = eps.history("ep", store=store)[0]
    assert (event.action, event.to_spec) == ("rollback", {"kind": "direct", "model": "m/1"})


def test_rollback_after_the_controller_promotes_is_not_promoted_again(models):
    store = models
    eps.deploy("ep", "m/1", store=store)
    running = eps.deploy("ep", "m/2", "canary", steps=[100], step_every_requests=20,
                         guards={"min_requests": 20}, store=store)
    answers(store, "ep", "m/2", 20, revision=running.revision)
    assert check_endpoint(store, running).action == "promote"
    assert eps.get_endpoint("ep", store=store).spec == d.Direct(model="m/2")
    back = eps.rollback("ep", store=store)
    assert back.spec == d.Direct(model="m/1")
    for _ in range(3):  # the controller's next checks (every worker, every replica)
        assert check_endpoint(store, eps.get_endpoint("ep", store=store)) is None
    assert eps.get_endpoint("ep", store=store).spec == d.Direct(model="m/1")
    assert [e.action for e in eps.history("ep", store=store)][:2] == ["rollback", "promote"]


def test_rollback_after_a_canary_step(models):
    store = models
    eps.deploy("ep", "m/1", store=store)
    eps.deploy("ep", "m/2", "shadow", percent=20, store=store)  # m/1 mirrored to m/2
    running = eps.deploy("ep", "m/3", "canary", steps=[10, 50, 100],
                         step_every_requests=20, guards={"min_requests": 20}, store=store)
    answers(store, "ep", "m/3", 20, revision=running.revision)
    assert check_endpoint(store, running).action == "step"
    stepped = eps.get_endpoint("ep", store=store)
    assert d.find(stepped.spec, d.Canary).step_index == 1
    back = eps.rollback("ep", store=store)
    # a canary's steps belong to its deploy: back to the tree before the canary
    assert back.describe() == "m/1 (shadow: m/2 20%)"
    assert check_endpoint(store, back) is None


def test_rollback_after_a_blue_green_switch(models):
    store = models
    eps.deploy("bg", "m/1", store=store)
    eps.deploy("bg", "m/2", "blue-green", store=store)
    assert d.find(eps.switch("bg", store=store).spec, d.BlueGreen).live.model == "m/2"
    back = eps.rollback("bg", store=store)
    assert d.find(back.spec, d.BlueGreen).live == d.Direct(model="m/1")


def test_rollback_never_restores_a_canary_however_deep(models):
    store = models
    eps.deploy("ep", "m/1", store=store)
    nested = {"kind": "shadow", "mirrors": [{"model": "m/3", "percent": 10}],
              "primary": {"kind": "canary", "primary": "m/1", "candidate": "m/2",
                          "steps": [50, 100]}}
    eps.deploy("ep", nested, store=store)
    assert eps.promote("ep", store=store).describe() == "m/2 (shadow: m/3 10%)"
    events = eps.history("ep", store=store)
    target = eps.rollback_target(events)
    assert target is not None and target[0].action == "promote"
    assert d.describe(target[1]) == "m/1 (shadow: m/3 10%)"
    back = eps.rollback("ep", store=store)
    assert back.describe() == "m/1 (shadow: m/3 10%)" and not canaries(back.spec)


def test_the_dashboard_shows_what_a_rollback_restores(models):
    from prodml.ui.views import rollback_target

    store = models
    eps.deploy("ep", "m/1", store=store)
    eps.deploy("ep", "m/2", "canary", steps=[10, 100], store=store)
    promoted = eps.promote("ep", store=store)
    shown = rollback_target(eps.history("ep", store=store))
    assert shown == {"undoes": promoted.revision, "action": "promote", "restores": "m/1"}


# ---- every canary starts its own clock ----------------------------------------------------

def host_ms() -> int:
    """This host's clock: the suite's PostgreSQL server and SQLite run here, so it bounds
    what the database's clock reads (the replica's ``now_ms`` is made wrong below)."""
    return time.time_ns() // 1_000_000


@pytest.fixture
def replica_clock_in_1970(monkeypatch):
    """A replica whose own clock is wrong: nothing it stamps may be used as a step start."""
    monkeypatch.setattr(eps, "now_ms", lambda: 1_000)


def test_every_canary_is_stamped_by_the_database_clock(models, replica_clock_in_1970):
    store = models
    eps.deploy("ep", "m/1", store=store)
    tree = {"kind": "shadow",
            "primary": {"kind": "canary", "primary": "m/1", "candidate": "m/2",
                        "step_started_at": 5},  # a stale stamp from a copied spec
            "mirrors": [{"model": {"kind": "blue_green", "green": "m/1", "blue": {
                "kind": "canary", "primary": "m/1", "candidate": "m/3"}}}]}
    before = host_ms()
    deployed = eps.deploy("ep", tree, store=store)  # a spec, as --file or the admin API
    after = host_ms()
    found = canaries(deployed.spec)
    assert len(found) == 2
    for c in found:
        assert before - 1000 <= c.step_started_at <= after + 1000, c
        assert c.step_revision == deployed.revision
    assert eps.get_endpoint("ep", store=store).spec == deployed.spec  # as stored
    assert eps.history("ep", store=store)[0].to_spec == deployed.spec.to_dict()
    # the plain path and a canary on a brand-new endpoint (the first write) too
    for name, spec in (("plain", None), ("fresh", tree)):
        if spec is None:
            eps.deploy(name, "m/1", store=store)
            ep = eps.deploy(name, "m/2", "canary", store=store)
        else:
            ep = eps.deploy(name, spec, store=store)
        for c in canaries(ep.spec):
            assert before - 1000 <= c.step_started_at <= host_ms() + 1000
            assert c.step_revision == ep.revision


def test_a_step_restarts_the_clock_and_other_changes_keep_it(models, replica_clock_in_1970):
    store = models
    eps.deploy("ep", "m/1", store=store)
    spec = {"kind": "canary", "primary": "m/1", "candidate": "m/2", "steps": [10, 50, 100],
            "step_every_requests": 20, "guards": {"min_requests": 20, "failures": 2,
                                                  "max_error_rate": 0.01}}
    first = eps.deploy("ep", spec, store=store)
    started = d.find(first.spec, d.Canary)
    # a pause, a policy change, a failed check and the same spec applied again keep it
    eps.set_paused("ep", True, store=store)
    eps.set_paused("ep", False, store=store)
    eps.update_policy("ep", {"pii": ["x"]}, store=store)
    same = eps.deploy("ep", spec, store=store)
    kept = d.find(same.spec, d.Canary)
    assert (kept.step_started_at, kept.step_revision) == (started.step_started_at,
                                                           started.step_revision)
    answers(store, "ep", "m/2", 20, status="error", revision=same.revision)
    assert check_endpoint(store, same).action == "failed_check"
    checked = d.find(eps.get_endpoint("ep", store=store).spec, d.Canary)
    assert checked.failed_checks == 1 and checked.step_started_at == started.step_started_at
    # a different spec at the same step is a new canary: a new clock
    spec["guards"]["failures"] = 3
    redeployed = eps.deploy("ep", spec, store=store)
    fresh = d.find(redeployed.spec, d.Canary)
    assert fresh.step_revision == redeployed.revision and fresh.failed_checks == 0
    # the elapsed time of a step is read on the same (database) clock
    verdict = check_endpoint(store, redeployed)
    assert verdict.action == "wait" and verdict.stats.requests == 0
    assert 0 <= verdict.stats.elapsed_s < 60
    answers(store, "ep", "m/2", 20, revision=redeployed.revision)
    before = host_ms()
    assert check_endpoint(store, redeployed).action == "step"
    stepped = eps.get_endpoint("ep", store=store)
    step = d.find(stepped.spec, d.Canary)
    assert step.step_index == 1 and step.step_revision == stepped.revision
    assert before - 1000 <= step.step_started_at <= host_ms() + 1000
    # answers from a replica still serving the step before are not the new step's
    answers(store, "ep", "m/2", 30, status="error", revision=redeployed.revision)
    verdict = check_endpoint(store, stepped)
    assert verdict.action == "wait" and verdict.stats.requests == 0


def test_a_canary_from_a_spec_is_judged_only_on_its_own_answers(models):
    store = models
    eps.deploy("ep", "m/1", store=store)
    old = eps.deploy("ep", "m/2", "canary", steps=[50, 100], store=store)
    answers(store, "ep", "m/2", 30, status="error", revision=old.revision)  # a bad past
    answers(store, "ep", "m/2", 50, revision=old.revision)
    eps.rollback("ep", store=store)
    spec = {"kind": "canary", "primary": "m/1", "candidate": "m/2", "steps": [50, 100],
            "step_every_requests": 20, "guards": {"min_requests": 20}}
    canary = eps.deploy("ep", spec, store=store)
    verdict = check_endpoint(store, canary)
    assert verdict.action == "wait" and verdict.stats.requests == 0, verdict
    answers(store, "ep", "m/2", 19, revision=canary.revision)
    answers(store, "ep", "m/2", 1, status="error", revision=canary.revision)
    verdict = check_endpoint(store, canary)
    assert verdict.action == "rollback", verdict
    assert "(1 of 20 candidate requests)" in verdict.reason
    event = eps.history("ep", store=store)[0]
    assert event.actor == "canary-controller" and "requests=20 errors=1" in event.reason


# ---- a real server under traffic ----------------------------------------------------------

@pytest.mark.slow
def test_rollback_after_a_promote_under_traffic_serves_the_old_primary_and_stays(served):
    import threading

    import httpx

    from tests.serving.conftest import admin_headers

    store = served.store
    first = eps.deploy("loan", "loan/1", store=store, reason="reset")
    answered: list[tuple[int | None, int | None, int | None]] = []  # code, version, revision
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served.url, timeout=5) as caller:
            i = 0
            while not stop.is_set():
                try:
                    r = caller.post("/endpoints/loan/predict", json={
                        **served.records(1, i % 500)[0], "routing_key": f"k{i}"})
                    body = r.json() if r.status_code == 200 else {}
                    answered.append((r.status_code, body.get("model_version"),
                                     body.get("revision")))
                except httpx.HTTPError:
                    answered.append((None, None, None))
                i += 1

    caller = threading.Thread(target=load, daemon=True)
    caller.start()
    try:
        with httpx.Client(base_url=served.url, timeout=30,
                          headers=admin_headers(served.home)) as client:
            assert served.wait_for(lambda: any(a[2] == first.revision for a in answered))
            deployed = client.post("/endpoints/loan/deploy", json={
                "model": "loan/2", "strategy": "canary", "steps": [50, 100],
                "step_every_requests": 10, "guards": {"min_requests": 10,
                                                      "max_latency_p99_ms": 5000}})
            assert deployed.status_code == 200, deployed.text
            promoted = served.wait_for(lambda: client.get("/endpoints/loan").json()["spec"]
                                       == {"kind": "direct", "model": "loan/2"}, timeout=30)
            assert promoted, client.get("/endpoints/loan/history").json()[:3]
            back = client.post("/endpoints/loan/rollback", json={"reason": "worse"})
            assert back.status_code == 200, back.text
            assert back.json()["spec"] == {"kind": "direct", "model": "loan/1"}
            revision = back.json()["revision"]
            assert served.wait_for(lambda: any((a[2] or 0) >= revision for a in answered))
            time.sleep(3)  # the controller checks every 0.5 s: it must find nothing to do
            stop.set()
            caller.join(10)
            after = [a for a in answered if (a[2] or 0) >= revision]
            assert len(after) >= 10 and {a[:2] for a in after} == {(200, 1)}, after[:5]
            now = client.get("/endpoints/loan").json()
            events = client.get("/endpoints/loan/history").json()
        assert now["spec"] == {"kind": "direct", "model": "loan/1"}
        assert now["revision"] == revision
        assert [e["action"] for e in events[:2]] == ["rollback", "promote"]
        assert events[1]["actor"] == "canary-controller"
    finally:
        stop.set()
        caller.join(10)


@pytest.mark.slow
def test_a_canary_deployed_as_a_spec_over_http_waits_for_its_own_answers(served):
    import re

    store = served.store
    eps.deploy("loan", "loan/1", store=store, reason="reset")

    def send(client, n: int, start: int) -> list[dict]:
        out = []
        for i in range(start, start + n):
            r = client.post("/endpoints/loan/predict", json={
                **served.records(1, i % 500)[0], "routing_key": f"s{i}"})
            assert r.status_code == 200, r.text
            out.append(r.json())
        return out

    with served.client() as client:
        old = client.post("/endpoints/loan/deploy", json={
            "model": "loan/2", "strategy": "canary", "steps": [50, 100],
            "step_every_requests": 10_000, "guards": {"max_latency_p99_ms": 5000}})
        assert old.status_code == 200, old.text
        assert served.wait_for(lambda: send(client, 1, 0)[0]["revision"]
                               == old.json()["revision"])
        before = send(client, 80, 0)
        assert sum(a["route"] == "canary" for a in before) >= 20  # answers of the past
        assert client.post("/endpoints/loan/rollback", json={}).status_code == 200
        spec = client.post("/endpoints/loan/deploy", json={"spec": {
            "kind": "canary", "primary": "loan/1", "candidate": "loan/2", "steps": [50, 100],
            "step_every_requests": 15, "guards": {"min_requests": 15,
                                                  "max_latency_p99_ms": 5000}}})
        assert spec.status_code == 200, spec.text
        started = spec.json()["spec"]
        assert started["step_revision"] == spec.json()["revision"]
        time.sleep(2)  # no traffic: the controller (every 0.5 s) must not pass the step
        assert client.get("/endpoints/loan").json()["revision"] == spec.json()["revision"]
        mine = send(client, 60, 100)
        new_answers = sum(a["route"] == "canary" for a in mine)
        assert served.wait_for(lambda: client.get("/endpoints/loan/history").json()[0][
            "action"] == "step", timeout=10)
        step = client.get("/endpoints/loan/history").json()[0]
    assert step["actor"] == "canary-controller"
    counted = int(re.search(r"requests=(\d+)", step["reason"]).group(1))
    assert 15 <= counted <= new_answers, (counted, new_answers, step["reason"])
