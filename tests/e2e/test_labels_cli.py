"""``prodml labels ...`` run for real in a subprocess, on a fresh SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from tests.data.labels.simulated import crew


def prodml(args, cwd, check=True):
    env = {**os.environ, "PRODML_HOME": str(cwd / ".prodml"), "COLUMNS": "160"}
    env.pop("PRODML_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "prodml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"prodml {args} exited {done.returncode}: {done.stderr}")
    return done


def test_import_then_agreement_disputes_consensus_and_hlp_from_the_store(tmp_path):
    frame, truth = crew(items=120, seed=3)
    frame["instruction"] = np.where(frame["item"] < 60, "v1", "v2")
    frame.to_parquet(tmp_path / "labels.parquet")
    pd.DataFrame({"item": range(120), "label": truth}).to_csv(tmp_path / "truth.csv",
                                                               index=False)
    out = prodml(["labels", "import", "labels.parquet"], tmp_path).stdout
    assert "imported 480 annotations of 120 items by 5 labelers" in out

    report = json.loads(prodml(["labels", "agreement", "--json"], tmp_path).stdout)
    assert report["items"] == 120 and set(report["by_instruction"]) == {"v1", "v2"}
    worst = min(report["per_labeler"], key=lambda x: x["with_consensus"])
    assert worst["labeler"] == "eve"
    human = prodml(["labels", "agreement"], tmp_path).stdout
    assert "Krippendorff's alpha" in human and "eve" in human

    found = json.loads(prodml(["labels", "disputes", "--top", "3", "--json"], tmp_path).stdout)
    assert len(found["table"]) == 3 and found["table"][0]["entropy"] > 0
    assert "line" in found["table"][0]

    prodml(["labels", "consensus", "-o", "consensus.csv"], tmp_path)
    assert len(pd.read_csv(tmp_path / "consensus.csv")) == 120

    hlp = json.loads(prodml(["labels", "hlp", "--truth", "truth.csv", "--slice", "line",
                             "--json"], tmp_path).stdout)
    assert set(hlp["slices"]) == {"line=a", "line=b"} and 0.8 < hlp["overall"] < 0.95
    only_v2 = json.loads(prodml(["labels", "agreement", "--instruction", "v2", "--json"],
                                tmp_path).stdout)
    assert only_v2["items"] == 60


def test_labels_from_a_file_and_label_issues(tmp_path):
    frame, _ = crew(items=40, seed=4)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    report = json.loads(prodml(["labels", "agreement", "labels.csv", "--json"],
                               tmp_path).stdout)
    assert report["annotations"] == 160
    x = np.linspace(-3, 3, 300)
    data = pd.DataFrame({"x": x, "y": (x > 0).astype(int)})
    data.loc[[5, 290], "y"] = 1 - data.loc[[5, 290], "y"]  # two clear flips
    data.to_csv(tmp_path / "data.csv", index=False)
    found = json.loads(prodml(["labels", "issues", "data.csv", "-y", "y", "--json"],
                              tmp_path).stdout)
    assert {5, 290} <= {i["row"] for i in found["issues"]}


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    done = prodml(["labels", "agreement"], tmp_path, check=False)
    assert done.returncode == 1 and "prodml labels import FILE first" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = prodml(["labels", "import", "missing.csv"], tmp_path, check=False)
    assert done.returncode == 1 and "does not exist" in done.stderr
    pd.DataFrame({"item": [1], "who": ["a"], "label": [0]}).to_csv(tmp_path / "bad.csv",
                                                                   index=False)
    done = prodml(["labels", "import", "bad.csv"], tmp_path, check=False)
    assert done.returncode == 1 and "labeler='labeler'" in done.stderr
    done = prodml(["labels", "agreement", "bad.csv", "--labeler", "who", "--level", "odd"],
                  tmp_path, check=False)
    assert done.returncode == 1 and "level" in done.stderr
