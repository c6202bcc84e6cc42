"""Built-in steps in real pipelines (SQLite and PostgreSQL stores): a CSV and a SQLite query
ingested and registered, a bad file stopped by validation with its report, a failed gate
stopped with its verdict, and the happy path through training (weighted), the gate against
the champion, the registry and a shadow deployment."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

import prodml as pm
from prodml.data.schema import infer_schema
from prodml.serving import deployment as d
from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.pipelines.test_pipeline_engines import dask_client  # noqa: F401 (a fixture)

FEATURES = ["age", "income"]
GATE = {"name": "release", "conditions": [
    {"metric": "accuracy", "min": 0.7},
    {"metric": "accuracy", "slices": "city", "min": 0.6},
    {"metric": "accuracy", "change": {"baseline": "baseline", "min_absolute": -0.05}},
    {"attribute": "city", "metric": "demographic_parity_ratio", "min": 0.5}]}


def loans(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    income = rng.normal(50, 15, n).round(2)
    y = ((income / 10 + (age - 18) / 20 + rng.normal(0, 0.7, n)) > 7).astype(int)
    t0 = pd.Timestamp("2026-01-01")
    return pd.DataFrame({"t": [t0 + pd.Timedelta(hours=int(h)) for h in range(n)],
                         "age": age, "income": income,
                         "city": rng.choice(["north", "south"], n), "y": y})


def fit(X, y, sample_weight=None, C=1.0):
    model = LogisticRegression(C=C, max_iter=1000).fit(X, y, sample_weight=sample_weight)
    return model, {"train_accuracy": float(model.score(X, y))}


SCHEMA = json.loads(json.dumps(infer_schema(loans()).to_dict(), default=str))


@pm.pipeline(name="loan-steps")
def loan_pipeline(path: str = "", model: str = "loan", endpoint: str = "loan-ep",
                  strategy: str = "shadow", C: float = 1.0, gate: dict = GATE):
    raw = pm.steps.ingest(pm.pipelines.Source(path))
    checked = pm.steps.validate(raw, SCHEMA)
    train, _validation, test = pm.steps.split(checked, label="y", seed=0)
    data = pm.steps.training_data(train, strategy="weighted", time_column="t",
                                  half_life="7d")
    fitted = pm.steps.train(data, fit, label="y", features=FEATURES, params={"C": C})
    verdict = pm.steps.evaluate_gate(fitted, test, gate, label="y",
                                     baseline=f"{model}@champion")
    version = pm.steps.register(fitted, model, blessing=verdict, aliases=["challenger"])
    return pm.steps.deploy(version, endpoint, strategy=strategy, percent=50.0)


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "loans.csv"
    loans().to_csv(path, index=False)
    return path


def test_csv_to_shadow_deployment(store, csv_path):
    first = loan_pipeline.run(params={"path": str(csv_path)}, store=store)
    assert first.status == "succeeded", first.error
    steps = [e.step for e in first.executions]
    assert steps == ["ingest", "validate", "split", "training_data", "train", "evaluate_gate",
                     "register", "deploy"]

    # ingest registered the file's data as a dataset version, named by its artifact
    dataset = first.step("ingest").output()
    assert dataset.type == "Dataset" and dataset.properties["rows"] == 600
    with store.read() as conn:
        row = conn.execute(select(t.datasets).where(
            t.datasets.c.digest == dataset.properties["dataset_digest"])).mappings().one()
    assert row["source_type"] == "file" and row["source"] == str(csv_path.resolve())
    assert row["num_rows"] == 600 and row["profile_sha256"] is not None
    assert first.step("ingest").inputs[0].type == "Source"

    # training_data weighted the rows; train passed the weights on
    data = first.output("training_data")
    window = first.step("training_data").output().properties["retraining"]
    assert window["strategy"] == "weighted" and window["rows_kept"] == len(data) == 360
    expected = 0.5 ** ((data["t"].max() - data["t"]) / pd.Timedelta("7D"))
    np.testing.assert_allclose(data["sample_weight"], expected, rtol=1e-12)
    model = first.output("train")
    refit = LogisticRegression(C=1.0, max_iter=1000).fit(
        data[FEATURES], data["y"], sample_weight=data["sample_weight"])
    unweighted = LogisticRegression(C=1.0, max_iter=1000).fit(data[FEATURES], data["y"])
    np.testing.assert_allclose(model.coef_, refit.coef_, rtol=1e-6)
    assert not np.allclose(model.coef_, unweighted.coef_, rtol=1e-3)

    # the tracked run: params, metrics, its training dataset, tied to the execution
    train = first.step("train")
    run = pm.runs.get(train.run_id, store=store)
    assert run.experiment == "loan-steps" and run.params == {"C": "1.0"}
    assert run.metrics["train_accuracy"] > 0.7
    assert run.tags["prodml.pipeline_run"] == first.id
    digest = first.step("training_data").output().properties["dataset_digest"]
    assert [d.digest for d in run.datasets] == [digest]

    # no champion yet: change conditions skipped and said so; the version keeps run + verdict
    gate = first.step("evaluate_gate").output()
    assert gate.type == "Blessing" and gate.properties["blessed"] is True
    assert gate.properties["skipped"] == ["accuracy change vs baseline >= -0.05 (overall)"]
    outcome = first.output("evaluate_gate")  # slices and fairness as the gate names them
    assert outcome.evaluation.slice_names == ["overall", "city=north", "city=south"]
    assert set(outcome.evaluation.fairness) == {"city"}
    assert [r.slice for r in outcome.blessing.results] == [
        "overall", "city=north", "city=south", "city"]
    assert first.output("register") == {"model": "loan", "version": 1, "ref": "loan/1"}
    version = pm.models.get("loan/1", store=store)
    assert version.run_id == train.run_id and version.aliases == ("challenger",)
    assert pm.models.blessing("loan/1", store=store).blessed
    assert first.step("register").output().properties["model"] == "loan"

    # a new endpoint gets the version directly, whatever the strategy asked
    deployed = first.output("deploy")
    assert deployed["strategy"] == "direct" and deployed["asked"] == "shadow"
    assert eps.get_endpoint("loan-ep", store=store).describe() == "loan/1"

    # v1 becomes champion; a new C retrains, is gated against it and shadows it
    pm.models.set_alias("loan", "champion", 1, store=store)
    second = loan_pipeline.run(params={"path": str(csv_path), "C": 0.5}, store=store)
    assert second.status == "succeeded", second.error
    statuses = {e.step: e.status for e in second.executions}
    assert statuses["split"] == statuses["training_data"] == "cached"
    assert statuses["ingest"] == "succeeded"  # always reads: the file may have changed
    assert statuses["train"] == statuses["register"] == statuses["deploy"] == "succeeded"
    verdict = second.output("evaluate_gate")
    assert verdict.baseline_ref == "loan/1" and verdict.skipped == ()
    changed = [r for r in verdict.blessing.results if "change" in r.condition]
    assert changed and all(r.passed for r in changed)
    spec = eps.get_endpoint("loan-ep", store=store).spec
    assert isinstance(spec, d.Shadow) and spec.primary.model == "loan/1"
    assert [(m.node.model, m.percent) for m in spec.mirrors] == [("loan/2", 50.0)]
    event = eps.history("loan-ep", store=store)[0]
    assert event.actor == "pipeline:loan-steps" and second.id in event.reason


def test_sqlite_query_ingest_and_recent_window(store, tmp_path):
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as conn:
        loans().to_sql("loans", conn, index=False)
    query = "SELECT * FROM loans WHERE city = 'north'"

    @pm.pipeline(name="loan-query")
    def from_query(connection: str = f"sqlite:///{database}"):
        raw = pm.steps.ingest(pm.pipelines.Source(query, connection=connection))
        pm.steps.profile(raw)
        return pm.steps.training_data(raw, strategy="recent", time_column="t", window="5d")

    run = from_query.run(store=store)
    assert run.status == "succeeded", run.error
    north = loans().query("city == 'north'")
    raw = run.output("ingest")
    assert len(raw) == len(north) and list(raw.columns) == list(north.columns)
    digest = run.step("ingest").output().properties["dataset_digest"]
    with store.read() as conn:
        row = conn.execute(select(t.datasets).where(t.datasets.c.digest == digest)
                           ).mappings().one()
    assert row["source_type"] == "query" and query in row["source"]
    source = run.step("ingest").inputs[0]
    assert source.type == "Source" and source.properties["query"] == query

    profiled = run.output("profile")
    assert profiled.rows == len(north) and profiled["age"].max == north["age"].max()
    assert run.step("profile").output().type == "Profile"

    # times came back as text from SQLite; "recent" kept the last five days only
    recent = run.output("training_data")
    newest = pd.to_datetime(north["t"]).max()
    assert len(recent) == int((pd.to_datetime(north["t"]) >= newest - pd.Timedelta("5D")).sum())
    window = run.step("training_data").output().properties["retraining"]
    assert window["rows_dropped"] == len(north) - len(recent) > 0
    assert "sample_weight" not in recent.columns

    # same query, new rows in the table: ingest reads again and what follows sees them
    with sqlite3.connect(database) as conn:
        loans(40, seed=1).assign(city="north").to_sql("loans", conn, index=False,
                                                      if_exists="append")
    again = from_query.run(store=store)
    assert again.step("ingest").status == "succeeded"
    assert len(again.output("ingest")) == len(north) + 40
    assert again.step("profile").status == "succeeded"
    assert again.output("profile").rows == len(north) + 40
    unchanged = from_query.run(store=store)  # nothing new: the steps after ingest are cached
    assert [e.status for e in unchanged.executions] == ["succeeded", "cached", "cached"]

    bad = from_query.run(params={"connection": f"sqlite:///{tmp_path / 'nothing.db'}"},
                         store=store)
    assert bad.status == "failed" and "no such table: loans" in bad.step("ingest").error


def test_a_bad_file_stops_at_validation_with_its_report(store, tmp_path):
    broken = loans()
    broken.loc[:9, "age"] = 400  # out of range
    broken["income"] = broken["income"].astype(object)
    broken.loc[20:24, "income"] = None  # nulls where the schema has none
    path = tmp_path / "broken.csv"
    broken.to_csv(path, index=False)

    run = loan_pipeline.run(params={"path": str(path)}, store=store)
    assert run.status == "failed"
    validate = run.step("validate")
    assert validate.status == "failed"
    assert "validation failed" in validate.error and "out_of_range" in validate.error
    assert "null_not_allowed" in validate.error
    assert {e.step: e.status for e in run.executions if e.step not in ("ingest", "validate")
            } == dict.fromkeys(["split", "training_data", "train", "evaluate_gate",
                                "register", "deploy"], "skipped")
    report = validate.output("report")
    assert report.type == "Report" and report.properties["ok"] is False
    kept = json.loads(store.artifacts.get_bytes(report.blob_sha256))
    kinds = {(a["column"], a["kind"]) for a in kept["anomalies"]}
    assert {("age", "out_of_range"), ("income", "null_not_allowed")} <= kinds
    with pytest.raises(pm.steps.StepStoppedError, match="out_of_range"):
        run.raise_for_status()
    assert pm.models.search(name="loan", store=store) == []


def test_a_failed_gate_stops_before_the_registry(store, csv_path):
    strict = {"name": "strict", "conditions": [{"metric": "accuracy", "min": 0.999}]}
    run = loan_pipeline.run(params={"path": str(csv_path), "gate": strict}, store=store)
    assert run.status == "failed"
    gate = run.step("evaluate_gate")
    assert gate.status == "failed" and "strict: NOT BLESSED" in gate.error
    verdict = gate.output("blessing")
    assert verdict.type == "Blessing" and verdict.properties["blessed"] is False
    kept = json.loads(store.artifacts.get_bytes(verdict.blob_sha256))
    assert kept["results"][0]["passed"] is False and kept["results"][0]["observed"] < 0.999
    assert run.step("register").status == run.step("deploy").status == "skipped"
    assert pm.models.search(name="loan", store=store) == []
    with pytest.raises(pm.NotFoundError):
        eps.get_endpoint("loan-ep", store=store)


def test_steps_outside_a_pipeline_are_plain_calls(store, csv_path, tmp_path):
    frame = pm.steps.ingest(csv_path)
    assert len(frame) == 600
    parquet = tmp_path / "loans.parquet"
    frame.to_parquet(parquet)
    again = pm.steps.ingest(pm.pipelines.Source(str(parquet)), name="loans-parquet")
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)  # Parquet keeps ms
    with store.read() as conn:
        names = set(conn.execute(select(t.datasets.c.name)).scalars())
    assert {"loans", "loans-parquet"} <= names
    with pytest.raises(pm.InvalidInputError, match="file does not exist"):
        pm.steps.ingest(tmp_path / "missing.csv")
    with pytest.raises(pm.InvalidInputError, match="must end in"):
        pm.steps.ingest(tmp_path / "notes.txt")
    kept = pm.steps.training_data(frame, strategy="recent", time_column="t", window=100)
    assert len(kept) == 100
    with pytest.raises(pm.InvalidInputError, match="time_column"):
        pm.steps.training_data(frame, strategy="recent", time_column="when", window=5)


def test_deploy_blue_green_and_canary_guards_outside_a_pipeline(store, csv_path):
    frame = loans()
    model, _ = fit(frame[FEATURES], frame["y"])
    for _ in range(3):
        pm.models.register("bg", model, input_example=frame[FEATURES], store=store)
    assert pm.steps.deploy("bg/1", "bg-ep", strategy="blue-green")["strategy"] == "direct"
    out = pm.steps.deploy({"model": "bg", "version": 2}, "bg-ep", strategy="blue-green")
    spec = eps.get_endpoint("bg-ep", store=store).spec
    assert out["strategy"] == "blue-green" and isinstance(spec, d.BlueGreen)
    assert (spec.blue.model, spec.green.model, spec.active) == ("bg/1", "bg/2", "blue")
    with pytest.raises(pm.InvalidInputError, match="max_error_rate"):
        pm.steps.deploy("bg/3", "bg-ep", strategy="canary", guards={"max_error_rate": 2})
    with pytest.raises(pm.InvalidInputError, match="version"):
        pm.steps.deploy(3, "bg-ep")


def test_builtin_steps_on_dask(store, csv_path, dask_client):  # noqa: F811 (the fixture)
    run = loan_pipeline.run(params={"path": str(csv_path), "strategy": "canary"}, store=store,
                            engine="dask", scheduler=dask_client)
    assert run.status == "succeeded", run.error
    assert run.spec["engine"] == "dask"
    train = run.step("train")
    assert pm.models.get("loan/1", store=store).run_id == train.run_id
    assert pm.runs.get(train.run_id, store=store).tags["prodml.pipeline_run"] == run.id
    assert eps.get_endpoint("loan-ep", store=store).describe() == "loan/1"
    workers = {e.resources["worker"] for e in run.executions}
    assert not any(w == "MainThread" for w in workers)
