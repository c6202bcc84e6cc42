"""Profiles: statistics against NumPy/pandas, merge equals concatenation, serialisation, Dask."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prodml as pm
from prodml.data.profile import KLL_K, Profile, profile


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    n = 20_000
    x = rng.normal(10, 2, n)
    x[:50] = np.nan
    x[50:55] = np.inf
    return pd.DataFrame({
        "x": x,
        "count": pd.Series(rng.integers(0, 1000, n), dtype="Int64").where(rng.random(n) > 0.1),
        "city": rng.choice(["paris", "oslo", "rome", "lima"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "flag": rng.random(n) > 0.7,
        "when": pd.date_range("2026-01-01", periods=n, freq="min"),
    })


def test_statistics_match_numpy_and_pandas(frame):
    p = profile(frame, seed=1)
    x = p["x"]
    finite = frame["x"][np.isfinite(frame["x"])]
    # pandas marks NaN as missing (and so does Arrow's conversion); Polars keeps NaN apart
    assert (x.count, x.missing, x.nan, x.inf) == (20_000, 50, 0, 5)
    polars_x = profile(pl.DataFrame({"x": frame["x"].to_numpy()}).with_columns(
        pl.col("x").fill_nan(None).fill_null(float("nan"))))["x"]
    assert (polars_x.missing, polars_x.nan, polars_x.inf) == (0, 50, 5)
    assert x.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert x.std == pytest.approx(finite.std(), rel=1e-9)
    assert (x.min, x.max) == (finite.min(), finite.max())
    eps = 3 * (1.7 / KLL_K ** 0.5) / 10  # well inside KLL's rank error for k=200
    for q, estimate in zip([0.1, 0.5, 0.9], x.quantiles([0.1, 0.5, 0.9])):
        assert abs((finite <= estimate).mean() - q) < max(eps, 0.02)
    count = p["count"]
    assert count.missing == int(frame["count"].isna().sum())
    assert count.logical_type == "integer"
    assert abs(count.distinct - frame["count"].nunique()) / frame["count"].nunique() < 0.05
    city = p["city"]
    assert city.frequencies() == frame["city"].value_counts().to_dict()
    assert city.lengths.min == 4 and city.lengths.max == 5
    assert p["flag"].frequencies() == {"true": int(frame["flag"].sum()),
                                       "false": int((~frame["flag"]).sum())}
    assert p["when"].kind == "numeric" and p["when"].logical_type == "datetime"
    edges, counts = x.histogram(bins=10)
    assert len(edges) == 11 and counts.sum() == pytest.approx(len(finite), rel=1e-9)


def test_sample_is_uniform_without_replacement():
    values = np.arange(100_000, dtype=float)
    p = profile(pd.DataFrame({"v": values}), sample_size=2000, seed=5)
    sample = p["v"].sample_values
    assert len(sample) == 2000 and len(np.unique(sample)) == 2000
    from scipy import stats
    assert stats.kstest(sample, stats.uniform(0, 100_000).cdf).pvalue > 0.001


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1,
                max_size=300),
       st.integers(0, 300),
       st.lists(st.sampled_from(["a", "b", "c", None]), min_size=300, max_size=300))
def test_merge_equals_profiling_the_concatenation(numbers, cut, labels):
    frame = pd.DataFrame({"x": pd.array(numbers, dtype="Float64"),
                          "c": labels[: len(numbers)]})
    cut = min(cut, len(frame))
    whole = profile(frame)
    parts = profile(frame.iloc[:cut]) if cut else None
    rest = profile(frame.iloc[cut:]) if cut < len(frame) else None
    merged = parts.merge(rest) if parts and rest else (parts or rest)
    for name in ("x", "c"):
        a, b = merged[name], whole[name]
        assert (a.count, a.missing, a.nan, a.inf) == (b.count, b.missing, b.nan, b.inf)
        assert a.moments.n == b.moments.n
        if b.moments.n:
            assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-6)
            assert (a.min, a.max) == (b.min, b.max)
        if b.moments.n > 1:
            assert a.moments.m2 == pytest.approx(b.moments.m2, rel=1e-6, abs=1e-3)
        assert a.frequencies() == b.frequencies()
        assert round(a.distinct) == round(b.distinct)  # same registers: exact merge
        assert sorted(map(str, a.sample_values)) == sorted(map(str, b.sample_values)) or \
            len(a.sample_values) == len(b.sample_values)
    if merged["x"].moments.n:
        assert merged["x"].kll.n == whole["x"].kll.n


def test_merge_quantiles_within_kll_error():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 50_000), rng.normal(3, 1, 50_000)
    merged = profile(pd.DataFrame({"v": a})).merge(profile(pd.DataFrame({"v": b})))
    both = np.concatenate([a, b])
    for q, estimate in zip([0.05, 0.5, 0.95], merged["v"].quantiles([0.05, 0.5, 0.95])):
        assert abs((both <= estimate).mean() - q) < 0.02


def test_bytes_and_json_round_trip(frame):
    p = profile(frame, seed=2)
    back = Profile.from_bytes(p.to_bytes())
    assert back.to_dict() == p.to_dict()
    np.testing.assert_array_equal(back["x"].sample_values, p["x"].sample_values)
    assert len(p.to_bytes()) < 400_000
    assert '"top_values"' in p.to_json()
    with pytest.raises(pm.InvalidInputError, match="not a prodml profile"):
        Profile.from_bytes(b"garbage")


def test_inputs_polars_arrow_and_files(tmp_path, frame):
    small = frame.head(2000)
    expected = profile(small)["x"].mean
    assert profile(pl.from_pandas(small))["x"].mean == pytest.approx(expected)
    path = tmp_path / "data.parquet"
    small.to_parquet(path)
    from_file = profile(path, batch_rows=300)  # several batches, merged
    assert from_file.rows == 2000 and from_file["x"].mean == pytest.approx(expected, rel=1e-12)
    csv = tmp_path / "data.csv"
    small[["x", "city"]].to_csv(csv, index=False)
    assert profile(csv)["city"].frequencies() == small["city"].value_counts().to_dict()


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(pm.InvalidInputError, match="does not exist"):
        profile(tmp_path / "missing.csv")
    fake = tmp_path / "fake.parquet"
    fake.write_text("this is not parquet")
    with pytest.raises(pm.InvalidInputError, match="cannot be read as parquet"):
        profile(fake)
    with pytest.raises(pm.InvalidInputError, match="mixed types"):
        profile(pd.DataFrame({"m": [1, "two", 3.0]}))
    empty = profile(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    assert empty.rows == 0 and math.isnan(empty["a"].mean)
    nulls = profile(pd.DataFrame({"a": [None, None]}))
    assert nulls["a"].missing == 2


def test_dask_partitions_profiled_on_a_local_cluster(frame):
    dd = pytest.importorskip("dask.dataframe")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        ddf = dd.from_pandas(frame[["x", "city"]], npartitions=4)
        p = profile(ddf)
    local = profile(frame[["x", "city"]])
    assert p.rows == local.rows
    assert p["x"].mean == pytest.approx(local["x"].mean, rel=1e-12)
    assert p["city"].frequencies() == local["city"].frequencies()
