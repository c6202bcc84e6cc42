"""The real ``prodml`` command in a subprocess, on a fresh SQLite store in a temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def prodml(args, cwd, env_extra=None, check=True):
    env = {**os.environ, "PRODML_HOME": str(cwd / ".prodml"), "COLUMNS": "160",
           **(env_extra or {})}
    env.pop("PRODML_DATABASE_URL", None)
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, "-m", "prodml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"prodml {args} exited {done.returncode}: {done.stderr}")
    return done


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """Run the demo once; the other tests read what it recorded."""
    home = tmp_path_factory.mktemp("cli")
    result = json.loads(prodml(["demo", "--fast", "--rows", "1500", "--json"], home).stdout)
    return home, result


def test_demo_registers_a_champion_with_its_runs_metrics(demo_home):
    home, result = demo_home
    assert result["champion"] == "loan/2" and result["model_ref"] == "loan/2"
    assert result["gates"]["baseline"] == {"ref": "loan/1", "blessed": False,
                                           "failures": result["gates"]["baseline"]["failures"]}
    assert any("every age slice" in f for f in result["gates"]["baseline"]["failures"])
    assert result["gates"]["candidate"]["blessed"] is True
    assert result["metrics"]["candidate"]["f1"] > result["metrics"]["baseline"]["f1"]
    assert result["champion_check"] == pytest.approx(result["metrics"]["candidate"]["accuracy"])
    assert (home / ".prodml" / "prodml.db").exists()
    shown = json.loads(prodml(["models", "show", "loan/2", "--json"], home).stdout)
    assert shown["run_id"] == result["runs"]["candidate"]
    assert {d["context"] for d in shown["datasets"]} == {"train", "test"}
    run = json.loads(prodml(["runs", "show", shown["run_id"][:8], "--json"], home).stdout)
    assert run["metrics"]["f1"] == pytest.approx(result["metrics"]["candidate"]["f1"])
    assert run["status"] == "FINISHED" and run["params"]["max_iter"] == "150"


def test_demo_serves_shadows_and_canaries_a_challenger(demo_home):
    home, result = demo_home
    act = result["serving"]
    assert act["challenger"] == "loan/3" and act["challenger_blessed"] is True
    assert act["shadow_agreement"]["compared"] > 0
    actions = [e["action"] for e in act["history"]]
    assert actions[:3] == ["deploy", "deploy", "deploy"]  # direct, shadow, canary
    assert actions[-1] in ("promote", "rollback") and "step" in actions or \
        actions[-1] == "rollback"
    if actions[-1] == "promote":
        assert act["final"] == "loan/3"
    assert act["log"]["primary v2"] > 0 and act["log"]["shadow v3"] > 0
    history = json.loads(prodml(["deployments", "history", "loan", "--json"], home).stdout)
    assert [e["action"] for e in reversed(history)][:len(actions)] == actions


def test_demo_closes_the_loop_from_the_alert_to_a_retrained_champion(demo_home):
    home, result = demo_home
    story, act = result["serving"]["monitoring"], result["retraining"]
    assert {(a["series"], a["window"]) for a in story["alerts"]} >= {
        ("drifted[salary]", story["drift_window"]), ("accuracy", story["change_window"])}
    assert "accuracy >=" in act["alert"]
    assert act["strategy"] == "recent" and act["blessed"] is True
    assert act["pipeline_status"] == "succeeded"
    assert [s["step"] for s in act["steps"]] == [
        "labelled_traffic", "training_data", "split_train_test", "train", "evaluate_gate",
        "register", "shadow", "canary"] and {s["status"] for s in act["steps"]} == {"succeeded"}
    assert [e["action"] for e in act["history"]][:2] == ["deploy", "deploy"]  # shadow, canary
    assert act["final"] == act["version"] == "loan/4"  # promoted by the canary's guards
    shown = json.loads(prodml(["models", "show", "loan@champion", "--json"], home).stdout)
    assert shown["ref"] == "loan/4"  # the registry follows the promotion
    status = json.loads(prodml(["deployments", "status", "--json"], home).stdout)
    assert status[0]["summary"] == "loan/4"
    run = json.loads(prodml(["pipeline", "show", act["pipeline_run"], "--json"], home).stdout)
    assert run["triggered_by"].startswith("alert:") and run["status"] == "succeeded"
    up = json.loads(prodml(["lineage", "loan/4", "--up", "--json"], home).stdout)
    labels = {n["label"] for n in up["nodes"]}
    assert "loan labelled traffic" in " ".join(labels)
    # ...and ends at the window of the endpoint's log the retraining read
    [window] = [n for n in up["nodes"] if n["label"] == "loan prediction log"]
    assert window["properties"]["uri"].startswith("prediction-log://loan?since=")
    assert window["properties"]["properties"]["rows"] > 0
    summary = home / ".prodml" / "reports" / "loan-lifecycle.html"
    assert result["summary_report"] == str(summary)
    page = summary.read_text()
    assert "Retraining, from the alert to a new champion" in page and "loan-drift.html" in page


def test_deploy_rollback_and_pause_from_the_cli(demo_home):
    home, _ = demo_home
    before = json.loads(prodml(["deployments", "status", "loan", "--json"], home).stdout)[0]
    shadow = json.loads(prodml(["deploy", "loan", "loan/1", "--strategy", "shadow",
                                "--percent", "20", "--reason", "cli test", "--json"],
                               home).stdout)
    assert shadow["summary"].endswith("(shadow: loan/1 20%)")
    back = json.loads(prodml(["rollback", "loan", "--json"], home).stdout)
    assert back["spec"] == before["spec"]
    paused = json.loads(prodml(["pause", "loan", "--reason", "drill", "--json"], home).stdout)
    assert paused["paused"] is True
    assert json.loads(prodml(["resume", "loan", "--json"], home).stdout)["paused"] is False
    for args, needle in ((["deploy", "loan", "loan/99"], "loan/99"),
                         (["deploy", "loan", "loan/1", "--strategy", "sideways"], "strategy"),
                         (["rollback", "nope"], "endpoint 'nope' not found"),
                         (["deploy", "loan", "loan/1", "--fallback", "open('x')"], "fallback")):
        done = prodml(args, home, check=False)
        assert done.returncode == 1 and needle in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_demo_keeps_the_training_profile_and_finds_the_inflation_drift(demo_home):
    home, result = demo_home
    assert result["training_profile"]["rows"] == 1125  # the 75 % training split of 1500
    assert set(result["drift"]["drifted_columns"]) == {"salary", "commission", "hvalue", "loan"}
    report = home / ".prodml" / "reports" / "loan-drift.html"
    assert result["drift_report"] == str(report) and report.stat().st_size > 10_000


def test_demo_human_output_says_where_everything_is(tmp_path):
    out = prodml(["demo", "--fast", "--rows", "600"], tmp_path).stdout
    assert "champion" in out and "loan@champion" in out
    assert str(tmp_path / ".prodml" / "prodml.db") in out
    assert "dashboard live at http://127.0.0.1:" in out and "drifted[salary]" in out
    assert "started retraining pipeline run" in out
    assert str(tmp_path / ".prodml" / "reports" / "loan-lifecycle.html") in out


def test_runs_list_search_compare(demo_home):
    home, result = demo_home
    listed = json.loads(prodml(["runs", "list", "--json"], home).stdout)
    assert {r["id"] for r in listed} == set(result["runs"].values())
    found = json.loads(prodml(["runs", "search", "metrics.f1 > 0.9 or tags.role = 'baseline'",
                               "--order-by", "metrics.f1 desc", "--json"], home).stdout)
    f1 = {role: m["f1"] for role, m in result["metrics"].items()}
    expected = sorted((r for r in f1 if f1[r] > 0.9 or r == "baseline"), key=lambda r: -f1[r])
    assert {r["id"] for r in found} == {result["runs"][role] for role in expected}
    assert [r["metrics"]["f1"] for r in found] == sorted(f1[r] for r in expected)[::-1]
    assert found[-1]["id"] == result["runs"]["baseline"]
    compared = json.loads(prodml(["runs", "compare", *result["runs"].values(), "--json"],
                                 home).stdout)
    differs = {row["name"] for row in compared["rows"] if row["differs"]}
    assert {"model", "f1", "role"} <= differs and "seed" not in differs
    table = prodml(["runs", "compare", *result["runs"].values(), "--only-diff"], home).stdout
    assert "model" in table and "seed" not in table


def test_models_alias_tag_search_load_check(demo_home):
    home, _ = demo_home
    moved = json.loads(prodml(["models", "alias", "loan", "prod", "2", "--json"], home).stdout)
    assert moved == {"model": "loan", "alias": "prod", "version": 2}
    prodml(["models", "tag", "loan@prod", "owner=risk"], home)
    found = json.loads(prodml(["models", "search", "--tag", "owner=risk", "--json"], home).stdout)
    assert [v["ref"] for v in found] == ["loan/2"]
    check = json.loads(prodml(["models", "load-check", "loan@prod", "--json"], home).stdout)
    assert check["has_predict_proba"] and check["serialization"] == "skops"
    listed = json.loads(prodml(["models", "list", "--json"], home).stdout)
    assert listed[0]["aliases"]["prod"] == 2


@pytest.mark.parametrize(("args", "needle"), [
    (["runs", "search", "metrics.f1 >"], "unexpected end of query at position 12"),
    (["runs", "show", "deadbeef"], "run 'deadbeef' not found"),
    (["models", "show", "loan@nope"], "alias 'loan@nope' not found"),
    (["models", "load-check", "loan"], "must be NAME/VERSION or NAME@ALIAS"),
    (["models", "tag", "loan/1", "no-equals-sign"], "must be KEY=VALUE"),
])
def test_bad_input_is_one_line_and_non_zero(demo_home, args, needle):
    home, _ = demo_home
    done = prodml(args, home, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_unreachable_database_url_is_one_line_naming_it(tmp_path):
    url = "postgresql+psycopg://prodml:secret@127.0.0.1:1/prodml"
    done = prodml(["runs", "list"], tmp_path, {"PRODML_DATABASE_URL": url}, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "127.0.0.1:1/prodml" in done.stderr and "secret" not in done.stderr


def test_tampered_champion_is_refused_by_load_check(tmp_path):
    prodml(["demo", "--rows", "600", "--no-serve", "--json"], tmp_path)
    shown = json.loads(prodml(["models", "show", "loan@champion", "--json"], tmp_path).stdout)
    blob = tmp_path / ".prodml" / "artifacts" / "sha256" / shown["artifact_sha256"][:2] / \
        shown["artifact_sha256"]
    blob.write_bytes(blob.read_bytes()[:-1] + b"X")
    done = prodml(["models", "load-check", "loan@champion"], tmp_path, check=False)
    assert done.returncode == 1 and "refusing to load it" in done.stderr


def test_usage_error_exits_2_and_help_reads_well(tmp_path):
    assert prodml(["runs", "bogus"], tmp_path, check=False).returncode == 2
    help_text = prodml(["--help"], tmp_path).stdout
    for group in ("demo", "runs", "models", "info"):
        assert group in help_text


def test_evaluate_with_a_gate_blesses_or_exits_1(demo_home, tmp_path):
    home, _ = demo_home
    import pandas as pd

    from prodml.demo.data import loan_applications
    data = home / "labelled.csv"
    loan_applications(800, seed=11).to_csv(data, index=False)
    gate = tmp_path / "gate.yaml"
    gate.write_text("name: strict\nconditions:\n  - metric: accuracy\n    slices: age\n"
                    "    min: 0.8\n")
    promoted = demo_home[1]["serving"]["final"]  # by the canary, before the concept change
    args = ["evaluate", promoted, str(data), "--label", "approved",
            "--slice", "age:20,40,60,81", "--gate", str(gate)]
    passed = prodml([*args, "--html", str(tmp_path / "ev.html"), "--json"], home)
    verdict = json.loads(passed.stdout)
    assert verdict["blessing"]["blessed"] is True
    assert verdict["ref"] == promoted
    assert (tmp_path / "ev.html").stat().st_size > 10_000
    failed = prodml(["evaluate", "loan/1", *args[2:]], home, check=False)
    assert failed.returncode == 1 and "NOT BLESSED" in failed.stdout
    assert pd.read_csv(data).shape[0] == 800
