"""``prodml monitor ...`` and ``prodml alerts ...`` run for real in subprocesses, on a SQLite
store under a fresh PRODML_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import polars as pl
import pytest

from prodml.store import open_store
from tests.monitoring.logged import log_rows, register_and_deploy
from tests.monitoring.streams import agrawal, train_model

WINDOW = 1_000
SPEC = """\
endpoint: agr
name: errors
window: {predictions: 1000}
checks: {drift: false, concept_drift: false}
alerts:
  - {series: error_rate, upper: 0.1, severity: critical}
"""


def env(home):
    out = {**os.environ, "PRODML_HOME": str(home), "COLUMNS": "200"}
    out.pop("PRODML_DATABASE_URL", None)
    out.pop("PRODML_ARTIFACTS", None)
    return out


def prodml(args, home, check=True):
    done = subprocess.run([sys.executable, "-m", "prodml", *args], cwd=home, env=env(home),
                          capture_output=True, text=True, timeout=300, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"prodml {args} exited {done.returncode}: {done.stderr}")
    return done


def failing(args, home):
    done = prodml(args, home, check=False)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model():
    return train_model()


@pytest.fixture
def home(tmp_path, model):
    """A store with endpoint ``agr``: five windows logged, 30 % errors in windows 2 and 3."""
    store = open_store(f"sqlite:///{tmp_path / 'prodml.db'}", str(tmp_path / "artifacts"))
    register_and_deploy(store, model)
    frame = model.predict(agrawal(0, 5, 5 * WINDOW), start_ms=1_700_000_000_000, step_ms=10)
    row = pl.int_range(0, frame.height, eager=True)
    bad = (row // WINDOW).is_in([2, 3]) & (row % 10 < 3)
    log_rows(store, frame.with_columns(status=pl.when(bad).then(pl.lit("error"))
                                       .otherwise(pl.lit("ok"))))
    (tmp_path / "monitor.yaml").write_text(SPEC)
    (tmp_path / "bad.yaml").write_text(SPEC.replace("{predictions: 1000}", "{predictions: 0}"))
    store.close()
    return tmp_path


def test_monitor_and_alert_commands(home):
    out = prodml(["monitor", "add", "monitor.yaml"], home).stdout
    assert "monitor errors of endpoint agr saved: windows of 1000 predictions" in out
    assert "1 alert rule" in out
    assert failing(["monitor", "add", "bad.yaml"], home).startswith(
        "error: window.predictions=0: Input should be greater than or equal to 1")
    listed = json.loads(prodml(["monitor", "list", "--json"], home).stdout)
    assert [(m["name"], m["windows"], m["firing"]) for m in listed] == [("errors", 0, 0)]

    run = json.loads(prodml(["monitor", "run", "errors", "--lag", "0s", "--json"],
                            home).stdout)
    assert run["read"] == 5 * WINDOW and [w["index"] for w in run["windows"]] == [0, 1, 2, 3, 4]
    assert [(e["status"], e["window_index"]) for e in run["events"]] == [
        ("firing", 2), ("resolved", 4)]
    again = prodml(["monitor", "run", "--lag", "0s"], home).stdout
    assert "monitor errors: read 0 new predictions, no window closed" in again

    series = json.loads(prodml(["monitor", "series", "errors", "--series", "error_rate",
                                "--json"], home).stdout)
    assert [round(s["value"], 3) for s in series] == [0.0, 0.0, 0.3, 0.3, 0.0]
    table = prodml(["monitor", "series", "errors", "-s", "error_rate", "-s", "volume"],
                   home).stdout
    assert "error_rate" in table and "volume" in table and "1000" in table
    assert failing(["monitor", "series", "nope"], home) == (
        "error: monitor 'nope' not found: no monitor or monitored endpoint has this name")

    assert "no firing alerts" in prodml(["alerts", "list", "--status", "firing"], home).stdout
    (alert,) = json.loads(prodml(["alerts", "list", "--json"], home).stdout)
    assert (alert["status"], alert["window_index"], alert["severity"]) == (
        "resolved", 2, "critical")
    shown = prodml(["alerts", "show", str(alert["id"])], home).stdout
    assert f"alert #{alert['id']} resolved (critical)" in shown and "error_rate" in shown
    assert "sink       log: ok" in shown
    acked = prodml(["alerts", "ack", str(alert["id"]), "--by", "alice"], home).stdout
    assert f"alert #{alert['id']} acknowledged by alice" in acked
    again = json.loads(prodml(["alerts", "show", str(alert["id"]), "--json"], home).stdout)
    assert again["acked_by"] == "alice" and again["acked"] is True
    assert failing(["alerts", "show", "42"], home) == (
        "error: alert 42 not found: see prodml alerts list")
    assert failing(["alerts", "list", "--status", "open"], home).startswith(
        "error: --status='open'")
    assert failing(["serve", "--monitor-every", "soon"], home).startswith("error: every=")
    assert "removed" in prodml(["monitor", "remove", "errors"], home).stdout
    assert "no monitors" in prodml(["monitor", "list"], home).stdout


def test_monitor_run_every_keeps_running(home, model):
    prodml(["monitor", "add", "monitor.yaml"], home)
    process = subprocess.Popen([sys.executable, "-m", "prodml", "monitor", "run", "errors",
                                "--every", "300ms", "--lag", "0s"], cwd=home, env=env(home),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
        log_rows(store, model.predict(agrawal(0, 9, WINDOW), start_ms=1_700_000_100_000))
        store.close()
        time.sleep(4)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.startswith("monitor errors:")]
    assert "running monitor errors every 300ms" in out
    assert lines[0].startswith("monitor errors: read 5000 new predictions, windows 0..4")
    assert any(line.startswith("monitor errors: read 1000 new predictions, window 5")
               for line in lines), lines
    assert len(lines) >= 5  # it kept running
