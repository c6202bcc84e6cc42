"""Lineage upstream from a logged prediction (SQLite and PostgreSQL), over records written
through the public APIs: tracked runs with their datasets, the registry, a deployment and
the prediction log, annotations and per-row provenance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import prodml as pm
from prodml.errors import InvalidInputError, NotFoundError
from prodml.pipelines.lineage_refs import UnknownRefError
from prodml.serving import endpoints as eps
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
from prodml.store import now_ms


def _loans(rows: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"age": [20 + (i * 7) % 50 for i in range(rows)],
                         "salary": [1.0 + shift + (i * 13) % 10 for i in range(rows)],
                         "approved": [i % 2 for i in range(rows)]})


def _train(path: Path, frame: pd.DataFrame, test: pd.DataFrame, model: str) -> tuple[str, str]:
    """A run that trains on the CSV at ``path`` and registers ``model``; (run id, ref)."""
    frame.to_csv(path, index=False)
    with pm.start_run(experiment="lineage", params={"C": 1.0}) as run:
        run.log_dataset(path, context="train")
        run.log_dataset(test, context="test")
        fitted = LogisticRegression().fit(frame[["age", "salary"]], frame["approved"])
    version = pm.models.register(model, fitted, run=run.id,
                                 input_example=frame[["age", "salary"]])
    return run.id, version.ref


def _log(store, endpoint: str, ref: str, count: int, revision: int, route: str = "primary"
         ) -> list[str]:
    name, _, version = ref.partition("/")
    log = PredictionLog(store)
    records = [PredictionRecord(new_prediction_id(), now_ms(), endpoint, name, int(version),
                                route, revision, None, {"age": 30, "salary": 2.0}, 1,
                                None, 0.9, 1.5, "ok") for _ in range(count)]
    log.write_sync(records)
    log.close()
    return [r.id for r in records]


@pytest.fixture
def served(store, tmp_path):
    """loan/1 trained on loans-v1.csv (labelled by ann and bob, with a provenance column
    naming carl), then loan/2 on loans-v2.csv; loan/1 deployed, loan/2 canaried beside it."""
    v1, v2 = tmp_path / "loans-v1.csv", tmp_path / "loans-v2.csv"
    test = _loans(20, shift=5.0)
    run1, ref1 = _train(v1, _loans(60).assign(inspector=["carl"] * 40 + ["dora"] * 20), test,
                        "loan")
    pm.labels.import_annotations({"item": list(range(60)) * 2,
                                  "labeler": ["ann"] * 60 + ["bob"] * 60,
                                  "label": [i % 2 for i in range(60)] * 2}, dataset=v1)
    pm.labels.record_provenance(v1, ["inspector"])
    run2, ref2 = _train(v2, _loans(80, shift=1.0), test, "loan")
    eps.deploy("loan", ref1, reason="first", actor="dana")
    first = _log(store, "loan", ref1, 5, revision=1)
    eps.deploy("loan", ref2, strategy="canary", steps=[50, 100], reason="try v2", actor="dana")
    later = _log(store, "loan", ref2, 3, revision=2, route="canary")
    return {"v1": v1, "run1": run1, "run2": run2, "first": first, "later": later,
            "ref1": ref1, "ref2": ref2}


def test_prediction_reaches_the_exact_training_dataset_version_and_its_labelers(served):
    graph = pm.lineage(served["first"][0], direction="up")
    assert graph.roots == (f"prediction:{served['first'][0]}",)
    assert graph.models() == [served["ref1"]]
    assert [n.id for n in graph.nodes_of("run")] == [served["run1"]]
    train_digest = pm.labels.dataset_digest(served["v1"])
    trained_on = {e.properties["context"]: e.source.partition(":")[2] for e in graph.edges
                  if e.relation == "input"}
    assert trained_on["train"] == train_digest  # the exact version, not loans-v2
    assert set(trained_on) == {"train", "test"}
    assert len(graph.nodes_of("dataset")) == 2
    labelers = {e.source.partition(":")[2]: e.properties for e in graph.edges
                if e.relation == "labeled"}
    assert labelers["ann"]["annotations"] == labelers["bob"]["annotations"] == 60
    assert labelers["carl"] == {"rows": 40, "from": "provenance"}
    assert {n.id for n in graph.nodes_of("labeler")} == {"ann", "bob", "carl", "dora"}
    assert [n.id for n in graph.nodes_of("source")] == [str(served["v1"])]
    routed = next(e for e in graph.edges if e.relation == "routed")
    assert routed.properties["revision"] == 1 and routed.properties["actor"] == "dana"
    # the endpoint is where it was routed, not a way up to every version ever deployed
    assert served["ref2"] not in graph.models()
    text = graph.to_text()
    assert text.splitlines()[0].startswith(f"prediction {served['first'][0]}")
    assert "trained on [train]: dataset loans-v1" in text
    assert "labeled by [60 labels on 60 rows]: labeler ann" in text
    assert json.loads(json.dumps(graph.to_dict()))["direction"] == "up"


def test_prediction_reaches_the_person_who_labelled_it(served, store):
    from prodml.serving.feedback import record_feedback

    pid = served["first"][1]
    record_feedback([{"prediction_id": pid, "label": 1}], source="api", actor="lena",
                    store=store)
    record_feedback([{"prediction_id": pid, "event": "clicked"}], source="api",
                    actor="eve", store=store)  # an outcome event is no label
    graph = pm.lineage(pid, direction="up")
    labeled = [(e.source, e.properties["source"]) for e in graph.edges
               if e.relation == "labeled" and e.target == f"prediction:{pid}"]
    assert labeled == [("labeler:lena", "api")]


def test_depth_bounds_the_hops(served):
    ref = served["first"][0]
    assert {n.kind for n in pm.lineage(ref, "up", depth=0).nodes.values()} == {"prediction"}
    one = pm.lineage(ref, "up", depth=1)
    assert {n.kind for n in one.nodes.values()} == {"prediction", "model_version", "endpoint"}
    two = pm.lineage(ref, "up", depth=2)
    assert [n.id for n in two.nodes_of("run")] == [served["run1"]]
    assert not two.nodes_of("dataset")


def test_refs_name_models_runs_datasets_sources_and_labelers(served):
    for ref in ("models:/loan/1", "loan/1", "loan@latest"):
        graph = pm.lineage(ref, "up")
        assert graph.roots == (f"model_version:loan/{1 if '1' in ref else 2}",)
    assert pm.lineage(served["run1"][:10], "up").roots == (f"run:{served['run1']}",)
    digest = pm.labels.dataset_digest(served["v1"])
    down = pm.lineage(digest, "down")
    assert down.models() == [served["ref1"]]
    assert [n.id for n in down.nodes_of("endpoint")] == ["loan"]
    answered = down.nodes_of("predictions")
    assert [(n.properties["model"], n.properties["count"]) for n in answered] == [
        (served["ref1"], 5)]
    assert answered[0].properties["routes"] == {"primary": 5}
    # from the file itself, and from a labeler: the same models, their predictions
    assert pm.lineage(str(served["v1"]), "down").models() == [served["ref1"]]
    assert pm.lineage(f"source:{served['v1']}", "down").models() == [served["ref1"]]
    assert pm.lineage(f"file://{served['v1']}", "down").roots == (f"source:{served['v1']}",)
    assert pm.lineage(f"dataset:{digest}", "up").roots == (f"dataset:{digest}",)
    assert pm.lineage("labeler:ann", "down").models() == [served["ref1"]]
    # an endpoint as the start counts every version it answered with
    whole = pm.lineage("endpoint:loan", "down")
    counts = {n.properties["model"]: n.properties["count"] for n in whole.nodes_of("predictions")}
    assert counts == {served["ref1"]: 5, served["ref2"]: 3}
    assert set(pm.lineage("endpoint:loan", "up").models()) == {served["ref1"], served["ref2"]}


def test_unknown_refs_and_bad_arguments_say_what_is_wrong(served):
    with pytest.raises(UnknownRefError, match="nowhere.csv") as caught:
        pm.lineage("nowhere.csv")
    assert caught.value.exit_code == 2 and isinstance(caught.value, NotFoundError)
    for ref in ("0" * 32, "f" * 64, "artifact:999", "loan/9", "ghost@champion", ""):
        with pytest.raises(UnknownRefError):
            pm.lineage(ref)
    with pytest.raises(InvalidInputError, match="direction"):
        pm.lineage(served["first"][0], direction="sideways")
    with pytest.raises(InvalidInputError, match="depth"):
        pm.lineage(served["first"][0], depth=-1)


def test_queries_per_walk_do_not_grow_with_the_records(store, served):
    """Set-based hops: ten times the predictions and labels cost the same statements."""
    from sqlalchemy import event

    def statements(ref: str, direction: str) -> int:
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])
        event.listen(store.engine, "before_cursor_execute", listener)
        try:
            pm.lineage(ref, direction)
        finally:
            event.remove(store.engine, "before_cursor_execute", listener)
        return len(seen)

    digest = pm.labels.dataset_digest(served["v1"])
    before = statements(digest, "down"), statements(served["first"][0], "up")
    _log(store, "loan", served["ref1"], 50, revision=1)
    pm.labels.import_annotations({"item": list(range(60)), "labeler": ["eve"] * 60,
                                  "label": [1] * 60}, dataset=served["v1"])
    after = statements(digest, "down"), statements(served["first"][0], "up")
    assert after == before
    started = time.perf_counter()
    pm.lineage(served["first"][0], "up")
    assert time.perf_counter() - started < 2.0


def test_counts_per_endpoint_are_exact_with_or_without_a_fallback(store, served):
    """An endpoint that only ever served loan/1 directly is counted from its index; once it
    has a fallback rule, rows answered by the rule (no model) are not loan/1's."""
    eps.deploy("solo", served["ref1"], reason="alone")
    _log(store, "solo", served["ref1"], 4, revision=1)

    def solo() -> dict:
        graph = pm.lineage(served["ref1"], "down")
        return next(n.properties for n in graph.nodes_of("predictions")
                    if n.properties["endpoint"] == "solo")

    assert (solo()["count"], solo()["routes"]) == (4, {"primary": 4})
    eps.set_fallback("solo", "0")
    log = PredictionLog(store)
    log.write_sync(PredictionRecord(new_prediction_id(), now_ms(), "solo", None, None,
                                    "fallback", 2, None, {"age": 1}, 0, None, None, 0.1, "ok"))
    log.close()
    assert (solo()["count"], solo()["routes"]) == (4, {"primary": 4})
