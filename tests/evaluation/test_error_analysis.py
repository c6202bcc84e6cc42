"""Error analysis: the course's speech example, tags, slice masks, and bad tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from prodml.errors import InvalidInputError
from prodml.evaluation.baselines import human_level_performance
from prodml.evaluation.error_analysis import error_analysis, slice_masks, tag_examples

SPEECH = [  # the course notes: accuracy, HLP, share of data
    {"tag": "clean speech", "accuracy": 0.94, "hlp": 0.95, "share": 0.60},
    {"tag": "car noise", "accuracy": 0.89, "hlp": 0.93, "share": 0.04},
    {"tag": "people noise", "accuracy": 0.87, "hlp": 0.89, "share": 0.30},
    {"tag": "low bandwidth", "accuracy": 0.70, "hlp": 0.70, "share": 0.06},
]


def test_course_speech_example_ranks_by_gap_times_share():
    analysis = error_analysis(SPEECH, baseline="hlp")
    order = [row.tag for row in analysis.rows]
    assert order.index("people noise") < order.index("car noise")
    assert order.index("clean speech") < order.index("car noise")
    assert order[-1] == "low bandwidth"
    gains = {row.tag: row.gain for row in analysis.rows}
    assert gains["clean speech"] == pytest.approx(0.006)   # 1 % x 60 %
    assert gains["people noise"] == pytest.approx(0.006)   # 2 % x 30 %
    assert gains["car noise"] == pytest.approx(0.0016)     # 4 % x 4 %: biggest gap, least gain
    assert gains["low bandwidth"] == 0.0
    assert analysis["car noise"].gap == pytest.approx(0.04)
    assert {r.tag for r in analysis.top(2)} == {"clean speech", "people noise"}
    assert [r.tag for r in analysis.top(10)] == order[:3]  # nothing to gain: not a priority


def test_speech_table_prints_and_round_trips():
    analysis = error_analysis(pd.DataFrame(SPEECH))
    text = str(analysis)
    assert "clean speech" in text and "0.60%" in text and "0.16%" in text
    lines = text.splitlines()
    assert lines[2].split()[:2] == ["tag", "accuracy"] and "hlp" in lines[2]
    again = error_analysis(analysis.to_dict()["rows"])
    assert again.to_dict() == analysis.to_dict()
    from_polars = error_analysis(pl.DataFrame(SPEECH))
    assert from_polars.to_dict() == analysis.to_dict()


def test_shares_from_counts_and_a_model_that_beats_the_baseline():
    rows = [{"tag": "a", "accuracy": 0.80, "baseline": 0.90, "count": 300},
            {"tag": "b", "accuracy": 0.95, "baseline": 0.90, "count": 100}]
    analysis = error_analysis(rows)
    assert analysis["a"].share == 0.75 and analysis["a"].gain == pytest.approx(0.075)
    assert analysis["b"].gap == pytest.approx(-0.05) and analysis["b"].gain == 0.0
    assert analysis.top() == [analysis["a"]]


def test_lower_is_better_metrics_flip_the_gap():
    rows = [{"tag": "accents", "wer": 0.20, "baseline": 0.12, "share": 0.5}]
    analysis = error_analysis(rows, metric="wer")
    assert analysis["accents"].gap == pytest.approx(0.08)
    assert analysis["accents"].gain == pytest.approx(0.04)


@pytest.mark.parametrize("rows, field, rule", [
    ([{"tag": "a", "accuracy": 94, "hlp": 95, "share": 0.6}], "rows[0].accuracy", "0.94"),
    ([{"tag": "a", "accuracy": 0.9, "share": 0.6}], "rows[0]", "hlp or baseline"),
    ([{"tag": "a", "accuracy": 0.9, "hlp": 0.95}], "rows[0]", "share or a count"),
    ([{"tag": "a", "accuracy": "high", "hlp": 0.9, "share": 0.1}], "rows[0].accuracy",
     "a number"),
    ([], "source", "at least one tag"),
])
def test_bad_tables_name_the_field(rows, field, rule):
    with pytest.raises(InvalidInputError, match=rule) as err:
        error_analysis(rows)
    assert err.value.field == field


def test_not_a_table():
    with pytest.raises(InvalidInputError) as err:
        error_analysis(42)
    assert err.value.field == "source"


# -- tags -----------------------------------------------------------------------------------------
@pytest.fixture()
def clips() -> pd.DataFrame:
    return pd.DataFrame({"noise": ["car", None, "people", "none", "car"],
                         "bandwidth": [16, 4, 16, 8, None],
                         "transcript": ["go", "stop", "go", "left", "right"]})


def test_tag_examples_from_functions_sql_and_expressions(clips):
    tagged = tag_examples(clips, {
        "car noise": lambda df: df["noise"] == "car",          # pandas in, pandas out
        "low bandwidth": "bandwidth < 8",                     # SQL
        "people noise": pl.col("noise") == "people",          # Polars expression
        "short": lambda df: pl.col("transcript").str.len_chars() <= 2,
        "reviewed": np.array([True, False, False, False, True])})
    assert tagged.columns[:3] == ["noise", "bandwidth", "transcript"]
    assert tagged["car noise"].to_list() == [True, False, False, False, True]
    assert tagged["low bandwidth"].to_list() == [False, True, False, False, False]  # null: no
    assert tagged["people noise"].to_list() == [False, False, True, False, False]
    assert tagged["short"].to_list() == [True, False, True, False, False]
    only = tag_examples(clips, {"car": "noise = 'car'"}, keep=False)
    assert only.columns == ["car"]
    masks = slice_masks(tagged, ["car noise", "noise"])
    assert list(masks) == ["car noise", "noise=car", "noise=none", "noise=people",
                           "noise=null"]
    assert masks["noise=car"].tolist() == masks["car noise"].tolist()


@pytest.mark.parametrize("tagger, rule", [
    ("bandwidth <", "failed"),
    (lambda df: df["bandwidth"], "one boolean per row"),
    (lambda df: [True, False], "one boolean per row"),
    (lambda df: df["missing"], "failed: KeyError"),
    (3.5, "one boolean per row"),
])
def test_bad_taggers_name_the_tag(clips, tagger, rule):
    with pytest.raises(InvalidInputError, match=rule) as err:
        tag_examples(clips, {"bad tag": tagger})
    assert err.value.field == "taggers['bad tag']"


def test_tag_names_must_be_new_and_taggers_a_mapping(clips):
    with pytest.raises(InvalidInputError, match="already a column"):
        tag_examples(clips, {"noise": "bandwidth < 8"})
    with pytest.raises(InvalidInputError) as err:
        tag_examples(clips, ["bandwidth < 8"])
    assert err.value.field == "taggers"


def test_slice_masks_refuse_unbinned_numbers_and_unknown_columns():
    with pytest.raises(InvalidInputError, match="bin it or tag it"):
        slice_masks({"age": np.arange(100)})
    with pytest.raises(InvalidInputError, match="not a column") as err:
        slice_masks({"age": [1, 2]}, ["height"])
    assert err.value.field == "slices"


def test_error_analysis_from_tags_model_and_labeler():
    """The whole loop on data: tag, measure the model and the labeler per tag, rank."""
    rng = np.random.default_rng(0)
    n = 2000
    noise = rng.choice(["none", "car", "people"], n, p=[0.6, 0.1, 0.3])
    truth = rng.integers(0, 2, n)
    model_wrong = rng.random(n) < np.select([noise == "car", noise == "people"], [0.3, 0.15],
                                            0.05)
    human_wrong = rng.random(n) < np.select([noise == "car", noise == "people"], [0.05, 0.1],
                                            0.04)
    prediction, labeler = np.where(model_wrong, 1 - truth, truth), np.where(human_wrong,
                                                                             1 - truth, truth)
    tagged = tag_examples(pl.DataFrame({"noise": noise}), {
        "car noise": "noise = 'car'", "people noise": "noise = 'people'",
        "clean": "noise = 'none'"}, keep=False)
    hlp = human_level_performance(truth, {"labeler": labeler}, slices=tagged).as_baseline()
    table = [{"tag": tag, "accuracy": float(np.mean(prediction[mask] == truth[mask])),
              "hlp": hlp[tag], "share": float(mask.mean())}
             for tag, mask in slice_masks(tagged).items()]
    analysis = error_analysis(table)
    expected = {row["tag"]: max(row["hlp"] - row["accuracy"], 0) * row["share"]
                for row in table}
    assert [r.tag for r in analysis.rows] == sorted(expected, key=lambda t: -expected[t])
    assert analysis.rows[0].tag == "car noise"  # 25 points behind on 10 % of the data


# -- from an EvaluationResult -------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech_evaluation():
    """Clips tagged by noise; the model trails the labeler most on car noise."""
    from prodml.evaluation.evaluate import evaluate

    rng = np.random.default_rng(0)
    n = 3000
    noise = rng.choice(["none", "car", "people"], n, p=[0.6, 0.1, 0.3])
    truth = rng.integers(0, 2, n)
    model_wrong = rng.random(n) < np.select([noise == "car", noise == "people"], [0.3, 0.15],
                                            0.05)
    human_wrong = rng.random(n) < np.select([noise == "car", noise == "people"], [0.05, 0.1],
                                            0.04)
    clips = pl.DataFrame({"noise": noise, "y": truth,
                          "pred": np.where(model_wrong, 1 - truth, truth),
                          "gender": rng.choice(["f", "m"], n)})
    taggers = {"car noise": "noise = 'car'", "people noise": "noise = 'people'",
               "clean speech": "noise = 'none'"}
    tagged = tag_examples(clips, taggers)
    hlp = human_level_performance(truth, {"ann": np.where(human_wrong, 1 - truth, truth)},
                                  slices=tagged.select(list(taggers)))
    result = evaluate("pred", tagged, label="y", bootstrap=0,
                      slices=[{tag: tag for tag in taggers}, "gender"],
                      baselines={"hlp": hlp.as_baseline()})
    return tagged, hlp, result


def test_error_analysis_from_an_evaluation(speech_evaluation):
    tagged, hlp, result = speech_evaluation
    analysis = error_analysis(result)  # baseline="hlp", metric="accuracy"
    assert [r.tag for r in analysis.rows] == ["car noise", "people noise", "clean speech"]
    car = tagged.filter(pl.col("car noise"))
    accuracy = float((car["y"] == car["pred"]).mean())
    row = analysis["car noise"]
    assert row.value == pytest.approx(accuracy)
    assert row.baseline == pytest.approx(hlp.slices["car noise"])
    assert row.share == pytest.approx(car.height / tagged.height)
    assert row.gain == pytest.approx((hlp.slices["car noise"] - accuracy) * row.share)
    assert set(analysis.skipped) == {"gender=f", "gender=m"}  # no HLP there: said, not hidden
    assert analysis.overall_baseline == pytest.approx(hlp.overall)
    assert "overall: accuracy" in str(analysis)


def test_evaluation_without_the_baseline_or_metric(speech_evaluation):
    _, _, result = speech_evaluation
    with pytest.raises(InvalidInputError, match="not a baseline") as err:
        error_analysis(result, baseline="older system")
    assert err.value.field == "baseline"
    with pytest.raises(InvalidInputError, match="not computed") as err:
        error_analysis(result, metric="bleu")
    assert err.value.field == "metric"
