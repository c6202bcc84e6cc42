"""evaluate(): bootstrap intervals, baselines, comparison, round trips, rendering and errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from prodml.errors import InvalidInputError
from prodml.evaluation import EvaluationComparison, EvaluationResult, evaluate


def make(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame({"y": y, "p": np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1),
                         "city": rng.choice(["a", "b", "c"], n),
                         "old_p": np.clip(y * 0.1 + rng.random(n) * 0.9, 0, 1)})


@pytest.fixture(scope="module")
def result() -> EvaluationResult:
    df = make(3000)
    return evaluate("p", df, label="y", slices=["city", {"north": "city = 'a'"}],
                    protected="city", critical={"vip": "city = 'c'"},
                    baselines={"old": "old_p", "human": 0.8, "panel": {"city=a": 0.75}},
                    bootstrap=100)


def test_intervals_contain_estimates_and_shrink_with_n() -> None:
    widths = []
    for n in (400, 6400):
        r = evaluate("p", make(n, seed=n), label="y", bootstrap=200)
        for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc",
                       "log_loss"):
            lo, hi = r.overall.intervals[metric]
            assert lo <= r.metric(metric) <= hi, (n, metric)
        widths.append({m: hi - lo for m, (lo, hi) in r.overall.intervals.items()})
    assert all(widths[1][m] < widths[0][m] / 2 for m in widths[0])  # ~1/sqrt(16)


def test_capped_row_bootstrap_on_large_slice() -> None:
    # 30,000 rows: above the cap, the m-out-of-n bootstrap with sqrt(m/n) shrinkage
    r = evaluate("p", make(30_000, 4), label="y", bootstrap=100, slices="city")
    for s in (r.overall, *r.slices):
        lo, hi = s.intervals["roc_auc"]
        assert lo <= s.metrics["roc_auc"] <= hi and hi - lo < 0.03


def test_regression_intervals_and_seed() -> None:
    rng = np.random.default_rng(9)
    df = pd.DataFrame({"t": rng.normal(size=500)})
    pred = df.t.to_numpy() + rng.normal(0, .3, 500)
    a = evaluate(pred, df, label="t", bootstrap=100, seed=3)
    b = evaluate(pred, df, label="t", bootstrap=100, seed=3)
    assert a.overall.intervals == b.overall.intervals
    for m in ("mae", "rmse", "r2"):
        lo, hi = a.overall.intervals[m]
        assert lo <= a.metric(m) <= hi
    assert evaluate(pred, df, label="t", bootstrap=0).overall.intervals == {}


def test_baselines(result: EvaluationResult) -> None:
    old = result.baselines["old"]
    assert isinstance(old, EvaluationResult)
    assert [s.name for s in old.slices] == [s.name for s in result.slices]
    direct = evaluate("old_p", make(3000), label="y", slices="city", bootstrap=0)
    assert result.baseline("old", "city=b", "roc_auc") == direct.metric("roc_auc", "city=b")
    assert result.baseline("human") == 0.8 and result.baseline("human", "city=a") is None
    assert result.baseline("human", metric="f1") is None
    assert result.baseline("panel", "city=a") == 0.75
    with pytest.raises(InvalidInputError, match="has: old, human, panel"):
        result.baseline("nobody")
    with pytest.raises(InvalidInputError) as err:
        evaluate("p", make(100), label="y", baselines={"hlp": {"city=zz": 0.9}})
    assert err.value.field == "baselines['hlp']"


def test_compare(result: EvaluationResult) -> None:
    diff = result.compare(result.baselines["old"])
    assert isinstance(diff, EvaluationComparison)
    assert diff.delta("roc_auc") == pytest.approx(result.metric("roc_auc")
                                                  - result.baseline("old", metric="roc_auc"))
    assert diff.delta("accuracy", "city=c") > 0
    assert "roc_auc" in str(diff) and diff.to_dict()["rows"][0]["slice"] == "overall"


def test_round_trip_and_lookup(result: EvaluationResult) -> None:
    again = EvaluationResult.from_json(result.to_json())
    assert again.to_dict() == result.to_dict()
    assert json.loads(result.to_json())["fairness"]["city"]["reference"]
    assert again.confusion == result.confusion
    assert again.slice("critical:vip").count == result.slice("critical:vip").count
    assert result.slice("north").count == result.slice("city=a").count
    with pytest.raises(InvalidInputError, match="city=a, city=b"):
        result.slice("city=q")
    with pytest.raises(InvalidInputError) as err:
        result.metric("mae")
    assert err.value.field == "metric"


def test_summary_and_html(result: EvaluationResult) -> None:
    text = result.summary()
    assert "city=b" in text and "critical:vip" in text and "Fairness by city" in text
    page = result.to_html()
    assert page.count("<script src") == 0 and page.count('id="chart-specs"') == 1
    assert page.count("Plotly.newPlot") == 1  # plotly inlined once, drawn lazily
    assert 'data-chart="confusion"' in page and "Fairness" in page and "Baselines" in page


def test_accepts_frames_paths_and_arrays(tmp_path) -> None:
    df = make(200)
    expected = evaluate("p", df, label="y", bootstrap=0).metric("roc_auc")
    path = tmp_path / "d.parquet"
    df.to_parquet(path)
    for data in (pl.from_pandas(df), pa.Table.from_pandas(df), path, str(path)):
        assert evaluate("p", data, label="y", bootstrap=0).metric("roc_auc") == expected
    for preds in (df.p, pl.Series(df.p.to_numpy()), df.p.to_list(),
                  np.column_stack([1 - df.p, df.p])):
        assert evaluate(preds, df, label="y", bootstrap=0).metric("roc_auc") == expected


@pytest.mark.parametrize("kwargs, field, fragment", [
    (dict(label="target"), "label", "no such column"),
    (dict(predictions=np.zeros(5)), "predictions", "one prediction per row"),
    (dict(predictions=np.full(200, 1.5)), "predictions", "in [0, 1]"),
    (dict(predictions="nope"), "predictions", "no such column"),
    (dict(predictions="y"), "predictions", "label column itself"),
    (dict(slices=["city", "missing"]), "slices", "no such column"),
    (dict(protected="missing"), "protected", "no such column"),
    (dict(bootstrap=-1), "bootstrap", ">= 0"),
    (dict(ci=1.5), "ci", "(0, 1)"),
    (dict(task="ranking"), "task", "classification"),
    (dict(positive_label=7), "positive_label", "not a class"),
    (dict(label="city", predictions=np.full((200, 2), .5)), "predictions", "pass classes="),
])
def test_bad_input_names_field_and_rule(kwargs, field, fragment) -> None:
    df = make(200)
    preds = kwargs.pop("predictions", "p")
    label = kwargs.pop("label", "y")
    with pytest.raises(InvalidInputError) as err:
        evaluate(preds, df, label=label, **kwargs)
    assert err.value.field == field and fragment in str(err.value), str(err.value)


def test_missing_labels_and_type_mismatch() -> None:
    df = pd.DataFrame({"y": [1.0, None, 0.0, 1.0]})
    with pytest.raises(InvalidInputError, match="every row needs a label"):
        evaluate(np.array([.1, .2, .3, .4]), df, label="y")
    with pytest.raises(InvalidInputError, match="label's type"):
        evaluate(np.array(["a", "b", "a", "b"]), pd.DataFrame({"y": [0, 1, 0, 1]}), label="y")


def test_gates_read_the_result(result: EvaluationResult) -> None:
    from prodml.evaluation.gates import gate
    blessing = gate(result, {"conditions": [
        {"metric": "roc_auc", "min": 0.5},
        {"metric": "accuracy", "slices": "city", "min": 0.5},
        {"attribute": "city", "metric": "demographic_parity_ratio", "min": 0.5},
        {"metric": "roc_auc", "change": {"baseline": "old", "min_absolute": 0.0}}]},
        baselines={"old": result.baselines["old"]})
    assert blessing.blessed, blessing.summary()
