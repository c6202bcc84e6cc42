"""The demo's labelling act: it finds the careless officer and gives the evaluation its HLP."""

from __future__ import annotations

import prodml as pm
from prodml.demo.data import LABEL, loan_applications
from prodml.demo.labelling import CARELESS, labelling_story


def test_labelling_story_finds_the_careless_officer_and_gives_an_hlp_baseline(store):
    test = loan_applications(400, seed=5)
    messages = []
    story = labelling_story(test, store=store, seed=5, say=messages.append)
    assert story["careless"] == CARELESS and story["items"] == 240
    assert story["annotations"] == 240 * 5
    assert story["by_instruction"]["v2"] > story["by_instruction"]["v1"]
    assert 0.75 < story["hlp"] < story["hlp_without_careless"] < 0.95
    assert len(story["disputed"]) == 3 and story["disputed"][0]["entropy"] > 0.9
    assert any("careless labeler found: eli" in m for m in messages)
    # the labels are in the store, linked to the rows of the test data
    stored = pm.labels.annotations(dataset=test, store=store)
    assert stored.height == 1200 and stored["row_id"].max() == 239
    # the evaluation takes the HLP as a baseline
    result = pm.evaluate(test[LABEL].to_numpy(), test, label=LABEL, bootstrap=0,
                         baselines=story["baselines"])
    assert result.baseline("hlp") == story["hlp"]
