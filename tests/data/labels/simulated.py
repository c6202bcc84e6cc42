"""Annotation data sets with published agreement values, and a simulated labelling crew."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Fleiss (1971): 30 patients, 6 psychiatrists each, 5 diagnoses (as tabulated in R's irr
# package, ``diagnoses``). Published Fleiss' kappa: 0.430.
DIAGNOSES = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5]])

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers,
# 12 units, values 1-5, missing data. Published alpha: 0.743 nominal, 0.849 interval.
NAN = np.nan
RELIABILITY = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]])


def long_form(matrix: np.ndarray, raters_in_rows: bool = False) -> pd.DataFrame:
    """A subjects x raters (or raters x units) matrix as annotations, one row per label."""
    data = matrix.T if raters_in_rows else matrix
    items, raters = np.nonzero(~np.isnan(data.astype(float)))
    return pd.DataFrame({"item": items, "labeler": [f"r{r}" for r in raters],
                         "label": data[items, raters].astype(int)})


def crew(items: int = 400, classes: int = 3, seed: int = 0, careless: float = 0.6,
         per_item: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """Five labelers, ``per_item`` of them on each item; ``eve`` gives a random label
    ``careless`` of the time, the others 8 %. Returns the annotations and the truth."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, items)
    names = np.array(["ann", "bob", "cat", "dan", "eve"])
    error = np.array([0.08, 0.08, 0.08, 0.08, careless])
    who = np.argsort(rng.random((items, len(names))), axis=1)[:, :per_item]
    item = np.repeat(np.arange(items), per_item)
    labeler = who.ravel()
    noisy = rng.random(len(item)) < error[labeler]
    label = np.where(noisy, rng.integers(0, classes, len(item)), truth[item])
    frame = pd.DataFrame({"item": item, "labeler": names[labeler], "label": label,
                          "line": np.where(item % 2 == 0, "a", "b")})
    return frame, truth
