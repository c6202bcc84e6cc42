"""The limits every JSON body meets before it is parsed, and what errors quote of a value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.errors import InvalidInputError, quote
from prodml.serving.protocols import MAX_JSON_DEPTH, check_depth, describe_bytes, parse_json
from prodml.serving.validation import FINITE_RULE, non_finite_at


def depth(value) -> int:
    if isinstance(value, (list, dict)):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((depth(c) for c in children), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab[]{}"\\ ', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet='k[]{}"\\', max_size=3), inner, max_size=3),
    max_leaves=30)


@given(value=json_values, limit=st.integers(1, 8))
@settings(max_examples=300, deadline=None)
def test_check_depth_agrees_with_the_parsed_depth(value, limit):
    """Brackets inside strings (escaped quotes included) never count."""
    text = json.dumps(value).encode()
    if depth(value) <= limit:
        check_depth(text, limit=limit)
    else:
        with pytest.raises(InvalidInputError, match=f"more than {limit} levels deep"):
            check_depth(text, limit=limit)


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 990, 5000])
def test_deep_json_is_refused_before_parsing(levels):
    with pytest.raises(InvalidInputError) as caught:
        parse_json(b"[" * levels + b"]" * levels)
    assert caught.value.rule == f"must not nest arrays and objects more than " \
                                f"{MAX_JSON_DEPTH} levels deep"
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None


def test_errors_quote_any_value_safely():
    deep: list = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    error = InvalidInputError("label", deep, "must be a label")  # repr() would overflow
    assert "[[[[[...]]]]]" in str(error) and len(error.to_dict()["value"]) < 100
    assert quote(10 ** 5000) == "<an integer of about 5000 digits>"
    assert len(InvalidInputError("x", "y" * 10_000, "rule").message) < 300


def test_bytes_are_described_not_echoed():
    assert describe_bytes(b'{"a": 1}') == '{"a": 1}'
    assert describe_bytes("é".encode() * 50, 80) == "é" * 40  # a character cut at the end
    assert describe_bytes(b"\xff\xfe\x00\x01rest") == "8 bytes of binary data (ff fe 00 01...)"


@pytest.mark.parametrize("values, index", [
    ([1.0, 2.0], None), ([float("nan"), None, "x", True], None), ([float("inf")], 0),
    ([1.0] * 10 + [float("-inf")], 10), ([1, 10 ** 400], 1), ([10 ** 308] * 6, None),
    ([float("inf"), float("-inf")] * 3, 0), ([1e308] * 6, None),
])
def test_non_finite_numbers_are_found_whatever_the_column_holds(values, index):
    assert non_finite_at(values) == index


def test_the_finite_rule_holds_without_a_schema():
    from prodml.serving.validation import RequestValidator

    with pytest.raises(InvalidInputError) as caught:
        RequestValidator(None, None)({"x": [1.0, float("inf")]})
    assert (caught.value.field, caught.value.rule) == ("records[1].x", FINITE_RULE)
