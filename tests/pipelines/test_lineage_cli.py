"""``prodml lineage`` in a subprocess over a SQLite store written through the public APIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import prodml as pm
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
from prodml.store import now_ms, open_store


def prodml(args: list[str], home) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRODML_HOME": str(home), "COLUMNS": "200"}
    env.pop("PRODML_DATABASE_URL", None)
    env.pop("PRODML_ARTIFACTS", None)
    return subprocess.run([sys.executable, "-m", "prodml", "lineage", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"),
                       make_default=True)
    data = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
    path = tmp_path / "loans.csv"
    data.to_csv(path, index=False)
    with pm.start_run(experiment="cli") as run:
        run.log_dataset(path, context="train")
    pm.models.register("loan", LogisticRegression().fit(data[["x"]], data["y"]), run=run.id,
                       input_example=data[["x"]])
    pm.endpoints.deploy("loan", "loan/1", reason="first")
    log = PredictionLog(store)
    pid = new_prediction_id()
    log.write_sync(PredictionRecord(pid, now_ms(), "loan", "loan", 1, "primary", 1, None,
                                    {"x": 1.0}, 0, None, 0.7, 1.0, "ok"))
    log.close()
    return {"home": home, "prediction": pid, "run": run.id, "path": str(path)}


def test_tree_json_and_depth(home):
    done = prodml([home["prediction"], "--up"], home["home"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"prediction {home['prediction']}")
    assert any("answered by [primary]: model version loan/1" in line for line in lines)
    assert any("trained on [train]: dataset loans" in line for line in lines)
    assert any(f"loaded from: source {home['path']}" in line for line in lines)
    assert "upstream of" in lines[-1]
    graph = json.loads(prodml([home["path"], "--down", "--json"], home["home"]).stdout)
    kinds = {n["kind"] for n in graph["nodes"]}
    assert {"source", "dataset", "run", "model_version", "endpoint", "predictions"} <= kinds
    answered = next(n for n in graph["nodes"] if n["kind"] == "predictions")
    assert answered["properties"]["count"] == 1
    shallow = json.loads(prodml(["loan/1", "--depth", "1", "--json"], home["home"]).stdout)
    assert {n["kind"] for n in shallow["nodes"]} == {"model_version", "run"}


def test_an_unknown_ref_is_one_line_and_exit_2(home):
    done = prodml(["no-such-thing.csv", "--down"], home["home"])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no-such-thing.csv" in done.stderr
    assert "Traceback" not in done.stderr
    bad = prodml(["loan/1", "--depth", "-1"], home["home"])
    assert bad.returncode == 2 and "depth" in bad.stderr  # Typer's usage error
