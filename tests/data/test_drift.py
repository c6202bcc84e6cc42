"""Drift: scores equal SciPy's on the same data, Evidently's default choice, profiles, report,
HTML page, skew by key, domain classifier and the CLI's exit codes."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance
from typer.testing import CliRunner

from prodml.data.drift import DriftReport, domain_classifier, drift, skew_by_key
from prodml.data.drift_methods import PSI_EPS, psi_value, sturges_edges, wasserstein_sorted
from prodml.data.profile import profile
from prodml.errors import InvalidInputError


def close(a, b, rel=1e-12):
    return a == pytest.approx(b, rel=rel, abs=1e-300)


@pytest.fixture(scope="module")
def shifted():
    """8 000 rows a side; x0, x1 and 'city' shift, the rest do not (seeded)."""
    rng = np.random.default_rng(7)
    n = 8000

    def frame(moved: bool) -> pd.DataFrame:
        cols = {f"x{i}": rng.normal(0.6 if moved and i < 2 else 0.0, 1.0, n) for i in range(6)}
        cols["city"] = rng.choice(["paris", "rome", "oslo"], n,
                                  p=[0.2, 0.3, 0.5] if moved else [0.5, 0.3, 0.2])
        cols["plan"] = rng.choice(["free", "pro"], n, p=[0.7, 0.3])
        cols["y"] = rng.integers(0, 2, n)
        return pd.DataFrame(cols)

    return frame(False), frame(True)


# -- scores equal SciPy's ------------------------------------------------------------------------
def test_ks_equals_scipy_ks_2samp():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 900), rng.normal(0.1, 1.2, 700)
    report = drift(pd.DataFrame({"x": a}), pd.DataFrame({"x": b}))
    expected = stats.ks_2samp(a, b)
    assert report["x"].method == "ks"  # reference <= 1000 values, numeric
    assert close(report["x"].score, expected.pvalue)
    assert close(report["x"].statistic, expected.statistic)
    big = drift(pd.DataFrame({"x": rng.normal(size=20_000)}),
                pd.DataFrame({"x": rng.normal(size=15_000)}), methods={"x": "ks"})
    assert big["x"].method == "ks" and big["x"].threshold == 0.05


def test_wasserstein_equals_scipy_including_ties_and_unequal_sizes():
    rng = np.random.default_rng(1)
    for a, b in [(rng.normal(0, 1, 5000), rng.normal(0.3, 2, 3001)),
                 (np.round(rng.normal(0, 1, 4000), 1), np.round(rng.normal(0, 1, 4500), 1)),
                 (rng.integers(0, 50, 3000).astype(float), rng.integers(0, 60, 2000) * 1.0)]:
        assert close(wasserstein_sorted(np.sort(a), np.sort(b)), stats.wasserstein_distance(a, b))
        got = drift(pd.DataFrame({"x": a}), pd.DataFrame({"x": b}))["x"]
        assert got.method == "wasserstein"  # > 1000 reference values, > 5 distinct
        assert close(got.score, stats.wasserstein_distance(a, b) / np.std(a))
        assert close(got.statistic, stats.wasserstein_distance(a, b))


def test_chisquare_and_contingency_equal_scipy():
    rng = np.random.default_rng(2)
    ref = rng.choice(list("abcd"), 800, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(list("abcde"), 650, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    report = drift(pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur}))
    keys = sorted(set(ref) | set(cur))
    r = np.array([np.sum(ref == k) for k in keys], dtype=float)
    c = np.array([np.sum(cur == k) for k in keys], dtype=float)
    assert report["c"].method == "chisquare"  # reference <= 1000, > 2 values
    with np.errstate(divide="ignore"):  # 'e' is new: expected 0, as in Evidently
        expected = stats.chisquare(c, r * c.sum() / r.sum())
    assert report["c"].score == expected.pvalue and report["c"].drifted
    same = rng.choice(list("abcd"), 900, p=[0.4, 0.3, 0.2, 0.1])
    report = drift(pd.DataFrame({"c": ref}), pd.DataFrame({"c": same}),
                   methods={"c": "chi2_contingency"})
    table = np.array([[np.sum(ref == k) for k in "abcd"], [np.sum(same == k) for k in "abcd"]])
    assert close(report["c"].score, stats.chi2_contingency(table).pvalue)
    assert close(report["c"].statistic, stats.chi2_contingency(table).statistic)
    plain = drift(pd.DataFrame({"c": ref}), pd.DataFrame({"c": same}))["c"]
    expected = stats.chisquare(table[1], table[0] * table[1].sum() / table[0].sum())
    assert close(plain.score, expected.pvalue) and close(plain.statistic, expected.statistic)


def test_jensenshannon_equals_scipy_with_evidently_binning():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 5000), rng.normal(0.2, 1, 4000)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    assert np.array_equal(sturges_edges(min(a.min(), b.min()), max(a.max(), b.max()), 9000),
                          edges)
    p, q = np.histogram(a, edges)[0] / a.size, np.histogram(b, edges)[0] / b.size
    got = drift(pd.DataFrame({"x": a}), pd.DataFrame({"x": b}), methods={"x": "jensenshannon"})
    assert close(got["x"].score, distance.jensenshannon(p, q))
    ref = rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c"], 2000, p=[0.3, 0.3, 0.4])
    got = drift(pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur}))["c"]
    shares = [[np.mean(x == k) for k in "abc"] for x in (ref, cur)]
    assert got.method == "jensenshannon" and close(got.score, distance.jensenshannon(*shares))


def test_psi_equals_a_hand_computation():
    ref, cur = np.arange(1000.0), np.arange(1000.0) + 100  # reference deciles at 99.9 k
    got = drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), methods={"x": "psi"})["x"]
    # bins (-inf, 99.9], ..., (899.1, inf): reference 10 % each; current 0 %, 8 x 10 %, 20 %
    hand = (0.1 - PSI_EPS) * math.log(0.1 / PSI_EPS) + (0.1 - 0.2) * math.log(0.1 / 0.2)
    assert close(got.score, hand) and got.drifted
    cat = drift(pd.DataFrame({"c": list("aaaaabbbcc")}), pd.DataFrame({"c": list("aaabbbcccc")}),
                methods={"c": ("psi", 0.2)})["c"]
    hand = (0.5 - 0.3) * math.log(0.5 / 0.3) + (0.2 - 0.4) * math.log(0.2 / 0.4)
    assert close(cat.score, hand) and cat.threshold == 0.2 and cat.drifted
    assert close(psi_value(np.array([0.5, 0.5]), np.array([1.0, 0.0])),
                 (0.5 - 1) * math.log(0.5) + (0.5 - PSI_EPS) * math.log(0.5 / PSI_EPS))


def test_z_test_l_infinity_anderson_cramer_von_mises():
    ref = np.array(["no"] * 600 + ["yes"] * 400)
    cur = np.array(["no"] * 500 + ["yes"] * 500)
    got = drift(pd.DataFrame({"b": ref}), pd.DataFrame({"b": cur}))["b"]
    p1, p2, pooled = 0.4, 0.5, 0.45
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 1000))
    assert got.method == "z" and close(got.statistic, z)
    assert close(got.score, 2 * stats.norm.sf(abs(z))) and got.drifted
    cur = np.array(["no"] * 450 + ["yes"] * 550)
    linf = drift(pd.DataFrame({"b": ref}), pd.DataFrame({"b": cur}), methods={"b": "l_infinity"})
    assert close(linf["b"].score, 0.15) and linf["b"].drifted and linf["b"].threshold == 0.1
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 600), rng.normal(0.2, 1, 500)
    both = drift(pd.DataFrame({"x": a, "y": a}), pd.DataFrame({"x": b, "y": b}),
                 methods={"x": "anderson", "y": "cramer_von_mises"})
    with pytest.warns(UserWarning):
        assert close(both["x"].statistic, stats.anderson_ksamp([a, b]).statistic)
    assert close(both["y"].score, stats.cramervonmises_2samp(a, b).pvalue)


# -- Evidently's default choice ------------------------------------------------------------------
@pytest.mark.parametrize("rows, values, kind, expected", [
    (1000, "many", "numeric", "ks"), (1001, "many", "numeric", "wasserstein"),
    (500, 4, "numeric", "chisquare"), (500, 2, "numeric", "z"),
    (5000, 5, "numeric", "jensenshannon"), (5000, 6, "numeric", "wasserstein"),
    (800, 3, "categorical", "chisquare"), (800, 2, "categorical", "z"),
    (5000, 2, "categorical", "jensenshannon"), (5000, 40, "categorical", "jensenshannon"),
])
def test_default_method_follows_evidently(rows, values, kind, expected):
    rng = np.random.default_rng(5)

    def column(n):
        x = rng.normal(size=n) if values == "many" else rng.integers(0, values, n)
        return x if kind == "numeric" else np.array([f"v{int(v)}" for v in x])

    ref = pd.DataFrame({"x": pd.Series(column(rows)).astype(object if kind != "numeric"
                                                             else float)})
    ref.loc[len(ref)] = None  # nulls do not count towards the 1000 values
    assert drift(ref, pd.DataFrame({"x": column(700)}))["x"].method == expected


# -- verdicts ----------------------------------------------------------------------------------
def test_shifted_columns_drift_and_unshifted_do_not(shifted):
    ref, cur = shifted
    report = drift(ref, cur, label="y")
    assert sorted(report.drifted_columns) == ["city", "x0", "x1"]
    assert report.share_drifted == pytest.approx(3 / 8) and not report.dataset_drift
    assert drift(ref, cur, drift_share=0.3, label="y").dataset_drift
    assert report.label is not None and report.label.role == "label" and not report.label.drifted
    assert "y" not in [c.name for c in report.columns]
    assert "prior shift" in report.summary() and report.to_dict()["prior_shift"]["name"] == "y"
    both = drift(ref, cur, prediction="x0", label="y")
    assert both.prediction.drifted and "x0" not in both.drifted_columns
    assert both.to_dict()["prediction_drift"]["name"] == "x0"


def test_report_is_frozen_json_ready_and_named_by_kind(shifted):
    ref, cur = shifted
    report = drift(ref, cur, columns=["x0", "x5", "city"], kind="skew")
    assert isinstance(report, DriftReport) and report.title == "Training-serving skew"
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.kind = "drift"  # type: ignore[misc]
    data = json.loads(orjson.dumps(report.to_dict()))
    assert data["kind"] == "skew" and data["drifted_columns"] == ["x0", "city"]
    assert {c["name"] for c in data["columns"]} == {"x0", "x5", "city"}
    text = report.summary()
    assert text.splitlines()[0].startswith("Training-serving skew: ")
    assert text.index("x0") < text.index("x5")  # most drifted first
    assert "training" in report.to_html() and "serving" in report.to_html()


def test_from_profiles_estimates_are_close_to_exact():
    rng = np.random.default_rng(6)
    n = 200_000
    ref = pa.table({"x": rng.normal(0, 1, n), "g": rng.gamma(2, 1, n),
                    "c": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])})
    cur = pa.table({"x": rng.normal(0.15, 1, n), "g": rng.gamma(2.4, 1, n),
                    "c": rng.choice(["a", "b", "c", "d"], n, p=[0.3, 0.3, 0.2, 0.2])})
    pr, pc_ = profile(ref, seed=1), profile(cur, seed=2)
    # KLL sketches draw their own random numbers: tolerances are ~4 times the errors' RMS
    for method, tol in (("wasserstein", 0.05), ("jensenshannon", 0.03), ("psi", 0.03)):
        chosen = {"x": method, "g": method}
        exact, estimate = drift(ref, cur, methods=chosen), drift(pr, pc_, methods=chosen)
        assert estimate.from_profiles and not exact.from_profiles
        for name in ("x", "g"):
            assert abs(estimate[name].score - exact[name].score) < tol, (method, name)
            assert "KLL" in estimate[name].note and "from profiles" in estimate[name].note
    exact, estimate = drift(ref, cur, methods={"x": "ks"}), drift(pr, cur, methods={"x": "ks"})
    assert abs(estimate["x"].statistic - exact["x"].statistic) < 0.03
    assert "uniform samples" in estimate["x"].note and estimate.from_profiles
    assert close(estimate["c"].score, exact["c"].score)  # frequencies are exact here
    assert [c.drifted for c in estimate.columns] == [c.drifted for c in exact.columns]


def test_a_profile_against_data_keeps_the_data_side_exact():
    """A training profile against a window of data (what a monitor does): the window is
    not sketched, so only the reference's side is estimated, and the error is smaller than
    profile against profile."""
    rng = np.random.default_rng(11)
    n = 200_000
    ref = pa.table({"x": rng.normal(0, 1, n), "g": rng.gamma(2, 1, n)})
    cur = pa.table({"x": rng.normal(0.15, 1, 50_000), "g": rng.gamma(2.4, 1, 50_000)})
    pr = profile(ref, seed=1)
    for method, tol in (("wasserstein", 0.03), ("jensenshannon", 0.02), ("psi", 0.02)):
        chosen = {"x": method, "g": method}
        exact, mixed = drift(ref, cur, methods=chosen), drift(pr, cur, methods=chosen)
        assert mixed.from_profiles and mixed.current_rows == 50_000
        for name in ("x", "g"):
            assert abs(mixed[name].score - exact[name].score) < tol, (method, name)
    # K-S: the reference's uniform sample against every current value, still SciPy's test
    mixed = drift(pr, cur, methods={"x": "ks"})
    sample = np.sort(np.asarray(pr["x"].sample_values, dtype=np.float64))
    assert close(mixed["x"].statistic, stats.ks_2samp(sample, cur.column("x").to_numpy()
                                                      ).statistic, rel=1e-12)
    # the current side's summary is the data's own, not a sketch's
    values = cur.column("g").to_numpy()
    summary = mixed["g"].current
    assert close(summary["mean"], values.mean(), rel=1e-12)
    assert close(summary["median"], np.median(values), rel=1e-12)


def test_small_profiles_hold_every_value_so_results_are_exact():
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000), "c": rng.choice(["a", "b", "c"], 3000)})
    cur = pd.DataFrame({"x": rng.normal(0.1, 1, 2500), "c": rng.choice(["a", "b", "c"], 2500)})
    exact, estimate = drift(ref, cur), drift(profile(ref), profile(cur))
    for name in ("x", "c"):
        assert close(estimate[name].score, exact[name].score, rel=1e-9)
    assert "exact" in estimate["x"].note


# -- bad input: clear errors, never a traceback ----------------------------------------------
def test_mismatched_columns_and_bad_options_are_clear_errors():
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    cur = pd.DataFrame({"a": [1.0, 2.0, 4.0], "c": ["x", "y", "z"]})
    with pytest.raises(InvalidInputError, match="only in reference: b; only in current: c"):
        drift(ref, cur)
    assert drift(ref, cur, columns=["a"]).columns[0].name == "a"
    with pytest.raises(InvalidInputError, match="not a column of the current"):
        drift(ref, cur, columns=["a", "b"])
    with pytest.raises(InvalidInputError, match="must be one of"):
        drift(ref, cur, columns=["a"], methods={"a": "tvd"})
    with pytest.raises(InvalidInputError, match="applies to numeric columns"):
        drift(ref, ref, methods={"b": "wasserstein"})
    with pytest.raises(InvalidInputError, match="names no compared column"):
        drift(ref, ref, methods={"zzz": "psi"})
    with pytest.raises(InvalidInputError, match="label"):
        drift(ref, ref, label="target")
    with pytest.raises(InvalidInputError, match="drift_share"):
        drift(ref, ref, drift_share=0)


def test_type_changes_drift_and_empty_columns_are_skipped_with_a_reason():
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, None, 2.0], "c": ["x", "y", "x"]})
    cur = pd.DataFrame({"a": ["1", "2", "3"], "b": [None, None, None], "c": ["x", "y", "y"]})
    report = drift(ref, cur)
    assert report["a"].drifted and report["a"].method == "type" and "type changed" in \
        report["a"].note
    assert report.skipped == {"b": "no non-null values in the current data"}
    assert "skipped b" in report.summary() and "Not compared" in report.to_html()


# -- HTML -----------------------------------------------------------------------------------------
def test_html_is_self_contained_with_plotly_once_and_small_per_column():
    from prodml.reports.html import plotly_js

    rng = np.random.default_rng(9)
    cols = {f"n{i}": rng.normal(i % 3 * 0.2, 1, 1500) for i in range(190)}
    cols.update({f"c{i}": rng.choice(["a", "b", "<script>"], 1500) for i in range(10)})
    ref = pa.table(cols)
    cur = pa.table({k: (v + 0.3 if k.startswith("n") and int(k[1:]) % 2 else v)
                    for k, v in cols.items()})
    page = drift(ref, cur).to_html()
    assert not re.search(r"<script[^>]+src=[\"']?https?://", page, re.I)
    assert "<script src" not in page
    assert page.count(plotly_js()) == 1 and page.count("<!DOCTYPE html>") == 1
    assert page.count('class="chart" data-chart=') == 200  # one lazily drawn chart per column
    assert "IntersectionObserver" in page
    assert "<script>\"" not in page and "&lt;script&gt;" in page  # values are escaped
    assert len(page) - len(plotly_js()) < 600_000  # ~3 KB per column besides plotly.js


# -- skew by key ----------------------------------------------------------------------------------
def test_skew_by_key_counts_differing_values_per_entity():
    ids = np.arange(100)
    train = pl.DataFrame({"id": ids, "amount": ids * 1.5, "city": ["a"] * 100,
                          "note": [None] * 100})
    serve = train.with_columns(
        pl.when(pl.col("id") < 10).then(pl.col("amount") + 1).otherwise(pl.col("amount"))
        .alias("amount"),
        pl.when(pl.col("id") % 20 == 0).then(pl.lit("b")).otherwise(pl.col("city"))
        .alias("city"))
    serve = pl.concat([serve.filter(pl.col("id") >= 3),
                       pl.DataFrame({"id": [1000, 1001], "amount": [1.0, 2.0],
                                     "city": ["a", "a"], "note": [None, None]},
                                    schema=serve.schema)])
    report = skew_by_key(train, serve, key="id")
    assert (report.matched, report.training_only, report.serving_only) == (97, 3, 2)
    assert report.features["amount"] == pytest.approx(7 / 97)  # ids 3..9
    assert report.features["city"] == pytest.approx(4 / 97)  # ids 20, 40, 60, 80
    assert report.features["note"] == 0.0  # null on both sides is equal
    assert report.skewed_features == ["amount", "city"]
    assert report.entities_differing == pytest.approx(11 / 97)
    worst = report.entities.sort("share", descending=True).row(0, named=True)
    assert worst["differing"] in (1, 2) and 0 < worst["share"] <= 2 / 3
    assert report.to_dict()["top_entities"] and "amount" in report.summary()
    with pytest.raises(InvalidInputError, match="must be unique"):
        skew_by_key(pl.concat([train, train.head(2)]), serve, key="id")
    with pytest.raises(InvalidInputError, match="key"):
        skew_by_key(train, serve, key="user")


# -- multivariate --------------------------------------------------------------------------------
def test_domain_classifier_tells_shifted_windows_apart_and_names_the_feature():
    rng = np.random.default_rng(10)
    n = 1500

    def frame(shift):
        return pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(shift, 1, n),
                             "c": rng.choice(["x", "y", "z"], n), "d": rng.normal(0, 1, n)})

    moved = domain_classifier(frame(0.0), frame(1.0), max_rows=1200, folds=3)
    assert moved.drifted and moved.auc > 0.7 and moved.top_features[0][0] == "b"
    assert moved.reference_rows == moved.current_rows == 1200
    still = domain_classifier(frame(0.0), frame(0.0), folds=3)
    assert not still.drifted and still.auc < 0.56
    assert "domain classifier" in still.summary() and still.to_dict()["drifted"] is False
    with pytest.raises(InvalidInputError, match="needs rows"):
        domain_classifier(profile(frame(0.0)), frame(0.0))


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_exit_codes_json_html_and_profiles(tmp_path, shifted):
    from prodml.cli.drift import app

    ref, cur = shifted
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    ref.iloc[:4000].to_parquet(tmp_path / "ref2.parquet")
    (tmp_path / "ref.profile").write_bytes(profile(ref).to_bytes())
    run = CliRunner().invoke
    paths = [str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet")]
    same = [str(tmp_path / "ref.parquet"), str(tmp_path / "ref2.parquet")]
    assert run(app, [*paths, "--fail-on-drift", "--drift-share", "0.3"]).exit_code == 1
    assert run(app, [*paths, "--drift-share", "0.3"]).exit_code == 0  # no flag: 0
    assert run(app, [*same, "--fail-on-drift"]).exit_code == 0  # no drift
    done = run(app, [*paths, "--json", "--label", "y", "--html", str(tmp_path / "r.html"),
                     "--column-method", "x2=psi:0.3", "--column-method", "city=l_infinity"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    by_name = {c["name"]: c for c in data["columns"]}
    assert by_name["x2"]["method"] == "psi" and by_name["x2"]["threshold"] == 0.3
    assert by_name["city"]["method"] == "l_infinity" and data["prior_shift"]["name"] == "y"
    assert (tmp_path / "r.html").read_text().count("<!DOCTYPE html>") == 1
    table = run(app, [str(tmp_path / "ref.profile"), paths[1], "--columns", "x0,x3"])
    assert table.exit_code == 0 and "x0" in table.stdout and "profiles" in table.stdout
    bad = run(app, [*paths, "--column-method", "x2"])
    assert bad.exit_code != 0 and isinstance(bad.exception, InvalidInputError)
    missing = run(app, [paths[0], str(tmp_path / "nope.csv")])
    assert isinstance(missing.exception, InvalidInputError)
