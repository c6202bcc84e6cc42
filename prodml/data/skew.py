"""Training-serving skew by entity key, and multivariate drift by a domain classifier.

``skew_by_key`` joins training and serving rows on an entity key and counts the feature values
that differ; ``domain_classifier`` asks a classifier to tell two windows apart. Both sit beside
:func:`prodml.data.drift.drift`, which compares columns one at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.data.frames import column_kind, logical_type, to_arrow
from prodml.data.profile import Profile
from prodml.errors import InvalidInputError


# -- training-serving skew by entity key ------------------------------------------------------
@dataclass(frozen=True)
class KeySkewReport:
    """Feature values that differ for the same entity in training and serving.

    ``features``: per feature, the share of matched entities whose value differs.
    ``entities``: a Polars frame of the key columns, ``differing`` (how many features differ)
    and ``share`` (that count over the features compared), one row per matched entity.
    """

    key: tuple[str, ...]
    matched: int
    training_only: int
    serving_only: int
    features: dict[str, float]
    entities: Any
    threshold: float = 0.0

    @property
    def skewed_features(self) -> list[str]:
        return [f for f, share in self.features.items() if share > self.threshold]

    @property
    def entities_differing(self) -> float:
        """Share of matched entities with at least one differing feature value."""
        return float((self.entities["differing"] > 0).mean()) if self.matched else 0.0

    def to_dict(self, top: int = 20) -> dict[str, Any]:
        worst = self.entities.sort("share", descending=True).head(top)
        return {"key": list(self.key), "matched": self.matched,
                "training_only": self.training_only, "serving_only": self.serving_only,
                "features": self.features, "skewed_features": self.skewed_features,
                "entities_differing": self.entities_differing,
                "top_entities": worst.to_dicts()}

    def summary(self) -> str:
        lines = [f"Training-serving skew by {', '.join(self.key)}: {self.matched:,} entities "
                 f"matched ({self.training_only:,} only in training, {self.serving_only:,} "
                 f"only in serving); {self.entities_differing:.1%} have a differing value"]
        width = max([len(f) for f in self.features] + [7])
        lines += [f"  {f.ljust(width)}  {share:8.2%} differ" for f, share in
                  sorted(self.features.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def skew_by_key(training: Any, serving: Any, *, key: str | list[str],
                columns: list[str] | None = None, rtol: float = 1e-9, atol: float = 0.0,
                threshold: float = 0.0) -> KeySkewReport:
    """Join training and serving rows on ``key`` and compare each feature value (Polars).

    Numbers differ when ``|a - b| > atol + rtol * |b|``; other values when not equal. Null on
    both sides (or NaN on both) is equal; null on one side differs. The key must be unique on
    each side.
    """
    import polars as pl

    frames = [pl.from_arrow(to_arrow(x)) for x in (training, serving)]
    keys = [key] if isinstance(key, str) else list(key)
    for side, frame in zip(("training", "serving"), frames):
        for k in keys:
            if k not in frame.columns:
                raise InvalidInputError("key", k, f"is not a column of the {side} data")
        repeated = frame.select(pl.struct(keys).is_duplicated().sum()).item()
        if repeated:
            raise InvalidInputError("key", ", ".join(keys), f"must be unique; {repeated} "
                                    f"{side} rows share a key (deduplicate first)")
    train, serve = frames
    for k in keys:
        if train.schema[k] != serve.schema[k]:
            raise InvalidInputError("key", k, f"has type {train.schema[k]} in training and "
                                    f"{serve.schema[k]} in serving")
    if columns is None:
        only = sorted(set(train.columns) ^ set(serve.columns))
        if only:
            raise InvalidInputError("columns", ", ".join(only), "training and serving must "
                                    "have the same columns (pass columns=[...])")
        columns = [c for c in train.columns if c not in keys]
    for c in columns:
        if c not in train.columns or c not in serve.columns:
            raise InvalidInputError("columns", c, "must be a column of both sides")
    joined = train.select(keys + columns).join(serve.select(keys + columns), on=keys,
                                               how="inner", suffix="__serving")
    flags = []
    for c in columns:
        a, b = pl.col(c), pl.col(c + "__serving")
        if train.schema[c].is_numeric() and serve.schema[c].is_numeric():
            a, b = a.cast(pl.Float64), b.cast(pl.Float64)
            differs = (pl.when(a.is_null() & b.is_null()).then(False)
                       .when(a.is_null() | b.is_null()).then(True)
                       .when(a.is_nan() & b.is_nan()).then(False)
                       .otherwise(~((a - b).abs() <= atol + rtol * b.abs())))
        else:
            differs = a.cast(pl.String).ne_missing(b.cast(pl.String))
        flags.append(differs.alias(c))
    marked = joined.select(*keys, *flags)
    entities = marked.select(*keys, pl.sum_horizontal(columns).alias("differing")).with_columns(
        (pl.col("differing") / max(len(columns), 1)).alias("share"))
    shares = marked.select(pl.col(columns).cast(pl.Float64).mean()).row(0) if columns else ()
    return KeySkewReport(
        tuple(keys), marked.height,
        train.join(serve.select(keys), on=keys, how="anti").height,
        serve.join(train.select(keys), on=keys, how="anti").height,
        {c: float(s or 0.0) for c, s in zip(columns, shares)}, entities, threshold)


# -- multivariate drift: a classifier that tells the windows apart --------------------------
DOMAIN_MAX_ROWS = 10_000  # rows sampled per side


@dataclass(frozen=True)
class DomainClassifierReport:
    """Cross-validated ROC AUC of a classifier telling current rows from reference rows.

    Drift when the mean AUC exceeds ``threshold`` and its 95 % interval (Student t over the
    folds) lies above 0.5: the windows are told apart, and not by luck.
    """

    auc: float
    ci_low: float
    ci_high: float
    fold_aucs: tuple[float, ...]
    threshold: float
    top_features: tuple[tuple[str, float], ...]
    reference_rows: int
    current_rows: int

    @property
    def drifted(self) -> bool:
        return self.auc > self.threshold and self.ci_low > 0.5

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "fold_aucs": list(self.fold_aucs), "threshold": self.threshold,
                "drifted": self.drifted, "top_features": [list(f) for f in self.top_features],
                "reference_rows": self.reference_rows, "current_rows": self.current_rows}

    def summary(self) -> str:
        verdict = "DETECTED" if self.drifted else "not detected"
        lines = [f"Multivariate drift (domain classifier): {verdict} — ROC AUC {self.auc:.3f} "
                 f"(95 % CI {self.ci_low:.3f}–{self.ci_high:.3f}, threshold {self.threshold})"]
        lines += [f"  {name}: {value:.4f}" for name, value in self.top_features]
        return "\n".join(lines)


def domain_classifier(reference: Any, current: Any, *, columns: list[str] | None = None,
                      max_rows: int = DOMAIN_MAX_ROWS, folds: int = 5, threshold: float = 0.55,
                      top: int = 10, seed: int = 0) -> DomainClassifierReport:
    """Train HistGradientBoosting to tell ``current`` rows from ``reference`` rows.

    At most ``max_rows`` rows per side are used (a uniform sample). Feature importance is the
    drop in ROC AUC when a feature is permuted, on a held-out quarter.
    """
    from scipy import stats
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split

    if isinstance(reference, Profile) or isinstance(current, Profile):
        raise InvalidInputError("data", "Profile", "the domain classifier needs rows; a "
                                "profile keeps no joint rows")
    from prodml.data.drift import _feature_columns, _source  # drift re-exports this module

    ref, cur = _source(reference), _source(current)
    names = _feature_columns(ref, cur, columns, None, None)
    names = [n for n in names if "other" not in (column_kind(ref.logical_type(n)),
                                                 column_kind(cur.logical_type(n)))]
    if not names:
        raise InvalidInputError("columns", columns, "no numeric or categorical column to use")
    rng = np.random.default_rng(seed)
    tables = []
    for src, side in ((ref, "reference"), (cur, "current")):
        if src.rows < 2 * folds:
            raise InvalidInputError(side, f"{src.rows} rows", f"needs at least {2 * folds}")
        table = src.table.select(names)
        if table.num_rows > max_rows:
            table = table.take(np.sort(rng.choice(table.num_rows, max_rows, replace=False)))
        tables.append(table)
    features, categorical = _design(tables, names)
    y = np.r_[np.zeros(tables[0].num_rows), np.ones(tables[1].num_rows)]
    model = HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed)
    aucs = cross_val_score(model, features, y, scoring="roc_auc",
                           cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    half = stats.t.ppf(0.975, folds - 1) * aucs.std(ddof=1) / math.sqrt(folds)
    x_fit, x_test, y_fit, y_test = train_test_split(features, y, test_size=0.25, stratify=y,
                                                    random_state=seed)
    importance = permutation_importance(model.fit(x_fit, y_fit), x_test, y_test,
                                        scoring="roc_auc", n_repeats=5, random_state=seed)
    order = np.argsort(-importance.importances_mean)[:top]
    return DomainClassifierReport(
        float(aucs.mean()), float(aucs.mean() - half), float(aucs.mean() + half),
        tuple(float(a) for a in aucs), threshold,
        tuple((names[i], float(importance.importances_mean[i])) for i in order),
        tables[0].num_rows, tables[1].num_rows)


def _design(tables: list[pa.Table], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as floats (null -> NaN), categories as codes by frequency (the 254 most common;
    the rest share code 254), both windows encoded together."""
    import pyarrow.compute as pc

    columns, categorical = [], []
    for name in names:
        parts = [t.column(name) for t in tables]
        kinds = {column_kind(logical_type(p.type)) for p in parts}
        if kinds == {"numeric"}:
            values = [p.cast(pa.int64()) if pa.types.is_temporal(p.type) else p for p in parts]
            columns.append(np.concatenate([pc.cast(v, pa.float64()).to_numpy() for v in values]))
            categorical.append(False)
            continue
        both = pa.chunked_array([c for p in parts for c in
                                 p.cast(pa.large_string()).chunks], type=pa.large_string())
        encoded = pc.dictionary_encode(both).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
        counts = np.bincount(codes[valid], minlength=len(encoded.dictionary))
        rank = np.empty_like(counts)
        rank[np.argsort(-counts, kind="stable")] = np.arange(counts.size)
        mapped = np.minimum(rank[np.where(valid, codes, 0)], 254).astype(np.float64)
        columns.append(np.where(valid, mapped, np.nan))
        categorical.append(True)
    return np.column_stack(columns), np.array(categorical)
