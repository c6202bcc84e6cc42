"""Batch predictions: answers equal the served model's, chunking changes nothing, bad data
stops the job with nothing written, the job is a run with its lineage, Dask gives the same
file, and the real ``prodml predict`` command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodml.data.frames import digest_file
from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving import endpoints as eps
from prodml.serving.batch import PREDICTION, predict_batch
from prodml.serving.runtime import LoadedModel
from prodml.tracking import runs
from tests.serving.conftest import FEATURES, build_store

ROWS = 3000


@pytest.fixture(scope="module")
def loan(tmp_path_factory):
    """A store with loan/1 (logistic regression, with a schema) and loan/2 (gradient
    boosting), and 3,000 new applications with an ``id``, as a frame and as files."""
    home = tmp_path_factory.mktemp("batch")
    store, _ = build_store(home / ".prodml")
    from prodml.demo.data import loan_applications

    frame = loan_applications(rows=ROWS, seed=11)[FEATURES]
    frame.insert(0, "id", np.arange(100_000, 100_000 + ROWS))
    files = home / "files"
    (files / "folder").mkdir(parents=True)
    frame.to_parquet(files / "apps.parquet", index=False)
    frame.to_csv(files / "apps.csv", index=False)
    frame.to_json(files / "apps.jsonl", orient="records", lines=True)
    for i, part in enumerate(np.array_split(np.arange(ROWS), 3)):
        frame.iloc[part].to_parquet(files / "folder" / f"part-{i}.parquet", index=False)
    return store, frame, files, home


def expected(store, ref, frame) -> pd.DataFrame:
    """What the server would answer for these rows (LoadedModel.predict on all of them)."""
    model = LoadedModel.load(ref, store=store)
    out = model.predict(model.frame({c: frame[c].tolist() for c in frame.columns}))
    answers = pd.DataFrame({"id": frame["id"].to_numpy(), PREDICTION: out.predictions,
                            "confidence": out.confidence})
    for j, label in enumerate(out.classes):
        answers[f"probability_{label}"] = out.probabilities[:, j]
    return answers


def assert_same(a: pa.Table | pd.DataFrame, b: pa.Table | pd.DataFrame) -> None:
    a = a.to_pandas() if isinstance(a, pa.Table) else a
    b = b.to_pandas() if isinstance(b, pa.Table) else b
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for name in a.columns:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), rtol=1e-12)
        else:
            assert a[name].tolist() == b[name].tolist(), name


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or
                  p.name.endswith(".old"))


# -- answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["loan/1", "loan/2"])
def test_answers_equal_the_served_model_on_the_same_rows(loan, tmp_path, ref):
    store, frame, files, _ = loan
    out = tmp_path / "answers.parquet"
    result = predict_batch(ref, files / "apps.parquet", output=out, id_column="id",
                           chunk_rows=700, store=store)
    assert result.rows == ROWS and result.chunks == 5 and result.model == ref
    assert result.output == str(out.absolute()) and leftovers(tmp_path) == []
    assert_same(pq.read_table(out), expected(store, ref, frame))
    table = pq.read_table(out)
    assert table.schema.field(PREDICTION).type == pa.int64()
    np.testing.assert_allclose(table.column("probability_0").to_numpy()
                               + table.column("probability_1").to_numpy(), 1.0)


def test_chunking_and_format_change_nothing(loan, tmp_path):
    store, frame, files, _ = loan
    whole = predict_batch("loan/1", files / "apps.parquet", chunk_rows=10**7, id_column="id",
                          store=store)
    assert whole.chunks == 1 and whole.output is None and whole.artifacts == ()
    for data, chunk_rows in [(files / "apps.parquet", 97), (files / "apps.csv", 512),
                             (files / "apps.jsonl", 1000), (files / "folder", 400),
                             (str(files / "folder" / "*.parquet"), 999), (frame, 250),
                             (pa.Table.from_pandas(frame), 3000)]:
        result = predict_batch("loan/1", data, chunk_rows=chunk_rows, id_column="id",
                               store=store)
        assert result.chunks == -(-ROWS // chunk_rows), data
        assert_same(result.predictions, whole.predictions)
    one = predict_batch("loan/1", frame.iloc[:40], chunk_rows=1, id_column="id", store=store)
    assert one.chunks == 40
    assert_same(one.predictions, whole.predictions.slice(0, 40))


def test_kept_columns_come_first_and_progress_counts_rows(loan):
    store, frame, files, _ = loan
    seen = []
    result = predict_batch("loan/1", files / "apps.parquet", chunk_rows=1000,
                           keep_columns=["age", "salary"], id_column="id", store=store,
                           progress=lambda done, total: seen.append((done, total)))
    assert result.predictions.column_names[:4] == ["id", "age", "salary", PREDICTION]
    assert result.predictions.column("age").to_pylist() == frame["age"].tolist()
    assert seen == [(1000, ROWS), (2000, ROWS), (3000, ROWS)]
    everything = predict_batch("loan/1", frame, keep_columns=True, store=store)
    assert everything.predictions.column_names[:10] == ["id", *FEATURES]
    csv = []
    predict_batch("loan/1", files / "apps.csv", chunk_rows=1500, store=store,
                  progress=lambda done, total: csv.append((done, total)))
    assert csv == [(1500, None), (3000, None)]  # CSV: the total is not known before the end


def test_a_regressor_with_a_text_feature_read_from_csv(store, tmp_path):
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from prodml.data.schema import infer_schema
    from prodml.tracking import registry

    rng = np.random.default_rng(5)
    X = pd.DataFrame({"branch": rng.choice(["01", "02", "17"], 600), "x": rng.normal(size=600)})
    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["branch"]),
                                                  remainder="passthrough"), Ridge())
    model.fit(X, X.x * 2 + (X.branch == "17"))
    registry.register("price", model, input_example=X, schema=infer_schema(X))
    path = tmp_path / "in.csv"
    X.to_csv(path, index=False)  # "01" reads back as text only because the schema says so
    result = predict_batch("price/1", path, chunk_rows=256, keep_columns=["branch"])
    assert result.predictions.column_names == ["branch", PREDICTION]
    assert result.predictions.column("branch").to_pylist() == X.branch.tolist()
    np.testing.assert_allclose(result.predictions.column(PREDICTION).to_numpy(),
                               model.predict(X), rtol=1e-12)


def test_whole_data_rules_hold_on_totals_not_chunks(store, tmp_path):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from prodml.data.schema import Schema
    from prodml.tracking import registry

    X = pd.DataFrame({"x": np.linspace(-1, 1, 100)})
    model = make_pipeline(SimpleImputer(strategy="constant", fill_value=0.0),
                          LogisticRegression()).fit(X, (X.x > 0).astype(int))
    schema = Schema(min_rows=50, columns={"x": {"type": "float", "min_presence": 0.9}})
    registry.register("sparse", model, input_example=X, schema=schema)
    gaps = X.copy()
    gaps.loc[:7, "x"] = np.nan  # 8% missing in all, 80% of the first chunk of 10
    result = predict_batch("sparse/1", gaps, chunk_rows=10)
    assert result.rows == 100 and result.chunks == 10
    np.testing.assert_allclose(result.predictions.column("probability_1").to_numpy(),
                               model.predict_proba(gaps)[:, 1], rtol=1e-12)
    out = tmp_path / "out.parquet"
    gaps.loc[:11, "x"] = np.nan  # 12% missing in all
    with pytest.raises(InvalidInputError, match=r"^data\.x='88.0% present': .*at least 90.0% "
                                                r"\(rule low_presence\)"):
        predict_batch("sparse/1", gaps, output=out, chunk_rows=10)
    with pytest.raises(InvalidInputError, match="requires at least 50 rows"):
        predict_batch("sparse/1", X.iloc[:20], output=out)
    assert not out.exists() and leftovers(tmp_path) == []


# -- targets ---------------------------------------------------------------------------------
def test_a_model_reference_and_an_endpoint_both_score(loan):
    store, frame, _, _ = loan
    data = frame.iloc[:200]
    from prodml.tracking import registry

    registry.set_alias("loan", "champion", 2, store=store)
    by_alias = predict_batch("loan@champion", data, id_column="id", store=store)
    assert (by_alias.model, by_alias.endpoint) == ("loan/2", None)
    assert_same(by_alias.predictions, expected(store, "loan/2", data))
    specs = {"direct": "loan/1",
             "canary": {"kind": "canary", "primary": "loan/1", "candidate": "loan/2"},
             "shadow": {"kind": "shadow", "primary": "loan/1", "mirrors": ["loan/2"]},
             "blue-green": {"kind": "blue_green", "blue": "loan/2", "green": "loan/1",
                            "active": "green"}}
    for strategy, spec in specs.items():
        name = f"batch-{strategy}"
        eps.deploy(name, spec, store=store, reason="batch test")
        result = predict_batch(name, data, id_column="id", store=store)
        assert (result.model, result.endpoint) == ("loan/1", name), strategy
        assert_same(result.predictions, expected(store, "loan/1", data))
    with pytest.raises(NotFoundError, match="endpoint 'nowhere' not found: give an endpoint"):
        predict_batch("nowhere", data, store=store)
    with pytest.raises(NotFoundError):
        predict_batch("loan/9", data, store=store)


# -- bad data --------------------------------------------------------------------------------
def test_bad_rows_stop_the_job_with_nothing_written(loan, tmp_path):
    store, frame, _, _ = loan
    bad = frame.copy()
    bad.loc[2345, "age"] = 400  # in the fourth chunk of 700: three chunks were already written
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    out = tmp_path / "answers.parquet"
    with pytest.raises(InvalidInputError) as error:
        predict_batch("loan/1", path, output=out, chunk_rows=700, store=store)
    message = str(error.value)
    assert message.startswith("rows[2345].age=400: Column 'age' has 1 of 700 rows")
    assert "rule out_of_range, in input rows 2,100-2,799" in message
    assert error.value.field == "rows[2345].age"
    assert not out.exists() and leftovers(tmp_path) == []
    failed = runs.search("params.model = 'loan/1' and attributes.status = 'FAILED'",
                         experiment="batch-predictions", store=store)
    assert failed and "out_of_range" in failed[0].error

    out.write_bytes(b"the previous answers")  # a failed job leaves an older output alone
    with pytest.raises(InvalidInputError, match=r"^data\.hvalue='missing_column': model loan/1"):
        predict_batch("loan/1", frame.drop(columns="hvalue"), output=out, store=store)
    nulls = frame.astype({"salary": "float64"})
    nulls.loc[5, "salary"] = None
    with pytest.raises(InvalidInputError, match=r"^rows\[5\]\.salary=None: .*must not be null"):
        predict_batch("loan/1", nulls, output=out, store=store)
    assert out.read_bytes() == b"the previous answers" and leftovers(tmp_path) == []


def test_unreadable_values_and_wrong_arguments_are_named(loan, tmp_path):
    store, frame, files, _ = loan
    text = frame.astype({"commission": object})
    text.loc[2900, "commission"] = "lots"
    path = tmp_path / "text.csv"
    text.to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"^data\.commission=.*cannot be read: .*'lots'"):
        predict_batch("loan/1", path, output=tmp_path / "x.parquet", store=store)
    assert not (tmp_path / "x.parquet").exists()
    cases = [({"id_column": "ident"}, "id_column='ident': is not a column of the data"),
             ({"chunk_rows": 0}, "chunk_rows=0: must be a positive integer"),
             ({"engine": "spark"}, "engine='spark': must be one of local, dask"),
             ({"engine": "dask"}, "output=None: the dask engine writes its answers"),
             ({"output": tmp_path}, "is a folder; the local engine writes one Parquet file")]
    for kwargs, words in cases:
        with pytest.raises(InvalidInputError, match=words.replace("(", r"\(")):
            predict_batch("loan/1", frame, store=store, **kwargs)
    with pytest.raises(InvalidInputError, match="must not be the input data"):
        predict_batch("loan/1", files / "folder", output=files / "folder" / "part-0.parquet",
                      store=store)


# -- the record ------------------------------------------------------------------------------
def test_the_job_is_a_run_with_its_input_and_output(store, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from prodml.data.schema import infer_schema
    from prodml.tracking import registry

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    with runs.start_run("train", store=store) as train:
        model = LogisticRegression().fit(X, (X.x + X.y > 0).astype(int))
    registry.register("tiny", model, run=train, input_example=X, schema=infer_schema(X),
                      store=store)
    eps.deploy("tiny", "tiny/1", store=store)
    data = tmp_path / "in.parquet"
    X.assign(key=[f"k{i}" for i in range(400)]).to_parquet(data, index=False)
    out = tmp_path / "out" / "answers.parquet"  # its folder is made
    result = predict_batch("tiny", data, output=out, chunk_rows=150, id_column="key")
    record = runs.get(result.run_id, store=store)
    assert record.experiment == "batch-predictions" and record.status == "FINISHED"
    assert record.params == {"target": "tiny", "model": "tiny/1", "endpoint": "tiny",
                             "engine": "local", "chunk_rows": "150", "id_column": "key",
                             "output": str(out), "data": str(data)}
    assert record.metrics["rows"] == 400 and record.metrics["chunks"] == 3
    assert record.metrics["rows_per_s"] > 0 and record.metrics["seconds"] > 0
    [dataset] = record.datasets
    assert dataset.context == "input" and dataset.digest == digest_file(data)
    assert dataset.digest == result.input_digest and dataset.num_rows == 400
    assert dataset.source == str(data) and dataset.source_type == "file"
    assert [c["name"] for c in dataset.schema] == ["x", "y", "key"]
    [artifact] = record.artifacts
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert artifact.sha256 == sha == result.output_sha256 and artifact.path == out.name
    # lineage: output -> this run -> model version -> its training run
    version = registry.get(record.params["model"], store=store)
    assert version.run_id == train.id
    again = predict_batch("tiny/1", X, chunk_rows=1000)  # a frame: digested by content
    assert runs.get(again.run_id, store=store).datasets[0].source_type == "pandas"


# -- Dask ------------------------------------------------------------------------------------
def test_dask_on_a_local_cluster_writes_the_same_answers(loan, tmp_path):
    from distributed import LocalCluster

    store, frame, files, _ = loan
    local = predict_batch("loan/2", files / "folder", id_column="id", store=store)
    out = tmp_path / "answers.parquet"
    seen = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        result = predict_batch("loan/2", files / "folder", output=out, engine="dask",
                               scheduler=cluster.scheduler_address, chunk_rows=400,
                               id_column="id", store=store,
                               progress=lambda done, total: seen.append((done, total)))
        assert sorted(p.name for p in out.iterdir()) == [f"part-0000{i}.parquet"
                                                        for i in range(3)]
        assert result.rows == ROWS and result.chunks == 9 and len(result.artifacts) == 3
        assert_same(pq.read_table(out), local.predictions)
        assert max(seen) == (ROWS, ROWS) and len(seen) == 3
        bad = frame.copy()
        bad.loc[1500, "car"] = -3
        (tmp_path / "bad").mkdir()
        for i, part in enumerate(np.array_split(np.arange(ROWS), 3)):
            bad.iloc[part].to_parquet(tmp_path / "bad" / f"p{i}.parquet", index=False)
        again = tmp_path / "again.parquet"
        with pytest.raises(InvalidInputError) as error:
            predict_batch("loan/2", tmp_path / "bad", output=again, engine="dask",
                          scheduler=cluster.scheduler_address, store=store)
    assert str(error.value).startswith("partitions[1].rows[500].car=-3: Column 'car' has 1 of")
    assert "rule out_of_range, in rows 0-999 of partition 1" in str(error.value)
    assert not again.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_dask_on_worker_processes_ships_the_model_and_its_errors(loan, tmp_path):
    from distributed import LocalCluster

    store, frame, files, _ = loan
    local = predict_batch("loan/1", files / "folder", id_column="id", store=store)
    bad = frame.iloc[:50].copy()
    bad.loc[20, "zipcode"] = 12
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        out = tmp_path / "answers.parquet"
        predict_batch("loan/1", files / "folder", output=out, engine="dask", id_column="id",
                      scheduler=cluster.scheduler_address, store=store)
        assert_same(pq.read_table(out), local.predictions)
        with pytest.raises(InvalidInputError, match=r"^partitions\[0\]\.rows\[20\]\.zipcode=12"):
            predict_batch("loan/1", bad, output=tmp_path / "bad.parquet", engine="dask",
                          scheduler=cluster.scheduler_address, store=store)
    assert not (tmp_path / "bad.parquet").exists() and leftovers(tmp_path) == []


def test_dask_on_local_threads_reads_csv_and_frames_alike(loan, tmp_path):
    store, frame, files, _ = loan
    local = predict_batch("loan/1", frame, id_column="id", store=store)
    for data in (files / "apps.csv", frame):
        out = tmp_path / f"{type(data).__name__}.parquet"
        seen: list[int] = []
        result = predict_batch("loan/1", data, output=out, engine="dask", chunk_rows=1000,
                               id_column="id", store=store,
                               progress=lambda done, _, seen=seen: seen.append(done))
        assert result.rows == ROWS and out.is_dir() and seen[-1] == ROWS
        assert_same(pq.read_table(out), local.predictions)
    assert len(seen) == 3  # a frame is split into partitions of chunk_rows
    replaced = predict_batch("loan/1", frame.iloc[:10], output=out, engine="dask",
                             store=store)  # a folder there already is replaced whole
    assert replaced.rows == 10 and pq.read_table(out).num_rows == 10
    assert leftovers(tmp_path) == []


# -- the command -----------------------------------------------------------------------------
def prodml(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRODML_HOME": str(home / ".prodml"), "COLUMNS": "160"}
    env.pop("PRODML_DATABASE_URL", None)
    env.pop("PRODML_ARTIFACTS", None)
    return subprocess.run([sys.executable, "-m", "prodml", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_prodml_predict_writes_the_file_and_fails_in_one_line(loan):
    store, frame, files, home = loan
    eps.deploy("loan", "loan/1", store=store)
    done = prodml(["predict", "loan", str(files / "apps.csv"), "-o", "answers.parquet",
                   "--chunk-rows", "1000", "--id-column", "id"], home)
    assert done.returncode == 0, done.stderr
    assert "scored 3,000 rows with loan/1 (endpoint loan)" in done.stdout
    assert_same(pq.read_table(home / "answers.parquet"), expected(store, "loan/1", frame))
    shown = json.loads(prodml(["predict", "loan/2", str(files / "folder"), "-o", "dask.parquet",
                               "--engine", "dask", "--json"], home).stdout)
    assert shown["rows"] == ROWS and shown["model"] == "loan/2" and shown["engine"] == "dask"
    assert runs.get(shown["run_id"], store=store).params["engine"] == "dask"
    bad = frame.copy()
    bad.loc[7, "elevel"] = 99
    bad.to_csv(home / "bad.csv", index=False)
    failed = prodml(["predict", "loan", "bad.csv", "-o", "bad.parquet"], home)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith(
        "error: rows[7].elevel=99: Column 'elevel' has 1 of 3,000 rows")
    assert not (home / "bad.parquet").exists()
