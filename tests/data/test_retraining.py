"""Retraining strategies: which rows each keeps, their weights, and the errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from prodml.data.retraining import TrainingWindow, training_window
from prodml.errors import InvalidInputError

START = np.datetime64("2026-01-01T00:00:00", "ns")


def stream(n: int = 400, change: int = 200, seed: int = 0) -> pd.DataFrame:
    """One row an hour; the concept flips at row ``change``: y = x > 0 before, x < 0 after."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    after = np.arange(n) >= change
    y = np.where(after, x < 0, x > 0).astype(int)
    t = START + np.arange(n) * np.timedelta64(1, "h")
    return pd.DataFrame({"t": t, "x": x, "y": y, "after": after})


# -- weights against an independent computation ------------------------------------------------

def test_weighted_decay_matches_numpy_exponential():
    rng = np.random.default_rng(1)
    seconds = rng.integers(0, 90 * 86400, size=500)
    df = pd.DataFrame({"when": START + seconds.astype("timedelta64[s]"), "v": seconds})
    now = np.datetime64("2026-04-15T12:00:00", "ns")
    result = training_window(df, strategy="weighted", time_column="when", now=str(now),
                             half_life="14d")
    age_days = (now - df["when"].to_numpy()) / np.timedelta64(1, "D")
    expected = np.exp(-np.log(2.0) * age_days / 14.0)
    np.testing.assert_allclose(result.sample_weight, expected, rtol=1e-12)
    assert result.rows_kept == 500 and result.rows_dropped == 0
    assert result.frame is df  # nothing dropped: the caller's frame, untouched


def test_weighted_window_caps_the_look_back_and_weights_the_rest():
    df = stream()
    result = training_window(df, strategy="weighted", time_column="t", window="100h",
                             half_life="25h")
    assert result.rows_kept == 101  # hours 299..399, both ends in the window
    assert result.frame["t"].min() == pd.Timestamp(START + np.timedelta64(299, "h"))
    assert result.sample_weight[-1] == 1.0
    assert result.sample_weight[0] == pytest.approx(0.5 ** 4)
    assert result.cutoff == pd.Timestamp(START + np.timedelta64(299, "h"))


def test_all_and_recent_weigh_every_kept_row_one():
    df = stream()
    for kwargs in ({"strategy": "all"}, {"strategy": "recent", "window": "3d"}):
        result = training_window(df, time_column="t", **kwargs)
        assert np.array_equal(result.sample_weight, np.ones(result.rows_kept))
        assert not result.weighted


# -- a change point: what each strategy learns -------------------------------------------------

def test_strategies_on_a_change_point():
    df = stream()
    every = training_window(df, strategy="all", time_column="t")
    weighted = training_window(df, strategy="weighted", time_column="t", half_life="24h")
    recent = training_window(df, strategy="recent", time_column="t", window="150h")

    assert every.rows_kept == 400 and every.cutoff is None
    assert recent.frame["after"].all() and recent.rows_kept == 151
    assert recent.rows_dropped == 249
    assert weighted.rows_kept == 400
    w, after = weighted.sample_weight, weighted.frame["after"].to_numpy()
    assert w[after].sum() > 100 * w[~after].sum()  # the past barely counts

    # the model trained on each: after the change, "recent" and "weighted" learn the new
    # concept, "all" averages two opposite ones and learns neither
    test = stream(n=400, change=0, seed=7)

    def accuracy(window: TrainingWindow) -> float:
        model = LogisticRegression().fit(window.frame[["x"]], window.frame["y"],
                                         sample_weight=window.sample_weight)
        return float(model.score(test[["x"]], test["y"]))

    assert accuracy(recent) > 0.95 and accuracy(weighted) > 0.95
    assert accuracy(every) < 0.8


def test_row_count_window_keeps_the_newest_rows_in_input_order():
    df = stream(n=50).sample(frac=1.0, random_state=3)  # shuffled
    result = training_window(df, strategy="recent", time_column="t", window=10)
    assert result.rows_kept == 10
    kept = result.frame["t"]
    assert kept.min() == df["t"].nlargest(10).min()
    assert list(result.frame.index) == [i for i in df.index if i in set(result.frame.index)]


def test_now_replays_the_past_and_drops_later_rows():
    df = stream()
    result = training_window(df, strategy="recent", time_column="t", window="24h",
                             now=str(START + np.timedelta64(100, "h")))
    assert result.frame["t"].min() == pd.Timestamp(START + np.timedelta64(76, "h"))
    assert result.frame["t"].max() == pd.Timestamp(START + np.timedelta64(100, "h"))
    assert result.rows_kept == 25


@pytest.mark.parametrize("kind", ["polars", "arrow"])
def test_polars_and_arrow_frames_come_back_in_their_library(kind):
    df = stream(n=48)
    frame = pl.from_pandas(df) if kind == "polars" else pa.Table.from_pandas(df)
    result = training_window(frame, strategy="recent", time_column="t", window="12h")
    assert type(result.frame) is type(frame)
    assert len(result.frame) == 13


def test_text_and_time_zone_aware_times():
    text = pd.DataFrame({"t": ["2026-03-01T00:00:00+01:00", "2026-03-01T06:00:00+01:00",
                               "2026-03-02T00:00:00+01:00"], "v": [1, 2, 3]})
    result = training_window(text, strategy="recent", time_column="t", window="20h")
    assert result.frame["v"].tolist() == [2, 3]
    assert result.now == pd.Timestamp("2026-03-01T23:00:00")  # UTC, naive


def test_to_dict_is_json():
    result = training_window(stream(), strategy="weighted", time_column="t", half_life="1d")
    record = json.loads(json.dumps(result.to_dict()))
    assert record["strategy"] == "weighted" and record["half_life"] == "1 days 00:00:00"
    assert record["weight_max"] == 1.0 and 0 < record["weight_min"] < 1e-3
    assert 0 < record["effective_rows"] < 400


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field, rule", [
    ({"time_column": "when"}, "time_column", "must be a column"),
    ({"time_column": "x"}, "time_column", "must hold dates or times"),
    ({"time_column": "t", "strategy": "latest"}, "strategy", "must be one of"),
    ({"time_column": "t", "strategy": "recent"}, "window", "needs a window"),
    ({"time_column": "t", "strategy": "all", "window": "1d"}, "window", "keeps every row"),
    ({"time_column": "t", "strategy": "weighted"}, "half_life", "needs a half_life"),
    ({"time_column": "t", "strategy": "recent", "window": "1d", "half_life": "1d"},
     "half_life", "only strategy 'weighted'"),
    ({"time_column": "t", "strategy": "recent", "window": "-2d"}, "window", "positive"),
    ({"time_column": "t", "strategy": "recent", "window": "soon"}, "window", "a duration"),
    ({"time_column": "t", "strategy": "recent", "window": 0}, "window", "at least 1"),
    ({"time_column": "t", "strategy": "recent", "window": True}, "window", "row count"),
    ({"time_column": "t", "strategy": "recent", "window": "1d", "now": "2030-01-01"},
     "window", "keeps no rows"),
    ({"time_column": "t", "now": "2020-01-01"}, "now", "before every row"),
])
def test_bad_input_names_the_field_and_the_rule(kwargs, field, rule):
    with pytest.raises(InvalidInputError) as caught:
        training_window(stream(n=20), **kwargs)
    assert caught.value.field == field
    assert rule in caught.value.rule


def test_missing_times_are_refused():
    df = pd.DataFrame({"t": [pd.Timestamp("2026-01-01"), pd.NaT], "v": [1, 2]})
    with pytest.raises(InvalidInputError, match="1 missing time"):
        training_window(df, strategy="all", time_column="t")


# -- properties --------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(offsets=st.lists(st.integers(0, 10_000), min_size=1, max_size=60),
       strategy=st.sampled_from(["all", "weighted", "recent"]),
       window=st.one_of(st.none(), st.integers(1, 80), st.integers(1, 12_000)),
       by_count=st.booleans(), half_life=st.integers(1, 5_000))
def test_properties(offsets, strategy, window, by_count, half_life):
    times = START + np.array(offsets, dtype="timedelta64[m]")
    df = pd.DataFrame({"t": times, "i": np.arange(len(offsets))})
    if strategy == "all":
        window = None
    elif strategy == "recent" and window is None:
        window = 30
    window_arg = window if (window is None or by_count) else f"{window}min"
    result = training_window(df, strategy=strategy, time_column="t", window=window_arg,
                             half_life=f"{half_life}min" if strategy == "weighted" else None)

    n = len(offsets)
    assert result.rows_kept + result.rows_dropped == n
    assert result.rows_kept == len(result.frame) == result.sample_weight.size >= 1
    kept = result.frame["t"].to_numpy()
    dropped = df.loc[~df["i"].isin(result.frame["i"]), "t"].to_numpy()
    now = times.max()
    if window is None:
        assert result.rows_dropped == 0
    elif by_count:
        assert result.rows_kept == min(n, window)
        assert dropped.size == 0 or dropped.max() <= kept.min()
    else:
        expected = times >= now - np.timedelta64(window, "m")
        assert np.array_equal(np.sort(kept), np.sort(times[expected]))
    w = result.sample_weight
    assert ((w >= 0) & (w <= 1)).all()  # 0 only where 0.5 ** (age / half_life) underflows
    if strategy == "weighted":
        ages = (now - kept) / np.timedelta64(half_life, "m")
        assert (w[ages < 1000] > 0).all()
    if strategy == "weighted":  # newer rows never weigh less
        order = np.argsort(kept, kind="stable")
        assert (np.diff(w[order]) >= -1e-15).all()
        assert w[kept == now].min() == 1.0
    else:
        assert (w == 1).all()
    assert list(result.frame["i"]) == sorted(result.frame["i"])  # input order kept
