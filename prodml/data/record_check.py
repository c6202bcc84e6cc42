"""Check one record at a time: a schema's per-field rules compiled for request-time use.

A serving endpoint checks each request's fields before it predicts, so the rules are compiled
once per schema into one closure per field, and a field then costs about a microsecond.
:meth:`Schema.check_record <prodml.data.schema.Schema.check_record>` builds and keeps the
checker; whole datasets are checked column by column in :mod:`prodml.data.validate`.

>>> from prodml.data.schema import Schema
>>> check = RecordChecker(Schema(columns={
...     "plan": {"type": "string", "categories": ["basic", "pro"]},
...     "age": {"type": "integer", "min_value": 18, "nullable": False}}))
>>> [(a.kind, a.severity) for a in check({"plan": "gold", "age": None, "coupon": "X1"})]
[('unexpected_category', 'error'), ('null_not_allowed', 'error'), ('new_column', 'warning')]
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable

import numpy as np

from prodml.data.schema import TEXT, ColumnSchema, Schema, _utc
from prodml.data.validate import REDACTED, SEVERITY, Anomaly, interval
from prodml.errors import InvalidInputError

_MISSING = object()
_NUMBERS = (int, float, np.integer, np.floating)
Check = Callable[[Any], "Anomaly | None"]


class RecordChecker:
    """The schema's per-value rules compiled into one closure per field.

    Built once per schema (``Schema.check_record`` keeps it), then called per record.

    >>> check = RecordChecker(Schema(columns={"score": {"type": "float", "max_value": 1.0}}))
    >>> check({"score": 0.5}), [a.message for a in check({"score": 1.5})]
    ([], ["Field 'score' is 1.5, outside [-inf, 1.0]."])
    >>> [a.kind for a in RecordChecker(Schema(columns={"x": {"type": "float"}}))(
    ...     {"x": float("inf")})]
    ['inf_not_allowed']
    """

    def __init__(self, schema: Schema) -> None:
        self._plan = [(name, rules.required, rules.nullable, _compile(name, rules))
                      for name, rules in schema.columns.items()]
        self._names = frozenset(schema.columns)

    def __call__(self, record: dict[str, Any]) -> list[Anomaly]:
        if not isinstance(record, dict):
            raise InvalidInputError("record", type(record).__name__,
                                    "must be a dict of field values")
        found: list[Anomaly] = []
        get = record.get
        seen = 0
        for name, required, nullable, check in self._plan:
            value = get(name, _MISSING)
            if value is _MISSING:
                if required:
                    found.append(Anomaly(name, "missing_column", "error",
                                         f"Field {name!r} is missing.", {}))
                continue
            seen += 1
            if value is None:
                if not nullable:
                    found.append(_null_field(name))
                continue
            if check is not None:
                problem = check(value)
                if problem is not None:
                    found.append(problem)
        if len(record) > seen:
            found += [Anomaly(str(key), "new_column", "warning",
                              f"Field {key!r} is not in the schema.", {})
                      for key in record if key not in self._names]
        return found


def _null_field(name: str) -> Anomaly:
    return Anomaly(name, "null_not_allowed", "error", f"Field {name!r} must not be null.",
                   {"value": None})


def _compile(name: str, rules: ColumnSchema) -> Check | None:
    kind, pii, nullable = rules.type, rules.pii, rules.nullable
    low, high = rules.min_value, rules.max_value

    def show(value: Any) -> Any:
        return REDACTED if pii else value

    def problem(kind_: str, message: str, value: Any) -> Anomaly:
        return Anomaly(name, kind_, SEVERITY[kind_], message, {"value": show(value)})

    def wrong_type(value: Any) -> Anomaly | None:
        if isinstance(value, float) and value != value and kind != "float":
            return None if nullable else _null_field(name)  # pandas' NaN for a missing value
        return problem("type_mismatch", f"Field {name!r} should be {kind} but is "
                       f"{type(value).__name__}: {show(value)!r}.", value)

    def outside(value: Any) -> Anomaly:
        return problem("out_of_range", f"Field {name!r} is {show(value)!r}, outside "
                       f"{interval(low, high)}.", value)

    # Open ends as infinities: the range test is one chained comparison.
    lo = -math.inf if low is None or kind not in ("integer", "float") else low
    hi = math.inf if high is None or kind not in ("integer", "float") else high
    if kind == "integer":
        def check(value: Any) -> Anomaly | None:
            if type(value) is not int and (
                    type(value) is bool or not isinstance(value, _NUMBERS)
                    or (isinstance(value, (float, np.floating)) and not value.is_integer())):
                return wrong_type(value)
            return None if lo <= value <= hi else outside(value)
        return check
    if kind == "float":
        allow_nan, allow_inf = rules.allow_nan, rules.allow_inf

        def check(value: Any) -> Anomaly | None:
            if type(value) is not float and (type(value) is bool
                                             or not isinstance(value, _NUMBERS)):
                return wrong_type(value)
            # with open ends, inf passes the range test: inf - inf is NaN, so it goes on to
            # the allow_inf test below
            if lo <= value <= hi and (allow_inf or value - value == 0):
                return None
            if value != value:
                return None if allow_nan else problem(
                    "nan_not_allowed", f"Field {name!r} is NaN, which the schema does not "
                    "allow.", value)
            if value in (math.inf, -math.inf):
                return None if allow_inf else problem(
                    "inf_not_allowed", f"Field {name!r} is infinite, which the schema does not "
                    "allow.", value)
            return outside(value)
        return check
    if kind in TEXT:
        categories = frozenset(rules.categories) if rules.categories is not None else None
        short, long = rules.min_length, rules.max_length

        def check(value: Any) -> Anomaly | None:
            if not isinstance(value, str):
                return wrong_type(value)
            if categories is not None and value not in categories:
                return problem("unexpected_category", f"Field {name!r} is {show(value)!r}, not "
                               f"one of its {len(categories)} categories.", value)
            if (short is not None and len(value) < short) or (long is not None
                                                              and len(value) > long):
                return problem("string_length", f"Field {name!r} has length {len(value)}, "
                               f"outside {interval(short, long, '0')}.", value)
            return None
        return check
    if kind == "boolean":
        return lambda value: (None if isinstance(value, (bool, np.bool_))
                              else wrong_type(value))
    if kind == "datetime":
        low_utc = None if low is None else _utc(low)
        high_utc = None if high is None else _utc(high)

        def check(value: Any) -> Anomaly | None:
            if isinstance(value, str):  # JSON carries datetimes as ISO text
                try:
                    value = dt.datetime.fromisoformat(value)
                except ValueError:
                    return wrong_type(value)
            elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                value = dt.datetime(value.year, value.month, value.day)
            elif not isinstance(value, dt.datetime):
                return wrong_type(value)
            if low_utc is None and high_utc is None:
                return None
            moment = _utc(value)  # naive values and bounds are taken as UTC
            if (low_utc is not None and moment < low_utc) or (high_utc is not None
                                                              and moment > high_utc):
                return outside(value)
            return None
        return check
    if kind == "binary":
        return lambda value: (None if isinstance(value, (bytes, bytearray, memoryview))
                              else wrong_type(value))
    return None
