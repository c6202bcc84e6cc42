"""Agreement statistics against published values and the standard implementations."""

from __future__ import annotations

import itertools
import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

import prodml as pm
from prodml.data.labels import agreement, as_annotations
from tests.data.labels.simulated import DIAGNOSES, RELIABILITY, crew, long_form


def test_fleiss_kappa_on_fleiss_1971_diagnoses_is_the_published_0_430():
    report = agreement(long_form(DIAGNOSES))
    assert round(report.fleiss_kappa, 4) == 0.4302
    assert report.fleiss_kappa == pytest.approx(fleiss_kappa(aggregate_raters(DIAGNOSES)[0]),
                                                abs=1e-12)
    assert (report.items, report.annotations, len(report.labelers)) == (30, 180, 6)


def test_krippendorff_alpha_on_krippendorffs_reliability_data_with_missing_values():
    data = long_form(RELIABILITY, raters_in_rows=True)
    assert round(agreement(data).krippendorff_alpha, 3) == 0.743
    assert round(agreement(data, level="interval").krippendorff_alpha, 3) == 0.849
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert agreement(data, level=level).krippendorff_alpha == pytest.approx(
            krippendorff.alpha(RELIABILITY, level_of_measurement=level), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_equals_the_krippendorff_package_on_random_sparse_data(seed, level):
    rng = np.random.default_rng(seed)
    matrix = rng.integers(1, 6, size=(7, 60)).astype(float)  # 7 coders, 60 units, values 1-5
    matrix += (rng.random(matrix.shape) < 0.3) * (np.arange(60) % 3 == 0)  # some structure
    matrix = np.clip(matrix, 1, 5)
    matrix[rng.random(matrix.shape) < 0.4] = np.nan  # 40 % missing
    ours = agreement(long_form(matrix, raters_in_rows=True), level=level)
    assert ours.krippendorff_alpha == pytest.approx(
        krippendorff.alpha(matrix, level_of_measurement=level), abs=1e-10)


def test_fleiss_equals_statsmodels_on_random_complete_data():
    rng = np.random.default_rng(3)
    ratings = rng.integers(0, 4, size=(200, 5))
    ratings[:50] = ratings[:50, :1]  # some agreement
    report = agreement(long_form(ratings))
    assert report.fleiss_kappa == pytest.approx(fleiss_kappa(aggregate_raters(ratings)[0]),
                                                abs=1e-12)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_of_every_pair_equals_scikit_learn(weights):
    frame, _ = crew(items=300, classes=4, seed=5)
    report = agreement(frame, weights=weights)
    wide = frame.pivot(index="item", columns="labeler", values="label")
    assert len(report.pairs) == 10
    for a, b in itertools.combinations(wide.columns, 2):
        both = wide[[a, b]].dropna()
        expected = cohen_kappa_score(both[a], both[b], labels=[0, 1, 2, 3], weights=weights)
        assert report.cohen(a, b) == pytest.approx(expected, abs=1e-12)
        pair = next(p for p in report.pairs if {p.a, p.b} == {a, b})
        assert pair.items == len(both)
        assert pair.observed == pytest.approx((both[a] == both[b]).mean())


def test_default_weights_follow_the_level():
    frame, _ = crew(items=100, classes=3)
    assert agreement(frame).weights is None
    assert agreement(frame, level="ordinal").weights == "linear"
    assert agreement(frame, level="interval").weights == "quadratic"


def test_the_careless_labeler_agrees_least_with_the_others():
    frame, _ = crew(items=400, seed=1)
    report = agreement(frame)
    assert report.least_consistent.labeler == "eve"
    eve = next(x for x in report.per_labeler if x.labeler == "eve")
    others = [x for x in report.per_labeler if x.labeler != "eve"]
    assert all(eve.with_consensus < x.with_consensus - 0.2 for x in others)
    assert all(eve.kappa < x.kappa for x in others)


def test_leave_one_out_consensus_gives_partial_credit_on_ties():
    # item 1: a=0, b=0, c=1 -> a and b face a 0/1 tie (1/2 credit), c faces 0,0 (no credit)
    report = agreement({"item": [1, 1, 1, 2, 2, 2], "labeler": list("abc") * 2,
                        "label": [0, 0, 1, 1, 1, 1]})
    by = {x.labeler: x.with_consensus for x in report.per_labeler}
    assert by == {"a": 0.75, "b": 0.75, "c": 0.5}


def test_leave_one_out_credit_matches_a_plain_loop_on_random_data():
    from prodml.data.labels.agreement import leave_one_out_credit

    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"item": rng.integers(0, 300, 1500), "labeler": rng.integers(0, 9, 1500),
                          "label": rng.integers(0, 3, 1500)}).drop_duplicates(["item",
                                                                               "labeler"])
    ann = as_annotations(frame)
    credit = leave_one_out_credit(ann)
    for i in range(len(ann)):  # the definition, one label at a time
        others = ann.counts[ann.item_index[i]].copy()
        others[ann.label_index[i]] -= 1
        if others.sum() == 0:
            assert math.isnan(credit[i])
            continue
        winners = np.flatnonzero(others == others.max())
        expected = 1 / len(winners) if ann.label_index[i] in winners else 0.0
        assert credit[i] == pytest.approx(expected)


def test_per_class_specific_agreement_and_kappa():
    # two raters: class 0 agreed 3 times, 0/1 split once; class 1 agreed once
    report = agreement({"item": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], "labeler": ["a", "b"] * 5,
                        "label": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]})
    zero, one = report.per_class
    assert zero.specific_agreement == pytest.approx(6 / 7)  # 2*3 agreeing / (2*3 + 1)
    assert one.specific_agreement == pytest.approx(2 / 3)
    # with two classes both per-class kappas equal the overall Fleiss kappa
    assert zero.kappa == pytest.approx(report.fleiss_kappa)
    assert one.kappa == pytest.approx(report.fleiss_kappa)


def test_per_class_kappa_matches_fleiss_1971_category_kappas():
    report = agreement(long_form(DIAGNOSES))
    # Fleiss (1971) table 2 category kappas (psychiatric diagnoses)
    published = [0.245, 0.245, 0.520, 0.471, 0.566]
    assert [round(c.kappa, 3) for c in report.per_class] == published


def test_confusion_between_labelers_names_the_classes_mixed_up():
    frame = pd.DataFrame({"item": [1, 1, 2, 2, 3, 3, 4, 4], "labeler": ["a", "b"] * 4,
                          "label": ["dent", "scratch", "dent", "scratch", "dent", "dent",
                                    "ok", "ok"]})
    report = agreement(frame)
    assert report.confused() == [("dent", "scratch", 2)]
    assert report.confusion.sum() == 4  # one pair of labels per item


def test_agreement_by_instruction_version_shows_the_new_instruction_helped():
    old, _ = crew(items=200, seed=2, careless=0.6)
    new, _ = crew(items=200, seed=3, careless=0.1)
    old["instruction"], new["instruction"] = "v1", "v2"
    new["item"] += 1000
    old["time"], new["time"] = 1_000, 2_000
    report = agreement(pd.concat([old, new]))
    assert list(report.by_instruction) == ["v1", "v2"]
    v1, v2 = report.by_instruction["v1"], report.by_instruction["v2"]
    assert v1["items"] == v2["items"] == 200
    assert v2["krippendorff_alpha"] > v1["krippendorff_alpha"] + 0.05
    assert v1["krippendorff_alpha"] == pytest.approx(
        agreement(old).krippendorff_alpha, abs=1e-12)


def test_text_labels_and_an_ordinal_order_given_as_classes():
    frame = pd.DataFrame({"item": [1, 1, 2, 2, 3, 3], "labeler": ["a", "b"] * 3,
                          "label": ["low", "mid", "high", "high", "mid", "mid"]})
    order = ["low", "mid", "high"]
    report = agreement(frame, level="ordinal", classes=order)
    assert report.classes == tuple(order)
    coded = frame.assign(label=frame["label"].map({c: i for i, c in enumerate(order)}))
    reliability = coded.pivot(index="labeler", columns="item", values="label").to_numpy(float)
    assert report.krippendorff_alpha == pytest.approx(krippendorff.alpha(
        reliability, level_of_measurement="ordinal"))


def test_bad_input_names_the_field_and_rule():
    frame, _ = crew(items=20)
    with pytest.raises(pm.InvalidInputError, match="level"):
        agreement(frame, level="circular")
    with pytest.raises(pm.InvalidInputError, match="no such column"):
        agreement(frame, label="grade")
    with pytest.raises(pm.InvalidInputError, match="numeric labels"):
        agreement(frame.assign(label=frame["label"].astype(str)), level="interval")
    with pytest.raises(pm.InvalidInputError, match="at least two classes"):
        agreement(frame.assign(label=1))
    with pytest.raises(pm.InvalidInputError, match="not among the classes"):
        agreement(frame, classes=[0, 1])


def test_items_labelled_once_do_not_count_and_no_pairs_gives_nan():
    report = agreement({"item": [1, 2], "labeler": ["a", "b"], "label": [0, 1]})
    assert math.isnan(report.krippendorff_alpha) and math.isnan(report.fleiss_kappa)
    assert report.pairs == () and math.isnan(report.cohen("a", "b"))


def test_report_is_json_ready_and_printable():
    import orjson

    frame, _ = crew(items=50)
    report = agreement(frame.assign(instruction="v1"))
    orjson.dumps(report.to_dict())
    assert "Krippendorff's alpha" in str(report) and "eve" in str(report)
    assert as_annotations(frame).counts.sum() == len(frame)


def test_many_labelers_take_the_sparse_path_with_the_same_kappas():
    rng = np.random.default_rng(11)
    rows = 3000
    frame = pd.DataFrame({"item": rng.integers(0, 600, rows),
                          "labeler": [f"w{i}" for i in rng.integers(0, 900, rows)],
                          "label": rng.integers(0, 4, rows)})
    frame = frame.drop_duplicates(["item", "labeler"])
    report = agreement(frame)  # 900 labelers x 4 classes: too wide for one dense tally
    wide = frame.pivot(index="item", columns="labeler", values="label")
    checked = 0
    for pair in report.pairs:
        both = wide[[pair.a, pair.b]].dropna()
        assert pair.items == len(both)
        if both[pair.a].nunique() > 1 or both[pair.b].nunique() > 1:
            expected = cohen_kappa_score(both[pair.a], both[pair.b], labels=[0, 1, 2, 3])
            assert pair.kappa == pytest.approx(expected, abs=1e-12)
            checked += 1
    assert checked > 50
    assert report.krippendorff_alpha == pytest.approx(krippendorff.alpha(
        wide.T.to_numpy(float), level_of_measurement="nominal"), abs=1e-12)
