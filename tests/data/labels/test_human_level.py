"""Human-level performance from annotations: the course's inspection example and friends."""

from __future__ import annotations

import pandas as pd
import pytest

import prodml as pm
from prodml.data.labels import human_level
from prodml.evaluation.baselines import human_level_performance
from tests.data.labels.simulated import crew


def test_course_notes_inspection_example_is_66_7_percent():
    # Ground truth 1,1,1,0,0,0 against the inspector's 1,0,1,0,0,1: 4 of 6 right.
    inspector = pd.DataFrame({"item": range(6), "labeler": "inspector",
                              "label": [1, 0, 1, 0, 0, 1]})
    hlp = human_level(inspector, truth=dict(enumerate([1, 1, 1, 0, 0, 0])))
    assert round(hlp.overall * 100, 1) == 66.7
    score = hlp.labeler("inspector")
    assert (score.correct, score.count) == (4, 6)
    # the same number the evaluation's own function gives, and the same kind of result
    same = human_level_performance([1, 1, 1, 0, 0, 0], {"inspector": [1, 0, 1, 0, 0, 1]})
    assert hlp.to_dict() == same.to_dict()


def test_ground_truth_as_a_labeler_frame_or_series():
    frame = pd.DataFrame({"item": [1, 2, 3, 1, 2, 3], "labeler": ["expert"] * 3 + ["ann"] * 3,
                          "label": ["a", "b", "a", "a", "a", "a"]})
    by_name = human_level(frame, truth="expert")
    assert by_name.labelers == ["ann"] and by_name.overall == pytest.approx(2 / 3)
    truth = pd.DataFrame({"item": [1, 2, 3], "label": ["a", "b", "a"]})
    assert human_level(frame, truth=truth).labeler("ann").accuracy == pytest.approx(2 / 3)
    series = pd.Series(["a", "b", "a"], index=[1, 2, 3])
    assert human_level(frame, truth=series).labeler("expert").accuracy == 1.0


def test_leave_one_out_finds_the_careless_labeler_and_slices_by_metadata():
    frame, truth = crew(items=600, seed=4)
    hlp = human_level(frame, slices="line")
    assert min(hlp.labelers, key=lambda x: hlp.labeler(x).accuracy) == "eve"
    assert set(hlp.slices) == {"line=a", "line=b"}
    assert hlp.slice_items == {"line=a": 300, "line=b": 300}
    against_truth = human_level(frame, truth=dict(enumerate(truth)))
    # careful labelers are right ~95 % of the time; the consensus of the others mostly agrees
    for name in ("ann", "bob", "cat", "dan"):
        assert against_truth.labeler(name).accuracy == pytest.approx(0.95, abs=0.04)
        assert hlp.labeler(name).accuracy == pytest.approx(0.9, abs=0.06)
    assert hlp.as_baseline().keys() == {"overall", "line=a", "line=b"}


def test_aggregates_and_tie_exclusion():
    ann = {"item": [1, 1, 1, 2, 2, 2], "labeler": list("abc") * 2, "label": [0, 0, 1, 1, 1, 1]}
    assert human_level(ann, aggregate="best").overall == 0.75
    assert human_level(ann, aggregate="pooled").overall == pytest.approx(4 / 6)
    excluded = human_level(ann, ties="exclude")
    assert excluded.labeler("a").count == 1 and excluded.labeler("c").count == 2


def test_slices_given_per_item():
    frame, truth = crew(items=100, seed=2)
    tags = pd.DataFrame({"item": range(100), "blurry": [i < 30 for i in range(100)]})
    hlp = human_level(frame, truth=dict(enumerate(truth)), slices=tags)
    assert list(hlp.slices) == ["blurry"] and hlp.slice_items["blurry"] == 30


def test_bad_truth():
    ann = {"item": [1, 2], "labeler": ["a", "a"], "label": [0, 1]}
    with pytest.raises(pm.InvalidInputError, match="truth"):
        human_level(ann, truth=pd.DataFrame({"id": [1], "y": [0]}))
    with pytest.raises(pm.InvalidInputError, match="nothing to compare"):
        human_level(ann)
    with pytest.raises(pm.InvalidInputError, match="ties"):
        human_level(ann, ties="coin")
