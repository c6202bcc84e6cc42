"""Forward lineage from a corrupted source through real pipelines, and ``rerun_affected``
(SQLite and PostgreSQL).

The course notes' case: a blacklist of IP addresses turns out to hold addresses that were
blacklisted by mistake. Two sources, A (the bad one) and B; a pipeline trains one model on
A, one on B and one on A+B, each model is deployed and answers predictions, and a second
pipeline uses B only. Down from A must list exactly the A and A+B models, their endpoints and
how many predictions they answered; re-running what A touched must re-run only the steps
downstream of A, the B-only branch and the B-only pipeline staying cached or untouched.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

import prodml as pm
from prodml.pipelines.source import Source
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
from prodml.store import now_ms


@pm.step
def load(source: Source) -> pd.DataFrame:
    return pd.read_csv(source)


@pm.step
def features(frame: pd.DataFrame) -> pd.DataFrame:
    octets = frame["ip"].str.split(".", expand=True).astype(int)
    return frame.assign(first=octets[0], last=octets[3])


@pm.step
def combine(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([a, b], ignore_index=True)


@pm.step
def train(frame: pd.DataFrame, model: str) -> str:
    """Tracked run with its training data, a registered version tied to the execution."""
    with pm.start_run(experiment=f"train-{model}") as run:
        run.log_dataset(frame, context="train", name=f"{model}-train")
        fitted = DecisionTreeClassifier(random_state=0).fit(frame[["first", "last"]],
                                                            frame["blacklisted"])
    version = pm.models.register(model, fitted, run=run.id,
                                 input_example=frame[["first", "last"]])
    context = pm.pipelines.current()
    context.set_run_id(run.id)
    context.annotate_output(type="ModelVersion",
                            properties={"model": model, "version": version.version})
    return version.ref


@pm.pipeline(name="blacklist")
def blacklist(a: str = "", b: str = ""):
    frame_a = features(load(Source(a)))
    frame_b = features(load(Source(b)))
    return (train(frame_a, model="ip-a"), train(frame_b, model="ip-b"),
            train(combine(frame_a, frame_b), model="ip-ab"))


def fit(X, y):
    return DecisionTreeClassifier(random_state=0).fit(X, y)


@pm.pipeline(name="ip-release")
def release(source: str = ""):
    """The built-in steps from a file to an endpoint."""
    train_part, _test = pm.steps.split_train_test(features(pm.steps.ingest(Source(source))),
                                                  label="blacklisted", test_size=0.25)
    model = pm.steps.train(train_part, fit, label="blacklisted", exclude=["ip"])
    return pm.steps.deploy(pm.steps.register(model, "ip-release"), "ip-release")


@pm.pipeline(name="blacklist-b")
def blacklist_b(b: str = ""):
    return train(features(load(Source(b))), model="ip-b-only")


def _write(path: Path, wrong: bool) -> None:
    ips = [f"10.{i % 7}.{i % 5}.{i}" for i in range(40)]
    flagged = [int(i % 3 == 0 or (wrong and i % 4 == 1)) for i in range(40)]
    pd.DataFrame({"ip": ips, "blacklisted": flagged}).to_csv(path, index=False)


def _serve(store, endpoint: str, ref: str, answered: int) -> None:
    pm.endpoints.deploy(endpoint, ref, reason="release", store=store)
    name, _, version = ref.partition("/")
    log = PredictionLog(store)
    log.write_sync([PredictionRecord(new_prediction_id(), now_ms(), endpoint, name, int(version),
                                     "primary", 1, None, {"first": 10, "last": 3}, 1, None,
                                     0.9, 1.0, "ok") for _ in range(answered)])
    log.close()


@pytest.fixture
def world(store, tmp_path):
    a, b = tmp_path / "blacklist-a.csv", tmp_path / "blacklist-b.csv"
    _write(a, wrong=True)  # the corrupted source
    _write(b, wrong=False)
    pd.read_csv(b).assign(ip=lambda f: f["ip"].str.replace("10.", "172.", n=1)).to_csv(
        b, index=False)
    run = blacklist.run(params={"a": str(a), "b": str(b)}, store=store)
    assert run.status == "succeeded", run
    other = blacklist_b.run(params={"b": str(b)}, store=store)
    assert other.status == "succeeded", other
    for endpoint, ref, answered in (("ips-a", "ip-a/1", 4), ("ips-b", "ip-b/1", 5),
                                    ("ips-ab", "ip-ab/1", 6)):
        _serve(store, endpoint, ref, answered)
    source_a = next(n for n in pm.lineage(str(a), "down", store=store).artifacts("Source"))
    return {"a": a, "b": b, "run": run, "other": other, "source_a": f"artifact:{source_a.id}"}


def test_down_from_the_corrupted_source_lists_exactly_the_affected_models(world, store):
    for ref in (world["source_a"], str(world["a"])):
        graph = pm.lineage(ref, "down", store=store)
        assert graph.models() == ["ip-a/1", "ip-ab/1"], ref
        assert [n.id for n in graph.nodes_of("endpoint")] == ["ips-a", "ips-ab"]
        counts = {n.properties["model"]: n.properties["count"]
                  for n in graph.nodes_of("predictions")}
        assert counts == {"ip-a/1": 4, "ip-ab/1": 6}
        steps = sorted(n.properties["function"].rpartition(":")[2]
                       for n in graph.nodes_of("execution"))
        assert steps == ["combine", "features", "load", "train", "train"]
        assert graph.pipeline_runs() == [world["run"].id]
        runs = {n.properties["experiment"] for n in graph.nodes_of("run")}
        assert runs == {"train-ip-a", "train-ip-ab"}
    down_b = pm.lineage(str(world["b"]), "down", store=store)
    assert down_b.models() == ["ip-ab/1", "ip-b/1", "ip-b-only/1"]


def test_up_from_a_model_reaches_its_sources_through_the_pipeline(world, store):
    graph = pm.lineage("ip-ab@latest", "up", store=store)
    sources = sorted(n.properties["uri"] for n in graph.artifacts("Source"))
    assert sources == sorted([str(world["a"]), str(world["b"])])
    assert [n.properties["experiment"] for n in graph.nodes_of("run")] == ["train-ip-ab"]
    (dataset,) = graph.nodes_of("dataset")
    assert dataset.label == "ip-ab-train" and dataset.properties["num_rows"] == 80
    assert "ip-a/1" not in graph.models() and graph.models() == ["ip-ab/1"]
    only_a = pm.lineage("ip-a/1", "up", store=store)
    assert [n.properties["uri"] for n in only_a.artifacts("Source")] == [str(world["a"])]


def test_rerun_affected_reruns_only_the_steps_downstream_of_the_source(world, store):
    _write(world["a"], wrong=False)  # the blacklist is corrected
    reruns = pm.rerun_affected(world["source_a"], store=store)
    assert len(reruns) == 1  # the B-only pipeline never read A
    (rerun,) = reruns
    assert rerun.status == "succeeded"
    assert rerun.triggered_by == f"rerun:{world['source_a']}"
    assert rerun.params == world["run"].params
    # exactly the steps that A reached in the first run ran again; the rest came from cache
    affected = {n.properties["step"] for n in
                pm.lineage(world["source_a"], "down", store=store).nodes_of("execution")}
    status = {e.step: e.status for e in rerun.executions}
    assert set(status) == {e.step for e in world["run"].executions}
    assert {s for s, v in status.items() if v == "succeeded"} == affected
    assert {s for s, v in status.items() if v == "cached"} == set(status) - affected
    cached = sorted(e.function.rpartition(":")[2] for e in rerun.executions
                    if e.status == "cached")
    assert cached == ["features", "load", "train"]  # B's branch
    assert [v.ref for v in pm.models.search(name="ip-b")] == ["ip-b/1"]
    assert [v.ref for v in pm.models.search(name="ip-a")] == ["ip-a/1", "ip-a/2"]
    assert [v.ref for v in pm.models.search(name="ip-b-only")] == ["ip-b-only/1"]
    # the corrected source's lineage now reaches the new versions, the old one does not
    assert pm.lineage(world["source_a"], "down", store=store).models() == ["ip-a/1", "ip-ab/1"]
    fixed = pm.lineage(str(world["a"]), "down", store=store).models()
    assert fixed == ["ip-a/1", "ip-a/2", "ip-ab/1", "ip-ab/2"]


def test_a_pipeline_run_and_an_execution_are_refs_too(world, store):
    run_id = world["run"].id
    graph = pm.lineage(run_id[:12], "down", store=store)
    assert graph.roots == (f"pipeline_run:{run_id}",)
    # what it made, and what used it: the B-only pipeline's model reads the same B features
    assert graph.models() == ["ip-a/1", "ip-ab/1", "ip-b/1", "ip-b-only/1"]
    assert graph.to_text().splitlines()[0].startswith("pipeline run blacklist")
    up = pm.lineage(run_id, "up", store=store)
    assert sorted(n.properties["uri"] for n in up.artifacts("Source")) == sorted(
        [str(world["a"]), str(world["b"])])
    combine_step = next(e for e in world["run"].executions if e.step == "combine")
    below = pm.lineage(f"execution:{combine_step.id}", "down", store=store)
    assert below.models() == ["ip-ab/1"]


def test_a_prediction_of_a_model_the_built_in_steps_released_reaches_its_source(store, tmp_path):
    path = tmp_path / "release.csv"
    _write(path, wrong=False)
    run = release.run(params={"source": str(path)}, store=store)
    assert run.status == "succeeded", run
    log = PredictionLog(store)
    pid = new_prediction_id()
    log.write_sync(PredictionRecord(pid, now_ms(), "ip-release", "ip-release", 1, "primary", 1,
                                    None, {"blacklisted": 0}, 1, None, 0.9, 1.0, "ok"))
    log.close()
    graph = pm.lineage(pid, "up", store=store)
    assert graph.models() == ["ip-release/1"]
    assert [n.properties["uri"] for n in graph.artifacts("Source")] == [str(path)]
    (tracked,) = graph.nodes_of("run")
    trained_on = [e.source.partition(":")[2] for e in graph.edges
                  if e.relation == "input" and e.target == tracked.key]
    split_train = next(e for e in run.executions if e.step == "split_train_test"
                       ).output("train").properties["dataset_digest"]
    assert trained_on == [split_train]  # the split's train part, by digest
    ingested = next(e for e in run.executions if e.step == "ingest"
                    ).output().properties["dataset_digest"]
    assert {n.id for n in graph.nodes_of("dataset")} == {split_train, ingested}
    steps = {n.properties["step"] for n in graph.nodes_of("execution")}
    assert steps == {"ingest", "features", "split_train_test", "train", "register"}
    down = pm.lineage(str(path), "down", store=store)
    assert down.models() == ["ip-release/1"]
    assert [(n.id, n.properties["count"]) for n in down.nodes_of("predictions")] == [
        ("ip-release/1@ip-release", 1)]
    assert "endpoint:ip-release" in pm.lineage(f"pipeline_run:{run.id}", "down", store=store)
