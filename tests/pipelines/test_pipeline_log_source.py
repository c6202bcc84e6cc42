"""A window of the prediction log as a pipeline source: digested by its rows' ids and labels,
recorded as a Source artifact, cached until a label arrives, and the end of lineage
upstream of a model retrained on traffic."""

from __future__ import annotations

import pandas as pd
import pytest

import prodml as pm
from prodml.serving.feedback import record_feedback
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
from prodml.store import now_ms


def log(store, endpoint: str, count: int, route: str = "primary") -> list[str]:
    writer = PredictionLog(store)
    records = [PredictionRecord(new_prediction_id(), now_ms(), endpoint, endpoint, 1, route, 1,
                                None, {"x": float(i)}, i % 2, None, 0.8, 1.0, "ok")
               for i in range(count)]
    writer.write_sync(records)
    writer.close()
    return [r.id for r in records]


@pm.step
def rows(traffic: pm.pipelines.LoggedPredictions) -> pd.DataFrame:
    return traffic.read().select(["id", "x", "label"]).to_pandas()


@pm.step
def count(frame: pd.DataFrame) -> int:
    return len(frame)


@pm.pipeline(name="from-the-log")
def from_the_log(endpoint: str = "loan", since: int = 0):
    return count(rows(pm.pipelines.LoggedPredictions(endpoint=endpoint, since=since,
                                                     routes=("primary",))))


def test_a_log_window_is_a_source_cached_until_a_label_arrives(store):
    ids = log(store, "loan", 10)
    log(store, "loan", 5, route="shadow")  # other routes are left out
    log(store, "other", 5)
    record_feedback([{"prediction_id": i, "label": 1} for i in ids[:4]], store=store)

    first = from_the_log.run(store=store)
    assert first.status == "succeeded", first.error
    assert first.output("count") == 4
    assert sorted(first.output("rows")["id"]) == sorted(ids[:4])
    source = first.step("rows").inputs[0]
    assert source.type == "Source" and source.uri.startswith("prediction-log://loan?since=0")
    assert source.properties["kind"] == "prediction_log"
    assert source.properties["rows"] == 4 and source.properties["routes"] == ["primary"]

    again = from_the_log.run(store=store)  # a later window, no new labelled rows: cached
    assert [e.status for e in again.executions] == ["cached", "cached"]
    assert again.step("rows").inputs[0].digest == source.digest

    record_feedback([{"prediction_id": ids[4], "label": 0}], store=store)
    log(store, "loan", 3)  # new rows without labels change nothing
    labelled = from_the_log.run(store=store)
    assert [e.status for e in labelled.executions] == ["succeeded", "succeeded"]
    assert labelled.output("count") == 5
    relabelled = record_feedback([{"prediction_id": ids[0], "label": 0}], store=store)
    assert relabelled == 1
    changed = from_the_log.run(store=store)  # a corrected label is new data too
    assert changed.step("rows").status == "succeeded"
    assert changed.step("rows").inputs[0].digest != labelled.step("rows").inputs[0].digest

    # lineage: up from what the step made ends at the log window; down from it finds it
    made = labelled.step("rows").output()
    up = pm.lineage(f"artifact:{made.id}", direction="up", store=store)
    [window] = up.artifacts("Source")
    assert window.label == "loan prediction log"
    assert window.properties["uri"].startswith("prediction-log://loan?since=0")
    assert window.properties["properties"]["rows"] == 5
    down = pm.lineage(window.properties["uri"], direction="down", store=store)
    counted = labelled.step("count").output()
    assert f"artifact:{counted.id}" in down


def test_a_window_is_checked_when_made():
    with pytest.raises(pm.InvalidInputError, match="must name an endpoint"):
        pm.pipelines.LoggedPredictions(endpoint="")
    with pytest.raises(pm.InvalidInputError, match="must be a time in ms"):
        pm.pipelines.LoggedPredictions(endpoint="loan", since="yesterday")
    window = pm.pipelines.LoggedPredictions(endpoint="loan", since=5)
    assert window.until is not None and window.until >= 5
