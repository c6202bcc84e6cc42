"""Reliability coefficients from an items x classes count table: Fleiss' kappa and
Krippendorff's alpha (at the nominal, ordinal, interval and ratio levels).

Both need only a few sums over the items with two labels or more (:class:`Moments`), so the
table is read once, whatever the number of labelers.

>>> counts = np.array([[2, 0], [1, 1], [0, 2]])
>>> stats = headline(counts, np.arange(2.0), "nominal")
>>> round(stats["fleiss_kappa"], 3), round(stats["krippendorff_alpha"], 3)
(0.333, 0.444)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """The sums every headline statistic needs, from the items with two labels or more:
    ``pairs[c, d]`` = sum over items of n_c n_d / (m - 1) (Krippendorff's coincidences before
    the diagonal correction), class totals, and each item's agreeing-pair share."""

    items: int
    totals: np.ndarray  # labels per class
    pairs: np.ndarray  # classes x classes
    weighted: np.ndarray  # per class: sum of n_c / (m - 1)
    agreeing: np.ndarray  # per class: sum of n_c (n_c - 1)
    said: np.ndarray  # per class: sum of n_c (m - 1)
    observed: float

    @classmethod
    def of(cls, counts: np.ndarray) -> Moments | None:
        m = counts.sum(axis=1)
        pairable = m >= 2
        c = counts if pairable.all() else counts[pairable]
        if len(c) == 0:
            return None
        c = c.astype(np.float64)
        mp = c.sum(axis=1)
        weight = 1.0 / (mp - 1)
        cw = c * weight[:, None]
        square = c * c
        observed = float(((square.sum(axis=1) - mp) * weight / mp).mean())
        return cls(len(c), c.sum(axis=0), cw.T @ c, cw.sum(axis=0),
                   square.sum(axis=0) - c.sum(axis=0), (mp - 1) @ c, observed)


def headline(counts: np.ndarray, values: np.ndarray, level: str,
              moments: Moments | None = None) -> dict[str, float]:
    moments = moments or Moments.of(counts)
    if moments is None:
        return {"observed": math.nan, "fleiss_kappa": math.nan, "krippendorff_alpha": math.nan}
    shares = moments.totals / moments.totals.sum()
    expected = float((shares * shares).sum())
    fleiss = (moments.observed - expected) / (1 - expected) if expected < 1 else math.nan
    return {"observed": moments.observed, "fleiss_kappa": float(fleiss),
            "krippendorff_alpha": _alpha(moments, values, level)}


def krippendorff_alpha(counts: np.ndarray, values: np.ndarray, level: str) -> float:
    """Krippendorff's alpha from an items x values count table (``krippendorff.alpha``'s
    ``value_counts``), at ``level``; units with fewer than two labels do not count.

    >>> round(krippendorff_alpha(np.array([[2, 0], [1, 1], [0, 2]]), np.arange(2.0),
    ...                          "nominal"), 3)
    0.444
    """
    moments = Moments.of(counts)
    return math.nan if moments is None else _alpha(moments, values, level)


def _alpha(moments: Moments, values: np.ndarray, level: str) -> float:
    o = moments.pairs - np.diag(moments.weighted)  # the coincidence matrix
    n_v = o.sum(axis=0)
    n = n_v.sum()
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1)
    d = _distances(values, n_v, level)
    expected = (e * d).sum()
    return float(1 - (o * d).sum() / expected) if expected > 0 else math.nan


def _distances(values: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    v1, v2 = values[:, None], values[None, :]
    if level == "nominal":
        return (v1 != v2).astype(float)
    if level == "interval":
        return (v1 - v2) ** 2
    if level == "ratio":
        total = v1 + v2
        ratio = np.divide(v1 - v2, total, out=np.zeros((len(values),) * 2), where=total != 0)
        return ratio ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(n_v)])
    i = np.arange(len(values))
    low, high = np.minimum(i[:, None], i[None, :]), np.maximum(i[:, None], i[None, :])
    between = cumulative[high + 1] - cumulative[low]
    return (between - (n_v[low] + n_v[high]) / 2) ** 2
