"""Schemas: inference, YAML round-trips and hand edits, every anomaly kind with its evidence,
bad input, per-record checks and the CLI commands (through Typer's runner)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import time

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from prodml.cli.schema import app as schema_app
from prodml.cli.schema import validate_command
from prodml.data.profile import profile
from prodml.data.schema import ColumnSchema, Schema, infer_schema
from prodml.data.validate import Anomaly, ValidationResult, validate
from prodml.errors import InvalidInputError

N = 400


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    score = rng.random(N)
    score[rng.random(N) < 0.1] = np.nan
    return pd.DataFrame({
        "age": rng.integers(20, 80, N),
        "income": rng.normal(50_000, 8_000, N).round(2),
        "plan": rng.choice(["basic", "pro", "team"], N),
        "member": rng.choice([True, False], N),
        "code": [f"C{i:05d}" for i in range(N)],  # unique: lengths, never categories
        "signup": pd.date_range("2024-01-01", periods=N, freq="h"),
        "score": score,
    })


@pytest.fixture(scope="module")
def schema(train: pd.DataFrame) -> Schema:
    return infer_schema(train)


def only(result: ValidationResult, kind: str) -> Anomaly:
    found = [a for a in result.anomalies if a.kind == kind]
    assert len(found) == 1, result.summary()
    return found[0]


# -- inference -----------------------------------------------------------------------------
def test_infer_proposes_types_presence_domains_and_lengths(schema: Schema,
                                                           train: pd.DataFrame) -> None:
    assert schema.column_names == list(train.columns)
    assert {n: c.type for n, c in schema.columns.items()} == {
        "age": "integer", "income": "float", "plan": "string", "member": "boolean",
        "code": "string", "signup": "datetime", "score": "float"}
    age = schema["age"]
    assert (age.nullable, age.min_presence, age.required) == (False, 1.0, True)
    span = train.age.max() - train.age.min()  # widened by 10% of the span, outward to ints
    assert age.min_value == math.floor(train.age.min() - 0.1 * span)
    assert age.max_value == math.ceil(train.age.max() + 0.1 * span)
    assert schema["income"].min_value < train.income.min() < train.income.max() \
        < schema["income"].max_value
    assert schema["plan"].categories == ("basic", "pro", "team")
    assert schema["code"].categories is None
    assert (schema["code"].min_length, schema["code"].max_length) == (6, 6)
    score = schema["score"]
    present = train.score.notna().mean()
    assert score.nullable and score.min_presence == math.floor((present - 0.05) * 100) / 100
    assert score.min_value == 0.0  # never negative: the margin does not cross zero
    assert not score.allow_nan  # pandas' NaN is a missing value, not a NaN
    assert schema["signup"].min_value is None  # no datetime range is guessed
    assert not any(c.pii for c in schema.columns.values())
    assert schema.min_rows == 1


def test_infer_from_a_profile_equals_infer_from_data(train: pd.DataFrame,
                                                     schema: Schema) -> None:
    assert infer_schema(profile(train)) == schema


def test_infer_from_csv_and_parquet_files(tmp_path, train: pd.DataFrame) -> None:
    train.to_csv(tmp_path / "train.csv", index=False)
    pq.write_table(pa.Table.from_pandas(train, preserve_index=False), tmp_path / "t.parquet")
    from_csv = infer_schema(tmp_path / "train.csv")
    from_parquet = infer_schema(str(tmp_path / "t.parquet"))
    assert from_parquet == infer_schema(train)
    assert from_csv["plan"].categories == ("basic", "pro", "team")
    assert from_csv["signup"].type == "datetime" and from_csv["member"].type == "boolean"
    assert validate(tmp_path / "train.csv", from_parquet).ok


def test_infer_options_and_nan_inf_seen() -> None:
    frame = pl.DataFrame({"x": [1.0, float("nan"), float("inf"), 2.0],
                          "c": ["a", "b", "a", "b"]})
    s = infer_schema(frame, max_categories=1, range_margin=0.0, min_rows=10)
    assert (s["x"].allow_nan, s["x"].allow_inf) == (True, True)
    assert (s["x"].min_value, s["x"].max_value) == (1.0, 2.0)
    assert s["c"].categories is None and s.min_rows == 10


def test_infer_rejects_bad_input_clearly(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="0 rows"):
        infer_schema(pd.DataFrame({"a": pd.Series([], dtype="int64")}))
    with pytest.raises(InvalidInputError, match="at least one column"):
        infer_schema(pd.DataFrame())
    with pytest.raises(InvalidInputError) as mixed:
        infer_schema(pd.DataFrame({"ok": [1, 2, 3], "id": [1, "two", 3]}))
    assert mixed.value.field == "column 'id'" and "int (2), str (1)" in str(mixed.value)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InvalidInputError, match="empty.csv"):
        infer_schema(tmp_path / "empty.csv")
    with pytest.raises(InvalidInputError, match="does not exist"):
        infer_schema(tmp_path / "missing.csv")


def test_all_null_column_is_inferred_as_any_and_checked_for_presence() -> None:
    s = infer_schema(pd.DataFrame({"a": [1, 2, 3], "gone": [None, None, None]}))
    assert s["gone"].type == "any" and s["gone"].nullable and s["gone"].min_presence == 0.0
    assert "set the type" in s["gone"].description
    typed = s.with_column("gone", type="integer", min_presence=0.5)
    result = validate(pd.DataFrame({"a": [1, 2], "gone": [None, None]}), typed)
    assert [a.kind for a in result.anomalies] == ["low_presence"]  # not a type mismatch
    low = only(result, "low_presence")
    assert low.evidence["presence"] == 0.0 and low.evidence["count"] == 2


# -- YAML ----------------------------------------------------------------------------------
def test_yaml_round_trip_equals_and_reads_like_a_document(tmp_path, schema: Schema) -> None:
    text = schema.to_yaml()
    assert Schema.from_yaml(text) == schema
    assert "categories: [basic, pro, team]" in text and text.startswith("# prodml data schema")
    path = schema.save(tmp_path / "sub" / "schema.yaml")
    assert Schema.from_yaml(path) == schema == Schema.from_yaml(str(path))
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left


def test_hand_edits_round_trip(tmp_path) -> None:
    text = """
    min_rows: 5
    columns:
      zip: {type: string, categories: [10001, '02134'], pii: true}
      when: {type: datetime, min_value: 2024-01-01, max_value: 2024-12-31T23:59:59+00:00}
      amount: {type: float, nullable: false, allow_nan: true}
      note: {type: string, required: false, description: free text}
    """
    s = Schema.from_yaml(text.replace("\n    ", "\n"))
    assert s["zip"].categories == ("10001", "02134") and s["zip"].pii
    assert s["when"].min_value == dt.datetime(2024, 1, 1)
    assert s["when"].max_value == dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    assert s["amount"].min_presence == 1.0  # follows nullable: false
    assert Schema.from_yaml(s.to_yaml()) == s
    s.save(tmp_path / "s.yml")
    assert Schema.from_yaml(tmp_path / "s.yml") == s


@pytest.mark.parametrize(("text", "field", "rule"), [
    ("columns:\n  a: {type: int}\n", "columns.a.type", "'integer', 'float'"),
    ("columns:\n  a: {type: float, min_presence: 1.5}\n", "columns.a.min_presence",
     "less than or equal to 1"),
    ("columns:\n  a: {type: integer, min_value: 10, max_value: 5}\n", "columns.a.max_value",
     "must be >= min_value (10)"),
    ("columns:\n  a: {type: integer, nulable: true}\n", "columns.a.nulable",
     "is not a schema field (allowed: type, required, nullable"),
    ("columns:\n  a: {type: integer, categories: [1, 2]}\n", "columns.a.categories",
     "categories apply to string or category columns, not integer"),
    ("columns:\n  a: {type: integer, nullable: false, min_presence: 0.5}\n",
     "columns.a.min_presence", "must be 1.0 when nullable is false"),
    ("columns:\n  a: {type: string, min_length: 5, max_length: 2}\n", "columns.a.max_length",
     "must be >= min_length (5)"),
    ("columns:\n  a: {type: integer, allow_nan: true}\n", "columns.a.allow_nan",
     "applies to float columns only"),
    ("columns:\n  a: {type: integer, min_value: 2024-01-01}\n", "columns.a.min_value",
     "must be a number for an integer column"),
    ("columns:\n  a: {type: string, categories: [yes, no]}\n", "columns.a.categories",
     "quote categories"),
    ("columns:\n  a: {nullable: true}\n", "columns.a.type", "is required"),
    ("columns:\n  a: integer\n", "columns.a", "valid dictionary"),
    ("min_rows: -1\ncolumns: {}\n", "min_rows", "greater than or equal to 0"),
    ("version: 2\ncolumns: {}\n", "version", "Input should be 1"),
    ("min_rows: 3\n", "columns", "is required"),
    ("columns:\n  a: {type: [integer\n", "schema", "is not valid YAML at line 3"),
    ("- a\n- b\n", "schema", "a schema is a mapping with 'columns'"),
    ("", "schema", "a schema is a mapping"),
])
def test_malformed_yaml_names_the_field_and_the_rule(text: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Schema.from_yaml(text)
    assert caught.value.field == field
    assert rule in str(caught.value)
    assert "\n" not in str(caught.value)  # one line, for the CLI


def test_several_problems_are_counted_and_files_are_named(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("columns:\n  a: {type: int}\n  b: {type: float, allow_nan: maybe}\n")
    with pytest.raises(InvalidInputError) as caught:
        Schema.from_yaml(path)
    message = str(caught.value)
    assert "(and 1 more: columns.b.allow_nan: Input should be a valid boolean" in message
    assert f"(in {path})" in message
    with pytest.raises(InvalidInputError, match="file does not exist"):
        Schema.from_yaml(tmp_path / "nope.yaml")


def test_edits_in_python_are_validated_copies(schema: Schema) -> None:
    wider = schema.with_column("age", max_value=130, pii=True)
    assert wider["age"].max_value == 130 and wider["age"].pii and schema["age"].max_value != 130
    added = wider.with_column("note", type="string", required=False)
    assert added.column_names[-1] == "note" and added["note"].nullable
    assert "age" not in added.without_column("age").columns
    with pytest.raises(InvalidInputError, match="columns.age.max_value"):
        schema.with_column("age", max_value=-5)
    with pytest.raises(InvalidInputError, match="give type"):
        schema.with_column("nope", min_value=1)
    with pytest.raises(Exception, match="frozen"):  # edits go through with_column
        schema["age"].max_value = 1  # type: ignore[misc]


# -- validation: every kind, with its evidence ---------------------------------------------
def test_fresh_data_from_the_same_source_passes(schema: Schema, train: pd.DataFrame) -> None:
    result = validate(train.sample(frac=0.5, random_state=1), schema)
    assert result.ok and result.anomalies == ()
    assert validate(pl.from_pandas(train), schema).ok
    assert validate(pa.Table.from_pandas(train), schema).ok


def test_each_value_anomaly_has_counts_share_and_examples(schema: Schema,
                                                          train: pd.DataFrame) -> None:
    bad = train.copy()
    bad.loc[[3, 10, 11], "age"] = 999
    bad["plan"] = bad["plan"].astype(object)
    bad.loc[[5, 6, 7, 8, 9, 12, 13], "plan"] = ["gold"] * 5 + ["silver"] * 2
    bad.loc[[2], "code"] = "TOO-LONG-CODE"
    bad.loc[[0, 1], "income"] = np.nan  # pandas: missing
    table = pa.Table.from_pandas(bad, preserve_index=False)
    score = table.column("score").to_numpy(zero_copy_only=False).copy()
    score[[4, 20]], score[21] = np.nan, np.inf  # real NaN / inf in Arrow (not nulls)
    table = table.set_column(table.schema.get_field_index("score"), "score",
                             pa.array(score, from_pandas=False))
    result = validate(table, schema)
    assert not result.ok

    age = only(result, "out_of_range")
    assert age.column == "age" and age.severity == "error"
    assert age.evidence["count"] == 3 and age.evidence["share"] == 3 / N
    assert age.evidence["examples"] == [{"row": r, "value": 999} for r in (3, 10, 11)]
    assert (age.evidence["min_seen"], age.evidence["max_seen"]) == (999, 999)
    assert "outside [" in age.message and "999" in age.message

    plan = only(result, "unexpected_category")
    assert plan.evidence["count"] == 7 and plan.evidence["unexpected"] == {"gold": 5, "silver": 2}
    assert [e["row"] for e in plan.evidence["examples"]] == [5, 6, 7, 8, 9]  # first five
    assert "'gold' (5), 'silver' (2)" in plan.message

    code = only(result, "string_length")
    assert code.severity == "warning" and code.evidence["examples"] == [
        {"row": 2, "value": "TOO-LONG-CODE"}]
    assert code.evidence["max_seen"] == 13

    income = only(result, "null_not_allowed")
    assert income.evidence["count"] == 2
    assert [e["row"] for e in income.evidence["examples"]] == [0, 1]

    nan = only(result, "nan_not_allowed")
    assert nan.column == "score"
    assert [e["row"] for e in nan.evidence["examples"]][:2] == [4, 20]
    inf = only(result, "inf_not_allowed")
    assert inf.evidence["examples"] == [{"row": 21, "value": math.inf}]
    assert inf.to_dict()["evidence"]["examples"] == [{"row": 21, "value": "inf"}]  # JSON-safe


def test_columns_rows_and_presence(schema: Schema, train: pd.DataFrame) -> None:
    frame = train.drop(columns=["member"]).assign(extra=1.5)
    frame.loc[frame.index[:200], "score"] = None  # 50 % present; needs >= ~85 %
    result = validate(frame, schema)
    assert sorted(a.kind for a in result.anomalies) == ["low_presence", "missing_column",
                                                        "new_column"]
    missing = only(result, "missing_column")
    assert (missing.column, missing.severity, missing.evidence) == (
        "member", "error", {"expected_type": "boolean"})
    new = only(result, "new_column")
    assert (new.column, new.severity, new.evidence) == ("extra", "warning", {"type": "float"})
    low = only(result, "low_presence")
    assert low.column == "score" and low.evidence["min_presence"] == schema["score"].min_presence
    assert low.evidence["presence"] == pytest.approx(frame.score.notna().mean())
    assert low.evidence["count"] == frame.score.isna().sum()

    optional = validate(train.drop(columns=["code"]), schema.with_column("code", required=False))
    assert optional.ok and only(optional, "missing_column").severity == "warning"

    few = validate(train.head(3), Schema(min_rows=10, columns=schema.columns))
    rows = only(few, "too_few_rows")
    assert rows.column is None and rows.evidence == {"rows": 3, "min_rows": 10}


def test_type_mismatch_evidence_is_the_values_that_do_not_read(tmp_path,
                                                               schema: Schema) -> None:
    csv = tmp_path / "new.csv"
    csv.write_text("age,plan\n31,pro\nN/A,basic\n44,team\nunknown,pro\n")
    mismatch = only(validate(csv, schema), "type_mismatch")
    assert mismatch.column == "age" and mismatch.evidence["expected"] == "integer"
    assert mismatch.evidence["found"] == "string" and mismatch.evidence["count"] == 2
    assert mismatch.evidence["examples"] == [{"row": 1, "value": "N/A"},
                                             {"row": 3, "value": "unknown"}]
    assert "'N/A' at row 1" in mismatch.message
    integer = Schema(columns={"a": {"type": "integer"}})
    assert validate(pd.DataFrame({"a": [1.0, 2.0, None]}), integer).ok  # whole floats are ints
    half = only(validate(pd.DataFrame({"a": [1.0, 2.5]}), integer), "type_mismatch")
    assert half.evidence["examples"] == [{"row": 1, "value": 2.5}]
    zips = only(validate(pd.DataFrame({"zip": [10001, 2134]}),
                         Schema(columns={"zip": {"type": "string"}})), "type_mismatch")
    assert zips.evidence["count"] == 0 and "cast the column" in zips.message
    flags = only(validate(pd.DataFrame({"f": ["true", "no"]}),
                          Schema(columns={"f": {"type": "boolean"}})), "type_mismatch")
    assert flags.evidence["examples"] == [{"row": 1, "value": "no"}]


def test_mixed_python_types_in_one_column_are_an_anomaly_not_a_traceback(
        schema: Schema) -> None:
    frame = pd.DataFrame({"age": [30, "forty", None, 50, 12.5], "plan": ["pro"] * 5})
    result = validate(frame, schema)
    mismatch = only(result, "type_mismatch")
    assert mismatch.evidence["examples"] == [{"row": 1, "value": "forty"},
                                             {"row": 4, "value": "12.5"}]
    assert "mixes Python types (int (2), str (1), float (1))" in mismatch.message
    assert only(result, "null_not_allowed").evidence["examples"] == [{"row": 2, "value": None}]
    flags = pd.DataFrame({"age": [1, True, np.int64(3), "x"]})  # a bool is no integer here
    assert [e["row"] for e in only(validate(flags, schema), "type_mismatch")
            .evidence["examples"]] == [1, 3]
    records = [{"plan": "pro", "age": 1}, {"plan": 3, "age": 2}]  # list of dicts, mixed too
    assert only(validate(records, schema), "type_mismatch").evidence["examples"] == [
        {"row": 1, "value": "3"}]


def test_empty_data_and_bad_inputs(tmp_path, schema: Schema) -> None:
    empty = validate(pd.DataFrame({c: [] for c in schema.column_names}), schema)
    assert [a.kind for a in empty.anomalies] == ["too_few_rows"]
    header_only = tmp_path / "h.csv"
    header_only.write_text("age,plan\n")
    kinds = {a.kind for a in validate(header_only, schema).anomalies}
    assert kinds == {"too_few_rows", "missing_column"}
    nothing = validate(pd.DataFrame(), schema)
    assert nothing.rows == 0 and len(nothing.errors) == 1 + len(schema.columns)
    (tmp_path / "broken.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(InvalidInputError, match="broken.csv"):
        validate(tmp_path / "broken.csv", schema)
    with pytest.raises(InvalidInputError, match="must be unique"):
        validate(pa.table([[1], [2]], names=["age", "age"]), schema)
    with pytest.raises(InvalidInputError, match="must be a pandas"):
        validate(42, schema)


def test_categories_and_ranges_on_other_column_kinds() -> None:
    s = Schema(columns={
        "cat": {"type": "category", "categories": ["a", "b"]},
        "when": {"type": "datetime", "min_value": dt.datetime(2024, 1, 1),
                 "max_value": "2024-06-30T00:00:00+00:00"},
        "day": {"type": "datetime", "max_value": dt.datetime(2024, 1, 2)},
    })
    frame = pd.DataFrame({
        "cat": pd.Categorical(["a", "c", "b", "c"]),
        "when": pd.to_datetime(["2023-12-31", "2024-03-01", "2024-07-01", None], utc=True),
        "day": [dt.date(2024, 1, 1), dt.date(2024, 1, 3), None, None],
    })
    result = validate(pa.Table.from_pandas(frame, preserve_index=False), s)
    assert only(result, "unexpected_category").evidence["unexpected"] == {"c": 2}
    many = only(validate(pd.DataFrame({"cat": list("cdefghijj")}), s), "unexpected_category")
    assert many.evidence["unexpected"]["j"] == 2 and len(many.evidence["unexpected"]) == 8
    assert "'j' (2), 'c' (1), 'd' (1), 'e' (1), 'f' (1) and 3 more." in many.message
    codes = pd.DataFrame({"code": pd.Categorical([1, 2, 1, 2])})  # categories of numbers
    assert infer_schema(codes)["code"].categories == ("1", "2")
    assert validate(codes, infer_schema(codes)).ok
    assert only(validate(pd.DataFrame({"code": pd.Categorical([1, 3])}), infer_schema(codes)),
                "unexpected_category").evidence["examples"] == [{"row": 1, "value": "3"}]
    money = pa.table({"m": pa.array([decimal.Decimal("1.50"), decimal.Decimal("99.00")])})
    assert only(validate(money, Schema(columns={"m": {"type": "float", "max_value": 10}})),
                "out_of_range").evidence["examples"] == [{"row": 1, "value": 99.0}]
    ranges = {a.column: a for a in result.anomalies if a.kind == "out_of_range"}
    assert [e["row"] for e in ranges["when"].evidence["examples"]] == [0, 2]
    assert [e["row"] for e in ranges["day"].evidence["examples"]] == [1]


def test_pii_columns_keep_their_values_out_of_the_report() -> None:
    s = Schema(columns={"email": {"type": "string", "max_length": 5, "pii": True,
                                  "categories": ["a@b"]}})
    result = validate(pd.DataFrame({"email": ["secret@x.io", "a@b"]}), s)
    text = json.dumps(result.to_dict()) + result.to_html() + result.summary()
    assert "secret" not in text and "<pii>" in json.dumps(result.to_dict())
    assert {a.kind for a in result.anomalies} == {"unexpected_category", "string_length"}
    record = s.check_record({"email": "secret@x.io"})
    assert record and "secret" not in repr(record)


def test_result_renders_as_dict_summary_and_self_contained_html(schema: Schema,
                                                                train: pd.DataFrame) -> None:
    bad = train.rename(columns={"plan": "<b>plan</b>"})
    bad.loc[0, "age"] = -5
    result = validate(bad, schema)
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert as_dict["ok"] is False and as_dict["rows"] == N
    assert (as_dict["errors"], as_dict["warnings"]) == (2, 1)
    assert {a["kind"] for a in as_dict["anomalies"]} == {"out_of_range", "missing_column",
                                                         "new_column"}
    summary = result.summary()
    assert summary.splitlines()[0] == \
        f"validation failed: 2 errors, 1 warning ({N} rows, 7 columns)"
    assert "out_of_range" in summary and str(result) == summary
    page = result.to_html(title="Report <1>")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and "http" not in page
    assert "&lt;b&gt;plan&lt;/b&gt;" in page and "<b>plan" not in page
    assert "Report &lt;1&gt;" in page and page.count('<tr class="error">') == 2
    assert "No anomalies" in validate(train, schema).to_html()


def test_schema_may_be_given_as_yaml_path_text_or_dict(tmp_path, schema: Schema,
                                                       train: pd.DataFrame) -> None:
    path = schema.save(tmp_path / "s.yaml")
    for given in (path, str(path), schema.to_yaml(), schema.to_dict()):
        assert validate(train, given).ok


def test_validation_is_vectorised(schema: Schema, train: pd.DataFrame) -> None:
    big = pa.Table.from_pandas(pd.concat([train] * 500, ignore_index=True),
                               preserve_index=False)  # 200k rows
    start = time.perf_counter()
    result = validate(big, schema)
    assert result.ok and time.perf_counter() - start < 2.0  # ~0.02 s; a row loop takes >10 s


# -- per record ----------------------------------------------------------------------------
def test_check_record_reports_what_one_record_can_show(schema: Schema) -> None:
    good = {"age": 30, "income": 51_000.5, "plan": "pro", "member": False, "code": "C00001",
            "signup": "2024-01-05T10:00:00", "score": None}
    assert schema.check_record(good) == []
    assert schema.check_record({**good, "age": 31.0, "income": 50_000}) == []
    cases = {
        "age": ("thirty", "type_mismatch"), "income": (float("nan"), "nan_not_allowed"),
        "plan": ("gold", "unexpected_category"), "member": ("yes", "type_mismatch"),
        "code": ("C1", "string_length"), "signup": ("not a date", "type_mismatch"),
        "score": (float("inf"), "inf_not_allowed")}
    for field, (value, kind) in cases.items():
        found = schema.check_record({**good, field: value})
        assert [(a.column, a.kind) for a in found] == [(field, kind)], found
        assert found[0].evidence["value"] is value
    assert [a.kind for a in schema.check_record({**good, "age": 500})] == ["out_of_range"]
    assert [a.kind for a in schema.check_record({**good, "age": True})] == ["type_mismatch"]
    assert [a.kind for a in schema.check_record({**good, "age": None})] == ["null_not_allowed"]
    missing = schema.check_record({k: v for k, v in good.items() if k != "plan"} | {"x": 1})
    assert [(a.column, a.kind, a.severity) for a in missing] == [
        ("plan", "missing_column", "error"), ("x", "new_column", "warning")]
    with pytest.raises(InvalidInputError, match="must be a dict"):
        schema.check_record([1, 2])  # type: ignore[arg-type]


def test_check_record_datetime_ranges_and_numpy_values() -> None:
    s = Schema(columns={"t": {"type": "datetime", "min_value": "2024-01-01T00:00:00Z"},
                        "n": {"type": "float", "max_value": 1.0},
                        "c": {"type": "string", "nullable": False}})
    ok = {"t": dt.datetime(2024, 2, 1), "n": np.float32(0.5), "c": "x"}
    assert s.check_record(ok) == []
    assert [a.kind for a in s.check_record({**ok, "t": "2023-12-31T23:00:00+00:00"})] == [
        "out_of_range"]
    assert [a.kind for a in s.check_record({**ok, "t": dt.date(2023, 5, 1)})] == [
        "out_of_range"]
    assert [a.kind for a in s.check_record({**ok, "n": np.int64(3)})] == ["out_of_range"]
    assert [a.kind for a in s.check_record({**ok, "c": float("nan")})] == ["null_not_allowed"]


def test_check_record_is_fast(schema: Schema) -> None:
    record = {"age": 30, "income": 51_000.5, "plan": "pro", "member": False, "code": "C00001",
              "signup": dt.datetime(2024, 1, 5), "score": 0.5}
    schema.check_record(record)
    start = time.perf_counter()
    for _ in range(20_000):
        schema.check_record(record)
    per_field = (time.perf_counter() - start) / 20_000 / len(record)
    assert per_field < 20e-6  # ~0.5 µs measured; a loose bound for busy machines


# -- CLI -----------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path, train: pd.DataFrame):
    train.to_csv(tmp_path / "train.csv", index=False)
    bad = train.copy()
    bad.loc[4, "age"] = 500
    bad.to_csv(tmp_path / "bad.csv", index=False)
    train.assign(extra=1).to_csv(tmp_path / "extra.csv", index=False)
    return tmp_path


def cli() -> typer.Typer:
    """Wired the way prodml's CLI wires it: ``prodml schema infer`` and ``prodml validate``."""
    root = typer.Typer()
    root.add_typer(schema_app, name="schema")
    root.command("validate")(validate_command)
    return root


def test_cli_infer_writes_yaml_and_refuses_to_overwrite(files) -> None:
    runner = CliRunner()
    out = files / "schema.yaml"
    done = runner.invoke(cli(), ["schema", "infer", str(files / "train.csv"), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert Schema.from_yaml(out) == infer_schema(files / "train.csv")
    assert "wrote" in done.output and "age" in done.output
    again = runner.invoke(cli(), ["schema", "infer", str(files / "train.csv"), "-o", str(out)])
    assert again.exit_code == 1 and isinstance(again.exception, InvalidInputError)
    assert "--force" in str(again.exception)
    forced = runner.invoke(cli(), ["schema", "infer", str(files / "train.csv"), "-o", str(out),
                                   "--force", "--json", "--max-categories", "2"])
    assert forced.exit_code == 0
    assert json.loads(forced.output)["columns"]["plan"].get("categories") is None
    assert Schema.from_yaml(out)["plan"].categories is None
    printed = runner.invoke(cli(), ["schema", "infer", str(files / "train.csv")])
    assert Schema.from_yaml(printed.output) == infer_schema(files / "train.csv")


def test_cli_validate_exit_codes_json_and_html(files) -> None:
    runner = CliRunner()
    schema_path = infer_schema(files / "train.csv").save(files / "schema.yaml")
    ok = runner.invoke(cli(), ["validate", str(files / "train.csv"), "--schema",
                               str(schema_path)])
    assert ok.exit_code == 0 and "validation passed" in ok.output
    warned = runner.invoke(cli(), ["validate", str(files / "extra.csv"), "-s", str(schema_path)])
    assert warned.exit_code == 0 and "new_column" in warned.output
    failed = runner.invoke(cli(), ["validate", str(files / "bad.csv"), "--schema",
                                   str(schema_path), "--html", str(files / "r.html")])
    assert failed.exit_code == 1 and "out_of_range" in failed.output
    assert "Column &#x27;age&#x27;" in (files / "r.html").read_text()
    as_json = runner.invoke(cli(), ["validate", str(files / "bad.csv"), "--schema",
                                    str(schema_path), "--json"])
    assert as_json.exit_code == 1
    body = json.loads(as_json.output)
    assert body["ok"] is False and body["anomalies"][0]["evidence"]["examples"] == [
        {"row": 4, "value": 500}]
    broken = files / "broken.yaml"
    broken.write_text("columns:\n  age: {type: integer, min_presence: 2}\n")
    bad_schema = runner.invoke(cli(), ["validate", str(files / "train.csv"), "--schema",
                                       str(broken)])
    assert isinstance(bad_schema.exception, InvalidInputError)
    assert bad_schema.exception.field == "columns.age.min_presence"


def test_column_schema_dump_leaves_out_what_does_not_apply() -> None:
    assert ColumnSchema(type="integer", min_value=1).to_dict() == {
        "type": "integer", "required": True, "nullable": True, "min_presence": 0.0,
        "min_value": 1, "pii": False}
    assert ColumnSchema(type="float").to_dict()["allow_nan"] is False
