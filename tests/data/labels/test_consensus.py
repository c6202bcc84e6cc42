"""Majority vote with explicit ties, and CROWDLAB equal to cleanlab's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cleanlab.multiannotator import get_label_quality_multiannotator, get_majority_vote_label

import prodml as pm
from prodml.data.labels import consensus
from tests.data.labels.simulated import crew

TIED = {"item": [1, 1, 2, 2, 3, 3, 3, 4, 4], "labeler": ["a", "b", "a", "b", "a", "b", "c",
                                                        "a", "c"],
        "label": ["x", "y", "y", "y", "y", "y", "z", "z", "x"]}


def settled(result):
    return dict(zip(result.table["item"].to_list(), result.table["label"].to_list()))


def test_majority_and_every_tie_rule():
    # overall: y 4, x 2, z 2; items 1 (x/y) and 4 (z/x) are ties
    assert settled(consensus(TIED, ties="none")) == {1: None, 2: "y", 3: "y", 4: None}
    assert settled(consensus(TIED, ties="first")) == {1: "x", 2: "y", 3: "y", 4: "x"}
    assert settled(consensus(TIED)) == {1: "y", 2: "y", 3: "y", 4: "x"}  # prior: y, then x<z
    result = consensus(TIED, ties="none")
    assert result.tied == 2 and result.table["tied"].to_list() == [True, False, False, True]
    assert result.labels() == {2: "y", 3: "y"}
    assert result.table["agreement"].to_list() == [0.5, 1.0, pytest.approx(2 / 3), 0.5]


def test_random_ties_are_repeatable_and_pick_only_tied_classes():
    picks = {settled(consensus(TIED, ties="random", seed=s))[1] for s in range(20)}
    assert picks == {"x", "y"}
    assert settled(consensus(TIED, ties="random", seed=4)) == settled(
        consensus(TIED, ties="random", seed=4))


def test_model_settles_ties_as_cleanlab_majority_vote_does():
    frame, _ = crew(items=300, per_item=2, seed=7)  # two labels an item: many ties
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 300)
    ours = consensus(frame, ties="model", pred_probs=probs)
    wide = frame.pivot(index="item", columns="labeler", values="label")
    theirs = get_majority_vote_label(wide, pred_probs=probs, verbose=False)
    assert ours.tied > 30
    assert ours.table["label"].to_list() == theirs.tolist()


def test_crowdlab_equals_cleanlabs_multiannotator_quality():
    frame, truth = crew(items=300, seed=8)
    rng = np.random.default_rng(1)
    probs = 0.5 * rng.dirichlet(np.ones(3), 300)
    probs[np.arange(300), truth] += 0.5
    ours = consensus(frame, method="crowdlab", pred_probs=probs)
    wide = frame.pivot(index="item", columns="labeler", values="label")
    theirs = get_label_quality_multiannotator(wide, probs, verbose=False)
    quality = theirs["label_quality"]
    assert ours.table["label"].to_list() == quality["consensus_label"].tolist()
    np.testing.assert_allclose(ours.table["quality"].to_numpy(),
                               quality["consensus_quality_score"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.table["agreement"].to_numpy(),
                               quality["annotator_agreement"].to_numpy(), rtol=1e-12)
    stats = theirs["annotator_stats"]
    for labeler in ours.labelers:
        assert labeler.quality == pytest.approx(stats.loc[labeler.labeler, "annotator_quality"])
    worst = min(ours.labelers, key=lambda x: x.quality)
    assert worst.labeler == "eve"


def test_crowdlab_takes_probabilities_as_a_frame_by_item_and_class_name():
    frame, truth = crew(items=60, seed=9)
    probs = np.full((60, 3), 0.1)
    probs[np.arange(60), truth] = 0.8
    by_item = pd.DataFrame(probs[::-1], columns=["0", "1", "2"]).assign(
        item=np.arange(60)[::-1])  # rows in another order
    a = consensus(frame, method="crowdlab", pred_probs=probs)
    b = pm.labels.crowdlab(frame, by_item)
    assert a.table.equals(b.table)


def test_labelers_are_scored_against_the_consensus():
    frame, _ = crew(items=400, seed=1)
    result = consensus(frame)
    by = {x.labeler: x for x in result.labelers}
    assert by["eve"].agreement < min(x.agreement for x in result.labelers
                                     if x.labeler != "eve") - 0.2
    assert sum(x.annotations for x in result.labelers) == len(frame)


def test_bad_input():
    with pytest.raises(pm.InvalidInputError, match="ties"):
        consensus(TIED, ties="coin")
    with pytest.raises(pm.InvalidInputError, match="pred_probs"):
        consensus(TIED, method="crowdlab")
    with pytest.raises(pm.InvalidInputError, match="needs pred_probs"):
        consensus(TIED, ties="model")
    with pytest.raises(pm.InvalidInputError, match="shape"):
        consensus(TIED, ties="model", pred_probs=np.ones((3, 3)))
