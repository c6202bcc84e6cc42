"""The data-augmentation checklist: realistic, label clear, model worse than humans."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import prodml as pm
from prodml.data.labels import augmentation_check
from tests.data.labels.simulated import crew


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2))
    y = (X[:, 0] > 0).astype(int)
    original = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "y": y})
    model = LogisticRegression().fit(original[["x0", "x1"]], y)
    return original, model


def test_realistic_hard_examples_with_clear_labels_are_useful(data):
    original, model = data
    rng = np.random.default_rng(1)
    hard = original.sample(500, random_state=1).reset_index(drop=True)
    hard["y"] = np.where(rng.random(500) < 0.25, 1 - hard["y"], hard["y"])  # model errs
    annotations, _ = crew(items=100, classes=2, careless=0.08)  # people agree
    check = augmentation_check(original, hard, label="y", model=model, human_level=0.95,
                               annotations=annotations)
    assert check.realistic and check.label_clear and check.model_worse_than_humans
    assert check.useful and check.model_accuracy < 0.8 < check.model_accuracy_original
    assert "looks useful" in check.summary()


def test_unrealistic_unclear_or_easy_examples_are_not(data):
    original, model = data
    shifted = original.assign(x1=original["x1"] * 4 + 5)
    check = augmentation_check(original, shifted, label="y", model=model, human_level=0.95)
    assert not check.realistic and "x1" in check.drifted_columns and not check.useful
    noisy, _ = crew(items=100, classes=2, careless=1.0, per_item=5, seed=3)
    noisy["label"] = np.random.default_rng(0).integers(0, 2, len(noisy))  # nobody agrees
    unclear = augmentation_check(original, original.sample(300, random_state=0),
                                 label="y", annotations=noisy)
    assert unclear.label_clear is False and not unclear.useful
    assert unclear.human_level < 0.7  # HLP measured from the annotations themselves
    easy = augmentation_check(original, original.sample(300, random_state=2), label="y",
                              model=model, human_level=0.9)
    assert easy.model_worse_than_humans is False and not easy.useful
    assert easy.to_dict()["useful"] is False


def test_bad_human_level(data):
    original, _ = data
    with pytest.raises(pm.InvalidInputError, match="human_level"):
        augmentation_check(original, original, label="y", human_level=95)
