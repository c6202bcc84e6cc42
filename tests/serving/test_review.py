"""The human review queue: opened with the log write, resolved once, into feedback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from prodml.errors import InvalidInputError, NotFoundError
from prodml.serving.prediction_log import (PredictionLog, PredictionRecord, get_prediction,
                                           new_prediction_id, read_predictions)
from prodml.serving.review import list_reviews, open_review, resolve_review
from prodml.store import open_store
from prodml.store import tables as t


def log_cases(store, statuses: list[str], endpoint: str = "loans") -> list[str]:
    log = PredictionLog(store)
    ids = [new_prediction_id() for _ in statuses]
    log.write_sync([PredictionRecord(pid, int(time.time() * 1000), endpoint, "loan", 1,
                                     "human" if status == "review" else "primary", 2, None,
                                     {"age": 20 + i, "salary": 1000.0 * i}, "reject",
                                     {"approve": 0.45, "reject": 0.55}, 0.55, 3.0, status)
                    for i, (pid, status) in enumerate(zip(ids, statuses))])
    log.close()
    return ids


def test_low_confidence_cases_queue_and_resolve_into_feedback(store):
    _ok, first, second = log_cases(store, ["ok", "review", "review"])
    other = log_cases(store, ["review"], endpoint="fraud")[0]
    queue = list_reviews("loans", with_inputs=True)
    assert [item.prediction_id for item in queue] == [first, second]
    assert queue[0].suggestion == "reject" and queue[0].confidence == 0.55
    assert queue[0].inputs == {"age": 21, "salary": 1000.0} and queue[0].status == "open"
    assert [item.prediction_id for item in list_reviews()] == [first, second, other]
    assert list_reviews()[0].inputs is None

    resolved = resolve_review(queue[0].id, "approve", "dana")
    assert (resolved.status, resolved.label, resolved.resolver) == ("resolved", "approve",
                                                                    "dana")
    by_prediction = resolve_review(second, "reject", "sam")
    assert by_prediction.id == queue[1].id
    assert [item.prediction_id for item in list_reviews("loans")] == []
    done = list_reviews("loans", status="resolved")
    assert [(i.label, i.resolver) for i in done] == [("approve", "dana"), ("reject", "sam")]
    assert len(list_reviews(status=None)) == 3

    frame = read_predictions("loans")
    assert frame["label"].to_list() == [None, "approve", "reject"]
    logged = get_prediction(first)
    assert logged["feedback"][0]["source"] == "review"
    assert logged["review"]["status"] == "resolved" and logged["review"]["label"] == "approve"


def test_resolving_twice_is_refused_naming_the_item(store):
    (pid,) = log_cases(store, ["review"])
    item = resolve_review(pid, 1, "dana")
    with pytest.raises(InvalidInputError) as caught:
        resolve_review(str(item.id), 0, "sam")
    message = str(caught.value)
    assert f"review item {item.id} (prediction {pid}) was already resolved by 'dana'" in message
    assert caught.value.field == "review" and caught.value.value == str(item.id)
    with store.read() as conn:
        labels = conn.execute(select(t.feedback.c.value)).scalars().all()
    assert labels == ["1"]  # the refused resolution recorded nothing


def test_two_people_resolving_at_once_one_wins(store):
    (pid,) = log_cases(store, ["review"])
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def resolve(name: str) -> None:
        barrier.wait()
        try:
            outcomes.append(resolve_review(pid, name, name))
        except InvalidInputError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=resolve, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1 and len(outcomes) == 4
    assert get_prediction(pid)["label"] == winners[0].label


def test_unknown_items_and_bad_arguments(store):
    (pid,) = log_cases(store, ["ok"])
    with pytest.raises(NotFoundError, match="review item 99 not found"):
        resolve_review(99, "a", "dana")
    with pytest.raises(NotFoundError, match="review item"):
        resolve_review(pid, "a", "dana")  # logged, but never queued
    with pytest.raises(InvalidInputError, match="review id"):
        resolve_review("not-an-id", "a", "dana")
    with pytest.raises(InvalidInputError, match="label=None: must not be null"):
        resolve_review(pid, None, "dana")
    with pytest.raises(InvalidInputError, match="resolver"):
        resolve_review(pid, "a", "")
    with pytest.raises(InvalidInputError, match="status"):
        list_reviews(status="closed")


def test_open_review_in_its_own_or_a_given_transaction(store):
    a, b = log_cases(store, ["ok", "ok"])
    first = open_review(store, a, "loans", "approve", 0.51)
    with store.write() as conn:
        second = open_review(conn, b, "loans", {"class": "reject"}, None)
    assert [(i.id, i.suggestion) for i in list_reviews()] == [
        (first, "approve"), (second, {"class": "reject"})]
    with pytest.raises(InvalidInputError, match="already has review item"):
        open_review(store, a, "loans", "approve", 0.51)
    with pytest.raises(NotFoundError, match="prediction"):
        open_review(store, "0" * 32, "loans", "approve", 0.51)


def prodml(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRODML_HOME": str(home), "COLUMNS": "200", "USER": "cli-user"}
    env.pop("PRODML_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "prodml", *args], cwd=home.parent, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_review_list_and_resolve(tmp_path):
    home = tmp_path / "home"
    store = open_store(f"sqlite:///{home}/prodml.db", str(home / "artifacts"))
    first, second = log_cases(store, ["review", "review"])
    store.close()

    listed = prodml(["review", "list", "--json"], home)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [i["prediction_id"] for i in items] == [first, second]
    assert items[0]["inputs"] == {"age": 20, "salary": 0.0}
    table = prodml(["review", "list", "--endpoint", "loans"], home)
    assert "review items (2)" in table.stdout and first[:8] in table.stdout

    done = prodml(["review", "resolve", str(items[0]["id"]), "1", "--by", "dana", "--json"],
                  home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == 1  # JSON when it parses
    text = prodml(["review", "resolve", second, "approve"], home)
    assert text.returncode == 0, text.stderr
    assert f"prediction {second}) resolved by cli-user: approve" in text.stdout
    again = prodml(["review", "resolve", second, "reject"], home)
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "already resolved by 'cli-user'" in again.stderr
    assert "no open review items" in prodml(["review", "list"], home).stdout


@pytest.mark.parametrize("key, error", [
    ("²", InvalidInputError),  # "²".isdigit() is true, int("²") fails
    ("1" * 5000, InvalidInputError),  # past Python's int() digit limit
    ("1" * 30, NotFoundError),  # a number, but past any 64-bit id
    (10 ** 30, NotFoundError),
    (0, NotFoundError),
    ("-1", InvalidInputError),
])
def test_review_ids_out_of_range_are_refused_not_crashed(store, key, error):
    with pytest.raises(error):
        resolve_review(key, "approve", resolver="ana", store=store)
