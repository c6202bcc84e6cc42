"""``prodml pipeline ...``: runs in subprocesses (exit codes, stdout, stderr); listing and
errors through the same entry point in this process (each subprocess pays ~1 s of imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOW = textwrap.dedent('''
    import prodml as pm

    @pm.step
    def load(n: int) -> list:
        print("loading", n)
        return list(range(n))

    @pm.step
    def total(values: list, fail: bool = False) -> int:
        if fail:
            raise pm.InvalidInputError("values", len(values), "refused on purpose")
        return sum(values)

    @pm.step(approval=True)
    def publish(value: int) -> str:
        return f"published {value}"

    @pm.pipeline
    def numbers(n: int = 3, fail: bool = False):
        return total(load(n), fail=fail)

    @pm.pipeline
    def gated(n: int = 3):
        return publish(total(load(n)))
''')


def in_process(args: list[str], cwd: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    from prodml.cli.app import main

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PRODML_HOME", str(cwd / ".prodml"))
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    try:
        main(["pipeline", *args])
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def prodml(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRODML_HOME": str(cwd / ".prodml"), "COLUMNS": "200"}
    env.pop("PRODML_DATABASE_URL", None)
    env.pop("PRODML_ARTIFACTS", None)
    return subprocess.run([sys.executable, "-m", "prodml", "pipeline", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    return tmp_path


def test_run_twice_then_runs_and_show(project, capsys, monkeypatch):
    first = prodml(["run", "flow.py:numbers", "--param", "n=4", "--json"], project)
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["status"] == "succeeded" and run["triggered_by"] == "cli"
    assert [e["status"] for e in run["executions"]] == ["succeeded", "succeeded"]
    assert run["executions"][0]["logs"] == "loading 4\n"
    assert run["spec"]["target"] == f"{(project / 'flow.py').resolve()}:numbers"

    again = prodml(["run", "flow.py:numbers", "-p", "n=4"], project)
    assert again.returncode == 0, again.stderr
    assert f"run {run['id'][:8]}" not in again.stdout
    assert "(2 cached)" in again.stdout

    code, out, _ = in_process(["runs", "--pipeline", "numbers", "--json"], project, capsys,
                              monkeypatch)
    assert code == 0
    assert [r["steps"] for r in json.loads(out)] == [{"cached": 2}, {"succeeded": 2}]
    code, out, err = in_process(["show", run["id"][:8], "--logs"], project, capsys,
                                monkeypatch)
    assert code == 0, err
    assert "numbers run " + run["id"] in out
    assert "load (succeeded)" in out and "loading 4" in out
    assert "values=Value:" in out and "output=Value:" in out


def test_failed_run_and_usage_errors_are_one_line(project, capsys, monkeypatch):
    failed = prodml(["run", "flow.py:numbers", "--param", "fail=true"], project)
    assert failed.returncode == 1
    assert failed.stderr.strip() == ("error: step total failed: values=3: refused on purpose")
    assert "skipped" not in failed.stdout and "failed" in failed.stdout

    code, _, err = in_process(["run", "flow.py:numbers", "--param", "m=1"], project, capsys,
                              monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: params.m=1: not a parameter of pipeline numbers (its parameters: n, fail)"]
    code, _, err = in_process(["run", "flow.py"], project, capsys, monkeypatch)
    assert code == 2 and "defines 2 pipelines" in err and len(err.strip().splitlines()) == 1
    code, _, err = in_process(["run", "nope.py"], project, capsys, monkeypatch)
    assert code == 2 and "no such file" in err
    code, _, err = in_process(["run", "flow.py:numbers", "-p", "n"], project, capsys,
                              monkeypatch)
    assert code == 2 and "must be KEY=VALUE" in err
    code, _, err = in_process(["show", "abcdef12"], project, capsys, monkeypatch)
    assert code == 1
    assert err.strip() == "error: pipeline run 'abcdef12' not found"


def test_waiting_run_approve_and_resume(project, capsys, monkeypatch):
    waiting = prodml(["run", "flow.py:gated", "--json"], project)
    assert waiting.returncode == 3
    run_id = json.loads(waiting.stdout)["id"]
    assert f"step publish awaits approval (prodml pipeline approve {run_id[:8]} publish" \
        in waiting.stderr
    code, out, err = in_process(["approve", run_id[:8], "publish", "--by", "ana", "--reason",
                                 "ok"], project, capsys, monkeypatch)
    assert code == 0, err
    assert out.strip() == f"step publish approved by ana; next: prodml pipeline resume " \
                          f"{run_id[:8]}"
    resumed = prodml(["resume", run_id[:8], "--json"], project)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads(resumed.stdout)
    assert done["status"] == "succeeded"
    assert [(e["step"], e["status"]) for e in done["executions"]] == [
        ("load", "succeeded"), ("total", "succeeded"), ("publish", "succeeded")]
    assert done["executions"][2]["approval"]["by"] == "ana"
