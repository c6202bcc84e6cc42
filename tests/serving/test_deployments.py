"""Deployment trees, routing, canary judgement and endpoint history (no server)."""

from __future__ import annotations

import pytest

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.serving.canary import StepStats, apply, judge
from prodml.serving.fallback import FallbackError, compile_rule
from prodml.serving.router import BUCKETS, bucket, decide, takes


def test_trees_compose_and_round_trip():
    tree = d.parse_spec({"kind": "automation", "mode": "partial", "threshold": 0.7,
                         "node": {"kind": "shadow",
                                  "primary": {"kind": "canary", "primary": {
                                      "kind": "blue_green", "blue": "m/1", "green": "m/2"},
                                      "candidate": "m/3"},
                                  "mirrors": [{"model": "m/4", "percent": 10}]}})
    assert [leaf.model for leaf in d.leaves(tree)] == ["m/1", "m/2", "m/3", "m/4"]
    assert d.parse_spec(tree.to_dict()) == tree
    canary = d.find(tree, d.Canary)
    moved = d.replace(tree, canary, canary.model_copy(update={"step_index": 2}))
    assert d.find(moved, d.Canary).weight == 50.0 and d.find(tree, d.Canary).weight == 5.0
    assert "partial automation" in d.describe(tree)


@pytest.mark.parametrize("spec, field", [
    ({"kind": "canary", "primary": "m/1", "candidate": "m/2", "steps": [50, 10]}, "steps"),
    ({"kind": "shadow", "primary": "m/1", "mirrors": [{"model": "m/2", "percent": 150}]},
     "percent"),
    ({"kind": "automation", "node": "m/1", "mode": "sometimes"}, "mode"),
    ({"kind": "teleport", "model": "m/1"}, "deployment"),
    (42, "deployment.spec"),
])
def test_bad_trees_name_the_field(spec, field):
    with pytest.raises(InvalidInputError) as error:
        d.parse_spec(spec)
    assert field in str(error.value)


@pytest.mark.parametrize("guards, field", [
    ({"max_error_rate": "often"}, "guards.max_error_rate"),
    ({"max_wobble": 1}, "guards.max_wobble"),
    ([("max_error_rate", 0.1)], "guards"),
])
def test_bad_canary_guards_name_the_field(guards, field):
    with pytest.raises(InvalidInputError) as error:
        eps.plan(d.Direct(model="m/1"), "m/2", "canary", guards=guards)
    assert str(error.value).startswith(field)


def test_canary_buckets_are_sticky_and_monotone():
    keys = [f"user-{i}" for i in range(5000)]
    at = {w: {k for k in keys if takes(w, bucket("loan", k))} for w in (5, 25, 50, 100)}
    assert at[5] <= at[25] <= at[50] <= at[100] == set(keys)  # raising keeps everyone on it
    assert abs(len(at[25]) / len(keys) - 0.25) < 0.03
    tree = d.parse_spec({"kind": "canary", "primary": "m/1", "candidate": "m/2",
                         "steps": [25, 100]})
    routes = {k: decide(tree, "loan", k).route for k in keys[:500]}
    assert routes == {k: decide(tree, "loan", k).route for k in keys[:500]}
    assert all(decide(tree, "loan", k).compare.model == "m/1"
               for k, r in routes.items() if r == "canary")
    assert 0 <= bucket("loan", None) < BUCKETS


def test_shadow_mirror_percentage():
    tree = d.parse_spec({"kind": "shadow", "primary": "m/1",
                         "mirrors": [{"model": "m/2", "percent": 20}, "m/3"]})
    decisions = [decide(tree, "loan", str(i)) for i in range(4000)]
    assert all(x.leaf.model == "m/1" for x in decisions)
    share = sum(any(m.node.model == "m/2" for m in x.mirrors) for x in decisions) / 4000
    assert abs(share - 0.2) < 0.03
    assert all(any(m.node.model == "m/3" for m in x.mirrors) for x in decisions)


def _canary(**changes):
    base = d.Canary(primary=d.Direct(model="m/1"), candidate=d.Direct(model="m/2"),
                    steps=(10, 50, 100), step_every_requests=100, step_started_at=0)
    return base.model_copy(update=changes)


def test_judge_waits_steps_promotes_and_rolls_back():
    c = _canary()
    assert judge(c, StepStats(requests=10), now=1).action == "wait"
    assert judge(c, StepStats(requests=60, latency_p99_ms=5), now=1).action == "wait"
    verdict = judge(c, StepStats(requests=100, latency_p99_ms=5), now=1)
    node, action = apply(c, verdict, 123)
    assert action == "step" and node.step_index == 1 and node.step_started_at == 123
    last = _canary(step_index=2)
    node, action = apply(last, judge(last, StepStats(requests=100), now=1), 5)
    assert action == "promote" and node == last.candidate
    bad = judge(c, StepStats(requests=50, errors=10, latency_p99_ms=5), now=1)
    assert bad.action == "rollback" and "error rate 0.200" in bad.reason
    assert apply(c, bad, 9)[0] == c.primary
    slow = judge(c, StepStats(requests=100, latency_p99_ms=900.0), now=1)
    assert slow.action == "rollback" and "latency p99" in slow.reason


def test_judge_counts_failed_checks_before_rolling_back():
    c = _canary(guards=d.Guards(max_disagreement=0.1, failures=2))
    stats = StepStats(requests=100, compared=100, disagreements=30)
    first = judge(c, stats, now=1)
    assert first.action == "failed_check"
    node, _ = apply(c, first, 2)
    assert judge(node, stats, now=3).action == "rollback"


def test_accuracy_guard_waits_for_enough_labels_on_each_side():
    c = _canary(guards=d.Guards(max_accuracy_drop=0.05, min_labels=20), step_index=2)
    few = StepStats(requests=100, labelled=10, candidate_labelled=4, primary_labelled=6,
                    candidate_accuracy=0.5, primary_accuracy=0.667)  # 2 of 4 vs 4 of 6
    assert judge(c, few, now=1).action == "promote"
    enough = StepStats(requests=100, labelled=80, candidate_labelled=40, primary_labelled=40,
                       candidate_accuracy=0.5, primary_accuracy=0.667)
    verdict = judge(c, enough, now=1)
    assert verdict.action == "rollback" and "accuracy 0.500 vs primary 0.667" in verdict.reason


def test_hopeless_error_rate_rolls_back_before_min_requests():
    c = _canary(guards=d.Guards(min_requests=50))
    assert judge(c, StepStats(requests=5, errors=5), now=1).action == "rollback"
    assert judge(c, StepStats(requests=5, errors=0), now=1).action == "wait"


def test_fallback_rules():
    rule = compile_rule("1 if salary > 100000 or (age < 30 and car in (1, 2)) else 0")
    assert rule({"salary": 150000, "age": 40, "car": 9}) == 1
    assert rule({"salary": 10, "age": 25, "car": 2}) == 1
    assert rule({"salary": 10, "age": 45, "car": 2}) == 0
    with pytest.raises(FallbackError, match="needs field 'salary'"):
        rule({"age": 3})
    for bad in ("x.__class__", "open('f')", "lambda: 1", "[x for x in y]", "", "1 +"):
        with pytest.raises(InvalidInputError):
            compile_rule(bad)
    with pytest.raises(InvalidInputError, match="allow-list"):
        compile_rule("prodml.serving.fallback:compile_rule", allow=())
    imported = compile_rule("prodml.serving.fallback:compile_rule",
                            allow=["prodml.serving.fallback:compile_rule"])
    assert imported.target is compile_rule  # type: ignore[attr-defined]


# ---- endpoints in the store (SQLite and PostgreSQL) ---------------------------------------

@pytest.fixture
def models(store):
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    from prodml.tracking import registry

    X = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    for _ in range(3):
        registry.register("m", DummyClassifier().fit(X, [0, 1, 1]), input_example=X,
                          store=store)
    registry.set_alias("m", "champion", 1, store=store)
    return store


def test_deploy_strategies_and_history(models):
    store = models
    first = eps.deploy("ep", "m@champion", store=store, reason="launch", actor="ana")
    assert first.spec == d.Direct(model="m/1") and first.revision == 1  # alias pinned
    shadow = eps.deploy("ep", "m/2", "shadow", percent=30, store=store, actor="ana")
    assert shadow.describe() == "m/1 (shadow: m/2 30%)"
    canary = eps.deploy("ep", "m/3", "canary", steps=[10, 100], step_every_requests=5,
                        guards={"max_error_rate": 0.05}, store=store, actor="bo")
    assert canary.describe() == "canary m/1 -> m/3 at 10% (step 1/2)"
    assert d.find(canary.spec, d.Canary).guards.max_error_rate == 0.05
    back = eps.rollback("ep", reason="bad metrics", store=store, actor="bo")
    assert back.describe() == "m/1 (shadow: m/2 30%)" and back.revision == 4
    events = eps.history("ep", store=store)
    assert [(e.action, e.actor) for e in events] == [
        ("rollback", "bo"), ("deploy", "bo"), ("deploy", "ana"), ("deploy", "ana")]
    assert events[0].reason == "bad metrics"
    assert events[0].to_dict()["from_summary"].startswith("canary m/1 -> m/3")
    paused = eps.set_paused("ep", True, store=store, reason="incident")
    assert paused.paused and eps.get_endpoint("ep", store=store).paused
    assert eps.revisions(store=store) == {"ep": paused.revision}


def test_every_change_records_the_replica_that_made_it(models):
    from typer.testing import CliRunner

    from prodml.cli.app import app as cli
    from prodml.store.leases import replica_id

    store = models
    eps.deploy("rp", "m/1", store=store)
    eps.deploy("rp", "m/2", "canary", steps=[50, 100], store=store)
    eps.promote("rp", store=store)
    eps.rollback("rp", store=store)
    eps.set_paused("rp", True, store=store)
    eps.set_fallback("rp", "0", store=store)
    events = eps.history("rp", store=store)
    assert len(events) == 6
    assert {e.replica for e in events} == {replica_id()}
    assert events[0].to_dict()["replica"] == replica_id()
    shown = CliRunner().invoke(cli, ["deployments", "history", "rp"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "replica" in shown.output
    assert shown.output.count(replica_id()) == 6


def test_blue_green_switch_and_rollback(models):
    store = models
    eps.deploy("bg", "m/1", store=store)
    staged = eps.deploy("bg", "m/2", "blue-green", store=store)
    assert staged.describe() == "blue-green blue live: m/1 (idle m/2)"
    live = eps.switch("bg", store=store)
    assert d.find(live.spec, d.BlueGreen).active == "green"
    back = eps.rollback("bg", store=store)
    assert d.find(back.spec, d.BlueGreen).active == "blue"


def test_concurrent_change_is_refused(models):
    store = models
    ep = eps.deploy("cc", "m/1", store=store)
    eps.set_paused("cc", True, store=store)
    with pytest.raises(eps.ConcurrentChangeError):
        eps.change("cc", lambda e: (e.spec, False, "resume", None), store=store,
                   expected_revision=ep.revision)


def test_deploy_errors_name_what_is_wrong(models):
    store = models
    with pytest.raises(NotFoundError, match="m/9"):
        eps.deploy("x", "m/9", store=store)
    with pytest.raises(InvalidInputError, match="strategy"):
        eps.deploy("x", "m/1", "canary", store=store)  # nothing serving yet
    with pytest.raises(InvalidInputError, match="endpoint"):
        eps.deploy("bad name!", "m/1", store=store)
    with pytest.raises(InvalidInputError, match="fallback"):
        eps.deploy("x", "m/1", fallback="import os", store=store)
    with pytest.raises(NotFoundError, match="endpoint 'x'"):
        eps.get_endpoint("x", store=store)
    eps.deploy("x", "m/1", store=store)
    with pytest.raises(InvalidInputError, match="no earlier deployment"):
        eps.rollback("x", store=store)
    with pytest.raises(InvalidInputError, match="no running canary"):
        eps.promote("x", store=store)


def test_a_trailing_newline_makes_no_new_endpoint(models):
    store = models
    eps.deploy("loan", "m/1", store=store)
    with pytest.raises(InvalidInputError, match="endpoint='loan\\\\n'"):
        eps.deploy("loan\n", "m/1", store=store)
    assert [e.name for e in eps.list_endpoints(store=store)] == ["loan"]


@pytest.mark.parametrize("options, field", [
    ({"strategy": "canary", "steps": "abc"}, "steps"),
    ({"strategy": "canary", "steps": [{}]}, "steps"),
    ({"strategy": "canary", "steps": [5, True]}, "steps"),
    ({"strategy": "shadow", "percent": "x"}, "percent"),
    ({"strategy": "shadow", "percent": {}}, "percent"),
    ({"strategy": "shadow", "percent": 0}, "percent"),  # a number, out of range
    ({"strategy": "canary", "percent": "x"}, "percent"),  # refused even where unused
    ({"mode": {}}, "mode"),
    ({"mode": "sometimes"}, "mode"),
    ({"threshold": "x"}, "threshold"),
    ({"strategy": "canary", "guards": []}, "guards"),
    ({"strategy": "canary", "step_every_requests": 1.5}, "step_every_requests"),
    ({"strategy": "blue-green", "smoke": [1]}, "smoke"),
    ({"reason": ["a"]}, "reason"),
    ({"reason": {"a": 1}}, "reason"),
    ({"fallback": []}, "fallback"),
    ({"fallback": {}}, "fallback"),
])
def test_deploy_options_of_the_wrong_type_name_the_field(models, options, field):
    store = models
    before = eps.deploy("typed", "m/1", store=store)
    options = dict(options)
    strategy = options.pop("strategy", "direct")
    with pytest.raises(InvalidInputError) as caught:
        eps.deploy("typed", "m/2", strategy, store=store, **options)
    assert caught.value.field == field
    assert eps.get_endpoint("typed", store=store).revision == before.revision
