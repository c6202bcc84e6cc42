"""Slices: values, crosses, bins, predicates and expressions, with counts checked; critical
subsets; clear errors for specs that do not fit the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn import metrics as skm

from prodml.errors import InvalidInputError
from prodml.evaluation import evaluate
from prodml.evaluation.slices import families


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 2000
    df = pd.DataFrame({"y": rng.integers(0, 2, n), "age": rng.integers(18, 95, n).astype(float),
                       "gender": rng.choice(["f", "m"], n), "zip": rng.integers(1, 4, n),
                       "vip": rng.random(n) < 0.1, "cost": rng.random(n) * 10})
    df.loc[:9, "age"] = np.nan  # missing ages form their own slice
    df["p"] = np.clip(df.y * 0.4 + rng.random(n) * 0.6, 0, 1)
    return df


def counts(result, feature: str) -> dict[str, int]:
    return {s.value: s.count for s in result.slices if s.feature == feature}


def test_values_crosses_and_shares(data: pd.DataFrame) -> None:
    r = evaluate("p", data, label="y", slices=["gender", ("gender", "zip")], bootstrap=0)
    assert counts(r, "gender") == data.gender.value_counts().to_dict()
    expected = data.groupby(["gender", "zip"]).size()
    assert counts(r, "gender x zip") == {f"{g} & {z}": int(c) for (g, z), c in expected.items()}
    s = r.slice("gender=f & zip=2")
    assert s.feature == "gender x zip" and s.value == "f & 2"
    assert s.share == pytest.approx(s.count / len(data))


def test_numeric_bins_quantiles_and_missing(data: pd.DataFrame) -> None:
    r = evaluate("p", data, label="y", bootstrap=0,
                 slices=[("age", [30, 50, 70]), ("zip", 2)])
    age = data.age
    assert counts(r, "age") == {"<30": int((age < 30).sum()),
                                "30-50": int(((age >= 30) & (age < 50)).sum()),
                                "50-70": int(((age >= 50) & (age <= 70)).sum()),
                                ">70": int((age > 70).sum()), "null": 10}
    quant = counts(r, "zip")
    assert sum(quant.values()) == len(data) and len(quant) == 2
    y, p = data.y.to_numpy(), data.p.to_numpy()
    m = ((age >= 30) & (age < 50)).to_numpy()
    assert r.metric("roc_auc", "age=30-50") == pytest.approx(skm.roc_auc_score(y[m], p[m]),
                                                             abs=1e-12)


def test_predicates_callables_expressions_and_masks(data: pd.DataFrame) -> None:
    seniors = (data.age > 60).to_numpy()
    r = evaluate("p", data, label="y", bootstrap=0, slices=[
        {"polars_fn": lambda df: df["age"] > 60,
         "pandas_fn": lambda df: df.age.gt(60),  # attribute access: pandas only
         "expr": pl.col("age") > 60,
         "sql": "age > 60",
         "mask": seniors,
         "vip": "vip"},
        "gender = 'f' AND zip = 1"])
    for name in ("polars_fn", "pandas_fn", "expr", "sql", "mask"):
        s = r.slice(name)
        assert s.count == seniors.sum() and s.feature == name and s.value is None
    assert r.slice("vip").count == data.vip.sum()
    assert r.slice("gender = 'f' AND zip = 1").count == ((data.gender == "f")
                                                          & (data.zip == 1)).sum()


def test_small_slices_flagged(data: pd.DataFrame) -> None:
    r = evaluate("p", data, label="y", slices=[{"tiny": "age > 93"}], min_slice_size=50,
                 bootstrap=0)
    tiny = r.slice("tiny")
    assert tiny.count < 50 and tiny.small
    assert not r.overall.small


def test_critical_subsets_with_weights(data: pd.DataFrame) -> None:
    r = evaluate("p", data, label="y", bootstrap=0,
                 critical={"vip": {"where": "vip", "weights": "cost"}, "old": "age > 80"})
    vip = r.slice("critical:vip")
    m = data.vip.to_numpy()
    y, pred = data.y.to_numpy()[m], (data.p.to_numpy()[m] >= 0.5).astype(int)
    w = data.cost.to_numpy()[m]
    assert vip.count == m.sum() and vip.feature == "critical" and vip.value == "vip"
    assert vip.metrics["weighted_accuracy"] == pytest.approx(skm.accuracy_score(y, pred,
                                                                                 sample_weight=w))
    assert vip.metrics["error_cost"] == pytest.approx(float(w[y != pred].sum()))
    assert vip.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert "weighted_accuracy" not in r.slice("critical:old").metrics
    assert [c.name for c in r.critical] == ["critical:vip", "critical:old"]


@pytest.mark.parametrize("slices, field, fragment", [
    ("nope", "slices", "no such column"),
    (("gender", "nope"), "slices", "no such column"),
    (("age", [50, 30]), "slices", "strictly increasing"),
    (("gender", [0, 30]), "slices", "numeric column"),
    ({"bad": lambda df: df["age"].head(3) > 0}, "slices['bad']", "one boolean per row"),
    ({"boom": lambda df: df["missing"] > 1}, "slices['boom']", "predicate raised"),
    (["gender", "gender"], "slices", "given twice"),
    ("cost", "slices", "at most 1000"),
])
def test_bad_specs_name_field_and_rule(data: pd.DataFrame, slices, field, fragment) -> None:
    with pytest.raises(InvalidInputError) as err:
        evaluate("p", data, label="y", slices=slices, bootstrap=0)
    assert err.value.field == field and fragment in str(err.value)


def test_families_on_polars_directly() -> None:
    df = pl.DataFrame({"flag": [True, False, None, True], "when": pl.Series(
        ["2024-01-02", "2024-01-01", "2024-01-02", None]).str.to_date()})
    flag, when = families(df, ["flag", "when"])
    assert flag.names == ("flag=False", "flag=True", "flag=null")
    assert flag.codes.tolist() == [1, 0, 2, 1]
    assert when.values == ("2024-01-01", "2024-01-02", "null")
    assert when.codes.tolist() == [1, 0, 1, 2]
