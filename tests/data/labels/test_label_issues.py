"""Label errors found by confident learning on out-of-fold probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cleanlab.filter import find_label_issues
from sklearn.ensemble import RandomForestClassifier

import prodml as pm
from prodml.data.labels import issues


def flipped(seed=0, rows=1000, flips=40):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0.3, "defect", "ok")
    clear = np.flatnonzero(np.abs(X[:, 0] + 0.5 * X[:, 1] - 0.3) > 0.8)
    wrong = rng.choice(clear, flips, replace=False)
    noisy = y.copy()
    noisy[wrong] = np.where(y[wrong] == "ok", "defect", "ok")
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": noisy}), wrong, y


def test_finds_injected_flips_with_the_true_label_suggested():
    data, wrong, truth = flipped()
    found = issues(data, label="label")
    caught = set(found.indices) & set(wrong.tolist())
    assert len(caught) >= 0.9 * len(wrong)  # recall
    assert len(caught) >= 0.6 * found.found  # precision
    rows = found.table.filter(found.table["row"].is_in(list(caught)))
    assert rows["suggested"].to_list() == truth[rows["row"].to_numpy()].tolist()
    qualities = found.table["quality"].to_numpy()
    assert (np.diff(qualities) >= 0).all()  # worst first
    assert len(found.quality) == len(data)


def test_given_probabilities_match_cleanlab_directly():
    data, _, _ = flipped(seed=1, rows=400, flips=20)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], 400)
    codes = (data["label"] == "ok").astype(int).to_numpy()  # classes sorted: defect, ok
    found = issues(data, label="label", pred_probs=probs)
    expected = find_label_issues(codes, probs, return_indices_ranked_by="self_confidence")
    assert found.indices == expected.tolist()


def test_any_scikit_learn_model_and_a_top_limit():
    data, wrong, _ = flipped(seed=2, rows=600, flips=30)
    found = issues(data, label="label", features=["a", "b"], top=10,
                   model=RandomForestClassifier(n_estimators=30, random_state=0))
    assert found.found == 10
    assert len(set(found.indices) & set(wrong.tolist())) >= 7
    assert "likely label errors" in found.summary()


def test_bad_input():
    data, _, _ = flipped(rows=100, flips=2)
    with pytest.raises(pm.InvalidInputError, match="label"):
        issues(data, label="y")
    with pytest.raises(pm.InvalidInputError, match="shape"):
        issues(data, label="label", pred_probs=np.ones((3, 2)))
    with pytest.raises(pm.InvalidInputError, match="at least 2 rows"):
        issues(pd.concat([data, data.head(1).assign(label="rare")]), label="label")
