"""Feedback: labels and outcome events for logged predictions, all or nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving.feedback import import_feedback, record_feedback
from prodml.serving.prediction_log import (PredictionLog, PredictionRecord, new_prediction_id,
                                           read_predictions)
from prodml.store import open_store
from prodml.store import tables as t


def log_predictions(store, n: int = 3, endpoint: str = "search") -> list[str]:
    log = PredictionLog(store)
    ids = [new_prediction_id() for _ in range(n)]
    log.write_sync([PredictionRecord(pid, int(time.time() * 1000), endpoint, "ranker", 1,
                                     "primary", 1, None, {"query": f"q{i}"}, i % 2, None, 0.6,
                                     1.0, "ok") for i, pid in enumerate(ids)])
    log.close()
    return ids


def feedback_rows(store) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(t.feedback)).scalar_one()


def test_labels_and_events_are_joined_to_their_predictions(store):
    a, b, c = log_predictions(store)
    assert record_feedback({"prediction_id": a, "label": 1}) == 1  # one object is fine too
    assert record_feedback([{"prediction_id": a, "label": 0},
                            {"prediction_id": b, "event": "clicked"},
                            {"prediction_id": b, "event": "clicked", "value": 1},
                            {"prediction_id": c, "event": "redid_search"},
                            {"prediction_id": c, "event": "switched_to_typing", "value": True}],
                           source="app") == 5
    frame = read_predictions("search")
    assert frame["label"].to_list() == [0, None, None]  # the latest label wins
    assert frame["clicked"].to_list() == [0, 2, 0]
    assert frame["redid_search"].to_list() == [0, 0, 1]
    assert frame["switched_to_typing"].to_list() == [0, 0, 1]
    assert frame["clicked"].gt(0).mean() == pytest.approx(1 / 3)  # click-through rate
    with store.read() as conn:
        sources = conn.execute(select(t.feedback.c.source, func.count())
                               .group_by(t.feedback.c.source)).all()
    assert dict(sources) == {"api": 1, "app": 5}


@pytest.mark.parametrize(("item", "field", "rule"), [
    ("not an object", "items[1]", "must be an object"),
    ({"label": 1}, "items[1].prediction_id", "must be a prediction id"),
    ({"prediction_id": 7, "label": 1}, "items[1].prediction_id", "must be a prediction id"),
    ({"prediction_id": "x" * 33, "label": 1}, "items[1].prediction_id", "1 to 32"),
    ({"prediction_id": "P"}, "items[1]", "either a label or an event"),
    ({"prediction_id": "P", "label": 1, "event": "clicked"}, "items[1]", "not both"),
    ({"prediction_id": "P", "label": None}, "items[1].label", "must not be null"),
    ({"prediction_id": "P", "label": float("nan")}, "items[1].label", "finite"),
    ({"prediction_id": "P", "label": object()}, "items[1].label", "must be JSON"),
    ({"prediction_id": "P", "label": 1, "value": 2}, "items[1].value", "only an event"),
    ({"prediction_id": "P", "event": ""}, "items[1].event", "must be an event name"),
    ({"prediction_id": "P", "event": "status"}, "items[1].event", "column of the prediction"),
    ({"prediction_id": "P", "event": "proba_1"}, "items[1].event", "column of the prediction"),
    ({"prediction_id": "P", "event": "clicked", "value": "yes"}, "items[1].value", "number"),
    ({"prediction_id": "P", "event": "clicked", "value": float("inf")}, "items[1].value",
     "finite"),
    ({"prediction_id": "P", "labels": 1}, "items[1].labels", "unknown field"),
])
def test_a_bad_item_is_named_and_nothing_is_written(store, item, field, rule):
    (pid,) = log_predictions(store, 1)
    if isinstance(item, dict) and item.get("prediction_id") == "P":
        item = {**item, "prediction_id": pid}
    with pytest.raises(InvalidInputError) as caught:
        record_feedback([{"prediction_id": pid, "label": 1}, item])
    assert caught.value.field == field and rule in caught.value.rule
    assert feedback_rows(store) == 0


def test_an_unknown_prediction_id_fails_the_whole_call(store):
    known = log_predictions(store, 2)
    unknown = "f" * 32
    with pytest.raises(NotFoundError) as caught:
        record_feedback([{"prediction_id": known[0], "label": 1},
                         {"prediction_id": unknown, "event": "clicked"},
                         {"prediction_id": known[1], "label": 0}])
    assert caught.value.value == unknown
    assert "items[1] names no logged prediction" in str(caught.value)
    assert feedback_rows(store) == 0
    with pytest.raises(InvalidInputError, match="items="):
        record_feedback("nope")
    assert record_feedback([]) == 0


def test_import_csv_parquet_and_json_lines(store, tmp_path):
    ids = log_predictions(store, 4)
    csv = tmp_path / "labels.csv"
    csv.write_text("prediction_id,label\n" + "".join(f"{p},{i % 2}\n"
                                                     for i, p in enumerate(ids)))
    assert import_feedback(csv) == 4
    pl.DataFrame({"prediction_id": ids[:2], "event": ["clicked", "clicked"],
                  "value": [1, 3]}).write_parquet(tmp_path / "events.parquet")
    assert import_feedback(tmp_path / "events.parquet") == 2
    (tmp_path / "mixed.jsonl").write_text(
        json.dumps({"prediction_id": ids[3], "label": 0}) + "\n"
        + json.dumps({"prediction_id": ids[2], "event": "redid_search"}) + "\n")
    assert import_feedback(tmp_path / "mixed.jsonl", source="survey") == 2
    frame = read_predictions("search")
    assert frame["label"].to_list() == [0, 1, 0, 0]
    assert frame["prediction"].cast(pl.Int64).eq(frame["label"]).to_list() == [
        True, True, True, False]
    assert frame["clicked"].to_list() == [1, 3, 0, 0]
    assert frame["redid_search"].to_list() == [0, 0, 1, 0]


def test_import_refuses_a_bad_file_whole(store, tmp_path):
    ids = log_predictions(store, 2)
    bad_row = tmp_path / "bad.csv"
    bad_row.write_text(f"prediction_id,label,event\n{ids[0]},1,\n{ids[1]},,\n")
    with pytest.raises(InvalidInputError) as caught:
        import_feedback(bad_row)
    assert caught.value.field == "bad.csv row 2"
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"prediction_id,label\n{ids[0]},1\n{'0' * 32},1\n")
    with pytest.raises(NotFoundError, match="unknown.csv row 2 names no logged prediction"):
        import_feedback(unknown)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(f"prediction_id,labels\n{ids[0]},1\n")
    with pytest.raises(InvalidInputError, match="unknown column"):
        import_feedback(wrong)
    with pytest.raises(NotFoundError, match="file"):
        import_feedback(tmp_path / "missing.csv")
    (tmp_path / "labels.xlsx").write_text("x")
    with pytest.raises(InvalidInputError, match="must be .csv"):
        import_feedback(tmp_path / "labels.xlsx")
    assert feedback_rows(store) == 0


def prodml(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRODML_HOME": str(home), "COLUMNS": "160"}
    env.pop("PRODML_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "prodml", *args], cwd=home.parent, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_feedback_import(tmp_path):
    home = tmp_path / "home"
    store = open_store(f"sqlite:///{home}/prodml.db", str(home / "artifacts"))
    ids = log_predictions(store, 3)
    store.close()
    good = tmp_path / "labels.csv"
    good.write_text("prediction_id,label\n" + "".join(f"{p},1\n" for p in ids))
    done = prodml(["feedback", "import", str(good), "--json"], home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"file": str(good), "recorded": 3, "source": "import"}
    bad = tmp_path / "bad.csv"
    bad.write_text(f"prediction_id,label\n{ids[0]},1\n{'e' * 32},0\n")
    done = prodml(["feedback", "import", str(bad)], home)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "bad.csv row 2 names no logged" in done.stderr
    human = prodml(["feedback", "import", str(good)], home)
    assert human.returncode == 0 and f"recorded 3 feedback items from {good}" in human.stdout
