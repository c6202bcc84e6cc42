"""Normalising annotations: column names, types, time, metadata, corrections."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import prodml as pm
from prodml.data.labels import as_annotations, normalise


def test_pandas_polars_and_arrow_give_the_same_encoding():
    data = {"item": ["b", "a", "b"], "labeler": ["x", "x", "y"], "label": [1, 0, 1]}
    encoded = [as_annotations(f) for f in (pd.DataFrame(data), pl.DataFrame(data),
                                           pa.table(data))]
    for ann in encoded:
        assert ann.items.tolist() == ["a", "b"] and ann.labelers.tolist() == ["x", "y"]
        assert ann.counts.tolist() == [[1, 0], [0, 2]]


def test_times_in_any_form_become_epoch_ms_and_the_latest_label_wins():
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    for time in ([moment, moment], ["2024-05-01T00:00:00Z"] * 2, [ms, ms]):
        frame = normalise({"item": [1, 2], "labeler": ["a", "a"], "label": [0, 1],
                           "time": time})
        assert frame["time"].to_list() == [ms, ms]
    fixed = as_annotations({"item": [1, 1, 1], "labeler": ["a", "a", "b"],
                            "label": ["dog", "cat", "cat"], "time": [20, 10, 5]})
    assert fixed.replaced == 1 and fixed.frame["label"].to_list() == ["dog", "cat"]


def test_missing_labels_are_dropped_and_other_columns_are_metadata():
    frame = normalise(pd.DataFrame({"id": [1, 2, 3], "who": ["a", "b", "c"],
                                    "y": [1.0, None, 0.0], "line": [7, 8, 9]}),
                      item="id", labeler="who", label="y")
    assert frame.height == 2 and frame.columns[-1] == "line"
    assert as_annotations(frame).metadata == ("line",)


def test_bad_annotations():
    with pytest.raises(pm.InvalidInputError, match="no such column"):
        normalise({"item": [1], "labeler": ["a"]})
    with pytest.raises(pm.InvalidInputError, match="item id"):
        normalise({"item": [None, 1], "labeler": ["a", "b"], "label": [0, 1]})
    with pytest.raises(pm.InvalidInputError, match="time"):
        normalise({"item": [1], "labeler": ["a"], "label": [0], "time": ["yesterday"]})
    with pytest.raises(pm.InvalidInputError, match="repeat"):
        as_annotations({"item": [1], "labeler": ["a"], "label": [0]}, classes=[0, 0])
