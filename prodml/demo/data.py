"""Loan applications from River's Agrawal generator (ships with River: no download)."""

from __future__ import annotations

import itertools

import pandas as pd

FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears",
            "loan"]
LABEL = "approved"


def loan_applications(rows: int = 6000, seed: int = 42, classification_function: int = 2,
                      perturbation: float = 0.1) -> pd.DataFrame:
    """``rows`` loan applications with the ``approved`` label (0/1).

    ``perturbation`` adds noise to the numeric features (River's option), so no model is
    perfect: the label is computed from the clean values.

    >>> frame = loan_applications(rows=5)
    >>> list(frame.columns) == FEATURES + [LABEL], len(frame)
    (True, 5)
    """
    from river.datasets import synth

    stream = synth.Agrawal(classification_function=classification_function, seed=seed,
                           perturbation=perturbation)
    records = [{**x, LABEL: int(y)} for x, y in itertools.islice(stream, rows)]
    frame = pd.DataFrame.from_records(records, columns=FEATURES + [LABEL])
    return frame.astype({"commission": "float64", "salary": "float64", "hvalue": "float64",
                         "loan": "float64"})
