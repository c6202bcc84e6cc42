"""Run search: the query language against a Python evaluation of the same query."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prodml as pm

RUNS = [  # params, metrics, tags
    ({"model": "gbm", "depth": "3"}, {"f1": 0.91, "auc": 0.95}, {"team": "risk"}),
    ({"model": "gbm", "depth": "12"}, {"f1": 0.75}, {"team": "growth"}),
    ({"model": "logreg", "depth": "0"}, {"f1": 0.62, "auc": 0.70}, {}),
    ({"model": "rf"}, {"auc": 0.88}, {"team": "risk", "owner": "ana"}),
    ({"model": "gbm_v2", "depth": "x"}, {"f1": 0.85, "auc": 0.80}, {"team": "Risk"}),
]


@pytest.fixture
def runs(store):
    ids = []
    for params, metrics, tags in RUNS:
        with pm.start_run(experiment="search", params=params, tags=tags) as run:
            run.log_metrics(metrics)
        ids.append(run.id)
    return ids


def names(records):
    return {r.params["model"] + "/" + r.params.get("depth", "-") for r in records}


def test_issue_example_with_or_and_parentheses(runs):
    found = pm.runs.search("metrics.f1 > 0.8 and (params.model = 'gbm' or tags.team = 'risk')")
    assert names(found) == {"gbm/3"}
    found = pm.runs.search("metrics.f1 > 0.7 and (params.model = 'logreg' or "
                           "tags.team = 'growth')")
    assert names(found) == {"gbm/12"}


@pytest.mark.parametrize(("query", "expected"), [
    ("", {"gbm/3", "gbm/12", "logreg/0", "rf/-", "gbm_v2/x"}),
    ("not params.model = 'gbm'", {"logreg/0", "rf/-", "gbm_v2/x"}),
    ("metrics.auc is null", {"gbm/12"}),
    ("metrics.f1 is not null and metrics.auc >= 0.8", {"gbm/3", "gbm_v2/x"}),
    ("params.model in ('rf', 'logreg')", {"rf/-", "logreg/0"}),
    ("params.model not in ('rf', 'logreg', 'gbm')", {"gbm_v2/x"}),
    ("params.model like 'gbm%'", {"gbm/3", "gbm/12", "gbm_v2/x"}),
    ("tags.team ilike 'risk'", {"gbm/3", "rf/-", "gbm_v2/x"}),
    ("tags.team = 'risk'", {"gbm/3", "rf/-"}),
    ("params.depth > 5", {"gbm/12"}),  # compared as numbers: '12' > 5, 'x' is not a number
    ("params.depth < 5", {"gbm/3", "logreg/0"}),
    ("params.depth = 3", {"gbm/3"}),
    ("metrics.f1 != 0.75", {"gbm/3", "logreg/0", "gbm_v2/x"}),
    ("attributes.status = 'FINISHED' and experiment = 'search' and metrics.f1 < 0.7",
     {"logreg/0"}),
    ("NOT (tags.team = 'risk' OR tags.team = 'growth') AND metrics.f1 > 0.5",
     {"logreg/0", "gbm_v2/x"}),
])
def test_operators(runs, query, expected):
    assert names(pm.runs.search(query)) == expected


def test_order_by_and_max_results(runs):
    ordered = pm.runs.search("", order_by="metrics.f1 desc")
    assert [r.metrics.get("f1") for r in ordered] == [0.91, 0.85, 0.75, 0.62, None]
    top = pm.runs.search("metrics.auc > 0", order_by=["metrics.auc asc"], max_results=2)
    assert [r.metrics["auc"] for r in top] == [0.70, 0.80]
    with pytest.raises(pm.InvalidInputError, match="max_results"):
        pm.runs.search("", max_results=0)


def test_values_are_bound_not_pasted(runs):
    hostile = "params.model = 'x'' or ''1''=''1' or params.model = 'x''; drop table runs; --'"
    assert pm.runs.search(hostile) == []
    with pm.start_run(experiment="search", params={"model": "x'; drop table runs; --"}):
        pass
    assert len(pm.runs.search(hostile)) == 1
    assert len(pm.runs.search("")) == len(RUNS) + 1


@pytest.mark.parametrize(("query", "position", "problem"), [
    ("metrics.f1 >", 12, "unexpected end of query"),
    ("metrics.f1 0.8", 11, "expected an operator"),
    ("metricz.f1 > 1", 0, "unknown field group 'metricz'"),
    ("metrics.f1 > 1 and (params.a = 'b'", 34, "expected ')'"),
    ("metrics.f1 = 'high'", 0, "metrics.f1 is a number"),
    ("metrics.f1 > 1 params.a = 'b'", 15, "join conditions with 'and' or 'or'"),
    ("colour = 'red'", 0, "unknown attribute 'colour'"),
    ("params.a = 'b' #", 15, "unexpected character '#'"),
])
def test_malformed_queries_point_at_the_bad_token(store, query, position, problem):
    with pytest.raises(pm.QuerySyntaxError) as caught:
        pm.runs.search(query)
    assert caught.value.position == position
    assert problem in caught.value.problem
    caret_line = str(caught.value).splitlines()[-1]
    assert caret_line.index("^") - 2 == position


@pytest.mark.parametrize("query", [
    "(" * 400 + "metrics.f1 > 1" + ")" * 400,
    "(" * 400,
    "not " * 1200 + "metrics.f1 > 1",
])
def test_nesting_is_bounded_with_a_clear_error(store, query):
    from prodml.tracking.search import MAX_QUERY_DEPTH

    with pytest.raises(pm.QuerySyntaxError) as caught:
        pm.runs.search(query)
    assert f"more than {MAX_QUERY_DEPTH} levels deep" in caught.value.problem
    nested = "(" * MAX_QUERY_DEPTH + "metrics.f1 > 1" + ")" * MAX_QUERY_DEPTH
    assert pm.runs.search(nested) == []  # as deep as allowed still parses


# -- property: SQL agrees with a Python evaluation of random queries -----------------------

FIELDS = [("metrics", "f1"), ("metrics", "auc"), ("params", "model"), ("params", "depth"),
          ("tags", "team")]
TEXT_VALUES = ["gbm", "rf", "risk", "3", "12", "logreg", "growth"]


def _value(run, entity, key):
    params, metrics, tags = run
    return {"metrics": metrics, "params": params, "tags": tags}[entity].get(key)


@st.composite
def comparison(draw):
    entity, key = draw(st.sampled_from(FIELDS))
    if entity == "metrics":
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        number = draw(st.sampled_from([0.62, 0.7, 0.75, 0.8, 0.85, 0.9]))
        text = f"{entity}.{key} {op} {number}"

        def check(run):
            v = _value(run, entity, key)
            return v is not None and {"=": v == number, "!=": v != number, "<": v < number,
                                      "<=": v <= number, ">": v > number,
                                      ">=": v >= number}[op]
        return text, check
    if draw(st.booleans()):
        word = draw(st.sampled_from(TEXT_VALUES))
        op = draw(st.sampled_from(["=", "!="]))
        text = f"{entity}.{key} {op} '{word}'"
        return text, lambda run: (_value(run, entity, key) is not None and
                                  (_value(run, entity, key) == word) == (op == "="))
    text = f"{entity}.{key} is null"
    return text, lambda run: _value(run, entity, key) is None


def expression(depth=2):
    if depth == 0:
        return comparison()
    inner = expression(depth - 1)

    @st.composite
    def combine(draw):
        kind = draw(st.sampled_from(["leaf", "and", "or", "not"]))
        if kind == "leaf":
            return draw(comparison())
        if kind == "not":
            text, check = draw(inner)
            return f"not ({text})", lambda run: not check(run)
        (ta, ca), (tb, cb) = draw(inner), draw(inner)
        if kind == "and":
            return f"({ta}) and ({tb})", lambda run: ca(run) and cb(run)
        return f"({ta}) or ({tb})", lambda run: ca(run) or cb(run)
    return combine()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=expression())
def test_random_queries_match_python(runs, query):
    text, check = query
    expected = {names_of(run) for run in RUNS if check(run)}
    assert names(pm.runs.search(text)) == expected, text


def names_of(run):
    return run[0]["model"] + "/" + run[0].get("depth", "-")


def test_query_text_never_reaches_sql():
    from sqlalchemy.dialects import postgresql

    from prodml.tracking.search import compile_query
    clause = compile_query("params.model = 'secret-value' or metrics.f1 > 0.123456",
                           "postgresql")
    sql = str(clause.compile(dialect=postgresql.dialect()))
    assert "secret-value" not in sql and "0.123456" not in sql
    assert re.search(r"%\(\w+\)s", sql)


def test_boolean_attribute_compares(runs):
    dirty = {r.id for r in pm.runs.search("") if r.code.dirty is True}
    assert {r.id for r in pm.runs.search("attributes.dirty = true")} == dirty
    clean = {r.id for r in pm.runs.search("") if r.code.dirty is False}
    assert {r.id for r in pm.runs.search("dirty = false")} == clean
