"""Annotations in the store (SQLite and PostgreSQL): import, read back, trace, provenance."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

import prodml as pm
from prodml.data.frames import digest_table, to_arrow
from tests.data.labels.simulated import crew


def test_import_from_a_file_and_read_back_with_metadata(store, tmp_path):
    frame, _ = crew(items=50, seed=1)
    frame["time"] = pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(frame)), unit="s")
    frame["instruction"] = "v1"
    frame["device"] = "cam-2"
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    done = pm.labels.import_annotations(path)
    assert (done.rows, done.items, done.labelers) == (200, 50, 5)
    assert done.source == str(path)
    back = pm.labels.annotations()
    assert back.height == 200 and back["source"].unique().to_list() == [str(path)]
    assert back["label"].to_list() == frame["label"].tolist()
    assert back["item"].to_list() == frame["item"].astype(str).tolist()
    assert back["line"].to_list() == frame["line"].tolist()
    assert back["device"].unique().to_list() == ["cam-2"]
    first = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000)
    assert back["time"].min() == first and back["time"].max() == first + 199_000
    # the statistics take the stored annotations as they come back
    stored = pm.labels.agreement(back)
    direct = pm.labels.agreement(frame)
    assert stored.krippendorff_alpha == pytest.approx(direct.krippendorff_alpha)
    assert pm.labels.load().metadata == ("line", "device")


def test_filters_and_corrections_are_new_rows(store):
    pm.labels.import_annotations({"item": ["a", "b", "a"], "labeler": ["ann", "ann", "bob"],
                                  "label": ["cat", "dog", "dog"], "time": [1, 2, 3],
                                  "instruction": ["v1", "v1", "v2"]})
    # ann corrects item a later: a new annotation, the old one stays
    pm.labels.import_annotations({"item": ["a"], "labeler": ["ann"], "label": ["dog"],
                                  "time": [10], "instruction": ["v2"]})
    every = pm.labels.annotations()
    assert every.height == 4 and every["id"].is_sorted()
    assert pm.labels.annotations(labeler="ann", item="a")["label"].to_list() == ["cat", "dog"]
    assert pm.labels.annotations(instruction="v2").height == 2
    assert pm.labels.annotations(since=3, until=10)["time"].to_list() == [3, 10]
    latest = pm.labels.load()
    assert latest.replaced == 1 and pm.labels.consensus(latest).labels() == {"a": "dog",
                                                                            "b": "dog"}


def test_numbers_and_text_labels_round_trip(store):
    pm.labels.import_annotations({"item": [1, 2], "labeler": ["a", "a"], "label": [1.5, 2.0]})
    assert pm.labels.annotations()["label"].to_list() == [1.5, 2.0]
    pm.labels.import_annotations({"item": [3], "labeler": ["a"], "label": ["n/a"]})
    assert pm.labels.annotations()["label"].to_list() == ["1.5", "2.0", "n/a"]


def test_items_link_to_dataset_rows_and_a_model_traces_its_labelers(store):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=40), "y": rng.integers(0, 2, 40)})
    labels = pd.DataFrame({"item": np.repeat(np.arange(40), 2), "labeler": ["ann", "bob"] * 40,
                           "label": np.repeat(train["y"].to_numpy(), 2)})
    done = pm.labels.import_annotations(labels, dataset=train)
    assert done.dataset_digest == digest_table(to_arrow(train))
    with pm.start_run(experiment="labelled") as run:
        run.log_dataset(train, context="train")
        model = LogisticRegression().fit(train[["x"]], train["y"])
    version = pm.models.register("labelled", model, run=run.id)
    traced = pm.labels.for_model(version.ref)
    assert traced.height == 80 and set(traced["labeler"]) == {"ann", "bob"}
    assert traced.filter(pl.col("row_id") == 7)["label"].to_list() == [train["y"][7]] * 2
    assert pm.labels.annotations(dataset=train, rows=[7, 8]).height == 4


def test_a_row_column_and_bad_input_leave_nothing_written(store):
    with pytest.raises(pm.InvalidInputError, match="row"):
        pm.labels.import_annotations({"item": ["a"], "labeler": ["x"], "label": [1]},
                                     dataset="0" * 64)
    with pytest.raises(pm.InvalidInputError, match="no such column"):
        pm.labels.import_annotations({"item": ["a"], "labeler": ["x"]})
    assert pm.labels.annotations().height == 0
    pm.labels.import_annotations({"item": ["a", "b"], "labeler": ["x", "x"], "label": [1, 0],
                                  "n": [4, 9]}, dataset="0" * 64, row="n")
    assert pm.labels.annotations()["row_id"].to_list() == [4, 9]
    assert "n" not in pm.labels.annotations().columns


def test_provenance_columns_are_kept_once_per_dataset_version(store):
    data = pd.DataFrame({"x": [1.0, 2.0, 3.0], "factory": ["f1", "f1", "f2"],
                         "line": [17, 18, 17], "labeler": ["ann", "bob", "ann"]})
    record = pm.labels.record_provenance(data, ["factory", "line", "labeler"])
    assert record.dataset_digest == digest_table(to_arrow(data)) and record.num_rows == 3
    again = pm.labels.record_provenance(data, ["factory", "line", "labeler"])
    assert again == record
    kept = pm.labels.provenance(data)
    assert kept.to_dict(as_series=False) == {"factory": ["f1", "f1", "f2"], "line": [17, 18, 17],
                                             "labeler": ["ann", "bob", "ann"]}
    with pytest.raises(pm.NotFoundError):
        pm.labels.provenance(data.head(1))
