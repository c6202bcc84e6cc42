"""Bootstrap confidence intervals per slice and metric, vectorised over the replicates.

Two resamplers, both giving percentile intervals:

- **Confusion cells** (accuracy, precision, recall, F1): resampling a slice's ``n`` rows with
  replacement and counting the (true, predicted) cells is *exactly* a multinomial draw of
  ``n`` over the cells with the observed shares, so every replicate of every slice is one
  ``rng.multinomial`` call, whatever ``n`` is.
- **Rows** (ROC AUC, average precision, log loss; MAE, RMSE, MAPE, R²): replicates resample
  the slice's rows. Above ``SAMPLE_CAP`` rows a replicate draws ``m = SAMPLE_CAP`` of them
  (the m-out-of-n bootstrap) and its deviation from the estimate is shrunk by
  ``sqrt(m / n)``, the square-root rule these smooth statistics follow; at or below the cap
  it is the ordinary bootstrap. That keeps 200 replicates of a million-row slice to a few
  milliseconds. For multiclass tasks only the log loss is resampled this way (one-vs-rest
  AUCs are not).

>>> import numpy as np
>>> from prodml.evaluation.metrics import confusion_cells
>>> y = np.array([0, 1] * 200); pred = np.array([0, 1, 1, 1] * 100)
>>> cells = confusion_cells(None, 1, y, pred, 2)
>>> lo, hi = cell_intervals(cells, 1, 200, 0.95, np.random.default_rng(0))["accuracy"]
>>> bool(lo[0] < 0.75 < hi[0])
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from prodml.evaluation.metrics import (FamilyMetrics, Outcomes, Ranked, auc_ap_rows,
                                       cell_metrics, grouped_order)

CELL_METRICS = ("accuracy", "precision", "recall", "f1")
SAMPLE_CAP = 2_000
_CHUNK = 4_000_000  # cells drawn at once, to bound memory with many slices and classes

Intervals = dict[str, tuple[np.ndarray, np.ndarray]]


def _percentiles(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0; NaN where every replicate is NaN."""
    tail = (1 - ci) / 2 * 100
    out = np.full((2, *samples.shape[1:]), np.nan)
    finite = ~np.all(np.isnan(samples), axis=0)
    if np.any(finite):
        out[:, finite] = np.nanpercentile(samples[:, finite], [tail, 100 - tail], axis=0)
    return out[0], out[1]


def cell_intervals(cells: np.ndarray, positive: int | None, replicates: int, ci: float,
                   rng: np.random.Generator) -> Intervals:
    """Intervals of the confusion-count metrics for every slice of ``(G, k, k)`` cells."""
    g_count, k = cells.shape[0], cells.shape[1]
    n = cells.sum(axis=(1, 2)).astype(np.int64)
    flat = cells.reshape(g_count, k * k)
    shares = np.where(n[:, None] > 0, flat / np.maximum(n, 1)[:, None], 1.0 / (k * k))
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m in CELL_METRICS}
    step = max(1, _CHUNK // max(1, replicates * k * k))
    for lo in range(0, g_count, step):
        hi = min(g_count, lo + step)
        draws = rng.multinomial(n[lo:hi], shares[lo:hi], size=(replicates, hi - lo))
        metrics = cell_metrics(draws.reshape(replicates, hi - lo, k, k), positive)
        for name in CELL_METRICS:
            out[name].append(_percentiles(metrics[name], ci))
    return {name: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            for name, parts in out.items()}


def row_intervals(ranked: Ranked, estimates: dict[str, np.ndarray], replicates: int, ci: float,
                  rng: np.random.Generator,
                  statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
                  cap: int = SAMPLE_CAP) -> Intervals:
    """Intervals from resampling each slice's rows (positions into ``ranked``, sorted per
    replicate so that a score order survives); ``statistic`` maps ``(B, m)`` positions to
    one value per replicate and metric."""
    g_count = len(ranked.counts)
    out = {name: (np.full(g_count, np.nan), np.full(g_count, np.nan)) for name in estimates}
    for g in range(g_count):
        n = int(ranked.counts[g])
        if n < 2:
            continue
        m = min(n, cap)
        start = int(ranked.first[g])
        positions = rng.integers(start, start + n, size=(replicates, m))
        positions.sort(axis=1)
        shrink = np.sqrt(m / n)
        for name, values in statistic(positions).items():
            estimate = estimates[name][g]
            if np.isnan(estimate):
                continue
            if m < n:
                values = estimate + shrink * (values - estimate)
            lo, hi = _percentiles(values[:, None], ci)
            out[name][0][g], out[name][1][g] = lo[0], hi[0]
    return out


def _ranking_statistic(outcomes: Outcomes, ranked: Ranked) -> Callable[[np.ndarray],
                                                                        dict[str, np.ndarray]]:
    positive = outcomes.y == outcomes.positive
    loss = outcomes.row_loss()

    def statistic(positions: np.ndarray) -> dict[str, np.ndarray]:
        rows = ranked.order[positions]
        auc, ap = auc_ap_rows(positive[rows], ranked.run[positions])
        out = {"roc_auc": auc, "pr_auc": ap}
        if loss is not None:
            out["log_loss"] = loss[rows].mean(axis=1)
        return out
    return statistic


def _loss_statistic(outcomes: Outcomes, ranked: Ranked) -> Callable[[np.ndarray],
                                                                     dict[str, np.ndarray]]:
    loss = outcomes.row_loss()
    assert loss is not None
    return lambda positions: {"log_loss": loss[ranked.order[positions]].mean(axis=1)}


def _regression_statistic(outcomes: Outcomes, ranked: Ranked) -> Callable[[np.ndarray],
                                                                           dict[str, Any]]:
    def statistic(positions: np.ndarray) -> dict[str, np.ndarray]:
        rows = ranked.order[positions]
        y, err = outcomes.y[rows], outcomes.pred[rows] - outcomes.y[rows]
        sq = (err * err).mean(axis=1)
        var = y.var(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(var > 0, 1 - sq / np.where(var > 0, var, 1),
                          np.where(sq == 0, 1.0, 0.0))
        return {"mae": np.abs(err).mean(axis=1), "rmse": np.sqrt(sq),
                "mape": (np.abs(err) / np.maximum(np.abs(y), np.finfo(np.float64).eps))
                .mean(axis=1), "r2": r2}
    return statistic


def family_intervals(outcomes: Outcomes, fam: FamilyMetrics, codes: np.ndarray | None,
                     replicates: int, ci: float,
                     rng: np.random.Generator) -> list[dict[str, tuple[float, float]]]:
    """Every bootstrapped interval of every slice of one family, as one dict per slice."""
    g_count = len(fam.counts)
    found: Intervals = {}
    if replicates <= 0:
        return [{} for _ in range(g_count)]
    if outcomes.task == "regression":
        ranked = grouped_order(codes, g_count, outcomes.n)
        found.update(row_intervals(ranked, fam.metrics, replicates, ci, rng,
                                   _regression_statistic(outcomes, ranked)))
    else:
        assert fam.cells is not None
        found.update(cell_intervals(fam.cells, outcomes.positive, replicates, ci, rng))
        if fam.ranked is not None:
            estimates = {m: fam.metrics[m] for m in ("roc_auc", "pr_auc", "log_loss")
                         if m in fam.metrics}
            found.update(row_intervals(fam.ranked, estimates, replicates, ci, rng,
                                       _ranking_statistic(outcomes, fam.ranked)))
        elif outcomes.row_loss() is not None:
            ranked = grouped_order(codes, g_count, outcomes.n)
            found.update(row_intervals(ranked, {"log_loss": fam.metrics["log_loss"]},
                                       replicates, ci, rng, _loss_statistic(outcomes, ranked)))
    per_slice: list[dict[str, tuple[float, float]]] = [{} for _ in range(g_count)]
    for name, (lo, hi) in found.items():
        for g in range(g_count):
            if np.isfinite(lo[g]) and np.isfinite(hi[g]) and np.isfinite(fam.metrics[name][g]):
                per_slice[g][name] = (float(lo[g]), float(hi[g]))
    return per_slice
