"""Tracked runs on SQLite and PostgreSQL: what is recorded, and what is refused."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pandas as pd
import polars as pl
import pytest

import prodml as pm
from prodml.data.frames import digest_file


def test_params_are_write_once(store):
    with pm.start_run(experiment="e", params={"lr": 0.1, "depth": 3}) as run:
        run.log_param("lr", 0.1)  # same value again: fine
        with pytest.raises(pm.ParamChangedError, match=r"'lr'.*'0.1'.*'0.2'"):
            run.log_params({"lr": 0.2, "new": "x"})
    record = pm.runs.get(run.id)
    assert record.params == {"lr": "0.1", "depth": "3"}  # nothing of the refused call landed
    assert record.status == "FINISHED"


def test_metrics_history_steps_and_latest(store):
    with pm.start_run(experiment="e") as run:
        run.log_metric("loss", 1.0)
        run.log_metric("loss", 0.5)
        run.log_metric("loss", 0.25, step=10)
        run.log_metric("loss", 9.0, step=3)  # late point for an earlier step: not the latest
        run.log_metrics({"f1": 0.8, "auc": 0.9}, step=1)
        run.log_metric("diverged", float("nan"))
        run.log_metric("big", float("inf"))
    points = pm.runs.history(run.id, "loss")
    assert [(p.step, p.value) for p in points] == [(0, 1.0), (1, 0.5), (3, 9.0), (10, 0.25)]
    record = pm.runs.get(run.id)
    assert record.metrics["loss"] == 0.25
    assert record.metrics["f1"] == 0.8 and record.metrics["auc"] == 0.9
    assert math.isnan(record.metrics["diverged"])
    assert record.metrics["big"] == math.inf


@pytest.mark.parametrize("bad", ["0.5", None, True, [1.0]])
def test_metric_value_must_be_a_number(store, bad):
    with pm.start_run(experiment="e") as run:
        with pytest.raises(pm.InvalidInputError, match="metrics.acc"):
            run.log_metric("acc", bad)
    assert pm.runs.history(run.id, "acc") == []


def test_bad_names_are_refused(store):
    with pm.start_run(experiment="e") as run:
        with pytest.raises(pm.InvalidInputError, match="metric name"):
            run.log_metric("", 1.0)
        with pytest.raises(pm.InvalidInputError, match="param name"):
            run.log_param("a;drop table runs", 1)


def test_a_run_that_raises_is_failed_with_its_error(store):
    with pytest.raises(ZeroDivisionError):
        with pm.start_run(experiment="e") as run:
            run.log_metric("before", 1.0)
            1 / 0
    record = pm.runs.get(run.id)
    assert record.status == "FAILED"
    assert record.error.startswith("ZeroDivisionError: division by zero")
    assert "Traceback" in record.error and record.end_time is not None
    assert record.metrics == {"before": 1.0}


def test_recorded_without_being_asked(store):
    with pm.start_run(experiment="e") as run:
        np.linalg.svd(np.random.default_rng(0).random((300, 300)))  # some CPU and memory
    record = pm.runs.get(run.id)
    assert record.host and record.user
    assert record.environment["python"].count(".") == 2
    assert record.environment["packages"]["numpy"] == np.__version__
    assert record.wall_time_s > 0 and record.cpu_time_s > 0
    assert record.peak_memory_bytes > 10 * 2**20
    assert record.end_time >= record.start_time


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_code_version_commit_branch_dirty_and_diff_digest(store, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "feature")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    (repo / "train.py").write_text("print(1)\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "first")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()

    clean = pm.start_run(experiment="e", code_dir=repo)
    clean.end()
    (repo / "train.py").write_text("print(2)\n")
    dirty_a = pm.start_run(experiment="e", code_dir=repo)
    dirty_a.end()
    (repo / "train.py").write_text("print(3)\n")
    dirty_b = pm.start_run(experiment="e", code_dir=repo)
    dirty_b.end()

    a, b, c = (pm.runs.get(r.id).code for r in (clean, dirty_a, dirty_b))
    assert (a.commit, a.branch, a.dirty, a.diff_digest) == (head, "feature", False, None)
    assert b.commit == head and b.dirty is True and len(b.diff_digest) == 64
    assert c.dirty is True and c.diff_digest != b.diff_digest


def test_log_dataset_frames_and_files(store, tmp_path):
    data = {"age": [30.0, 40.0, None], "city": ["a", "b", "c"], "income": [1.5, 2.5, 3.5]}
    csv = tmp_path / "applications.csv"
    pd.DataFrame(data).to_csv(csv, index=False)
    with pm.start_run(experiment="e") as run:
        from_pandas = run.log_dataset(pd.DataFrame(data), context="train")
        from_polars = run.log_dataset(pl.DataFrame(data), context="eval")
        from_file = run.log_dataset(csv, context="test")
        other = run.log_dataset(pd.DataFrame({**data, "income": [1.5, 2.5, 9.9]}),
                                context="holdout")
    assert from_pandas.digest == from_polars.digest  # same values, same version
    assert from_pandas.id == from_polars.id
    assert other.digest != from_pandas.digest
    assert from_file.digest == digest_file(csv) and from_file.source == str(csv)
    assert (from_file.num_rows, from_file.num_columns) == (3, 3)
    types = {c["name"]: (c["type"], c["nullable"]) for c in from_pandas.schema}
    assert types == {"age": ("float", True), "city": ("string", False),
                     "income": ("float", False)}
    contexts = sorted(d.context for d in pm.runs.get(run.id).datasets)
    assert contexts == ["eval", "holdout", "test", "train"]


def test_log_artifacts_file_and_folder(store, tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("confusion matrix")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.svg").write_text("<svg/>")
    (folder / "sub" / "b.svg").write_text("<svg></svg>")
    with pm.start_run(experiment="e") as run:
        run.log_artifact(report)
        run.log_artifact(folder)
        run.log_bytes("card.json", b'{"owner": "risk"}')
    artifacts = {a.path: a for a in pm.runs.get(run.id).artifacts}
    assert sorted(artifacts) == ["card.json", "plots/a.svg", "plots/sub/b.svg", "report.txt"]
    assert store.artifacts.get_bytes(artifacts["report.txt"].sha256) == b"confusion matrix"
    with pytest.raises(pm.InvalidInputError, match="does not exist"):
        pm.start_run(experiment="e").log_artifact(tmp_path / "missing.txt")


def test_unknown_run_and_prefix_lookup(store):
    with pm.start_run(experiment="e") as run:
        pass
    assert pm.runs.get(run.id[:10]).id == run.id
    with pytest.raises(pm.NotFoundError, match="run 'nope' not found"):
        pm.runs.get("nope")
    with pytest.raises(pm.NotFoundError):
        pm.runs.get("")


def test_compare_marks_differences(store):
    with pm.start_run(experiment="e", params={"lr": 0.1, "model": "gbm"}) as a:
        a.log_metric("f1", 0.8)
    with pm.start_run(experiment="e", params={"lr": 0.1, "model": "lr"}) as b:
        b.log_metric("f1", 0.7)
    comparison = pm.runs.compare([a.id, b.id])
    rows = {(r.kind, r.name): r for r in comparison.rows}
    assert not rows[("param", "lr")].differs
    assert rows[("param", "model")].differs and rows[("param", "model")].values == ("gbm", "lr")
    assert rows[("metric", "f1")].values == (0.8, 0.7)
    with pytest.raises(pm.InvalidInputError):
        pm.runs.compare([a.id])
