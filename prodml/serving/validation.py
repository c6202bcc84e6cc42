"""Check a request's rows against the served version's schema before predicting.

The rules are the version's data :class:`~prodml.data.schema.Schema` when it has one (types,
ranges, categories, nulls, NaN, PII marks); otherwise its signature, read as a schema whose
columns are all required and not null. Checks run per row with the schema's compiled
:class:`~prodml.data.record_check.RecordChecker` (about a microsecond a field), and the
first broken rule becomes a 400 naming the field, the value and the rule.

>>> from prodml.tracking.signature import Signature, ColumnSpec
>>> check = RequestValidator(None, Signature((ColumnSpec("age", "integer"),)))
>>> check({"age": [30, 41]})
2
>>> check({"age": [30, "old"]})
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: records[1].age='old': Field 'age' should be integer but is str: 'old'.

Every protocol's numbers meet one more rule first, whatever the schema says of the field:
they are finite (:data:`FINITE_RULE`). Infinity, or an integer past float64's range, is the
caller's mistake: it is refused here, as a 400 naming the field, instead of failing inside
the model, where it would count as the model's error and move a canary's guards. NaN stays
the schema's business (a missing value, or ``allow_nan``), as ``None`` does.

>>> check({"age": [30, float("inf")]})
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: records[1].age=inf: must be a finite number (not Infinity, not past ±1.8e308)
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

from prodml.data.record_check import RecordChecker
from prodml.data.schema import Schema
from prodml.errors import InvalidInputError
from prodml.tracking.signature import Signature

#: The rule a number breaks when it is infinite or too large for float64 (:func:`non_finite_at`).
FINITE_RULE = "must be a finite number (not Infinity, not past ±1.8e308)"
_FLOAT_MAX = sys.float_info.max

_SCHEMA_TYPES = {"integer", "float", "boolean", "string", "category", "datetime", "binary"}


def signature_schema(signature: Signature) -> Schema:
    """The strict schema a bare signature implies: every column required, typed, not null.
    A column of ``unknown`` type (a model registered without data) takes any value until the
    server learns its type from the first request the model answers (see
    :meth:`~prodml.tracking.signature.Signature.learned`).

    >>> from prodml.tracking.signature import ColumnSpec
    >>> rules = signature_schema(Signature((ColumnSpec("a", "unknown"),))).columns["a"]
    >>> rules.type, rules.nullable
    ('any', True)
    """
    return Schema(columns={c.name: {"type": c.type, "nullable": False}
                           if c.type in _SCHEMA_TYPES else {"type": "any", "nullable": True}
                           for c in signature.inputs})


class RequestValidator:
    """Validates request columns (name → list of values) and returns the row count."""

    def __init__(self, schema: Schema | None, signature: Signature | None) -> None:
        if schema is None and signature is not None:
            schema = signature_schema(signature)
        self.schema = schema
        self.checker = RecordChecker(schema) if schema is not None else None
        self.names = list(schema.columns) if schema is not None else []
        self.pii = frozenset(n for n, c in schema.columns.items() if c.pii) if schema else \
            frozenset()
        self.infinite_ok = frozenset(n for n, c in schema.columns.items()
                                     if c.type == "float" and c.allow_inf) if schema else \
            frozenset()

    def __call__(self, columns: dict[str, list[Any]]) -> int:
        if not isinstance(columns, dict) or not columns:
            raise InvalidInputError("inputs", columns, "must hold at least one field")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise InvalidInputError("inputs", {k: len(v) for k, v in columns.items()},
                                    "every field must have the same number of rows")
        rows = lengths.pop()
        if rows == 0:
            raise InvalidInputError("inputs", 0, "must hold at least one row")
        for name, values in columns.items():
            if name not in self.infinite_ok:
                i = non_finite_at(values)
                if i is not None:
                    raise InvalidInputError(f"records[{i}].{name}" if rows > 1 else name,
                                            values[i], FINITE_RULE)
        if self.checker is None:
            return rows
        keys = list(columns)
        check = self.checker
        for i, values in enumerate(zip(*columns.values())):
            for anomaly in check(dict(zip(keys, values))):
                if anomaly.severity != "error":
                    continue
                field = anomaly.column or "record"
                value = anomaly.evidence.get("value") if anomaly.evidence else None
                where = f"records[{i}].{field}" if rows > 1 or i else field
                raise InvalidInputError(where if rows > 1 else field, value, anomaly.message)
        return rows


def non_finite_at(values: list[Any]) -> int | None:
    """The index of the first infinite number in ``values`` (or integer too large for a
    float64), or None; NaN and non-numbers are left alone.

    >>> non_finite_at([1.0, None, "x", float("nan")]), non_finite_at([1, 10 ** 400])
    (None, 1)
    """
    if len(values) > 4:
        try:  # C speed: a finite exact sum means every value is a finite number
            total = math.fsum(values)
        except (TypeError, OverflowError, ValueError):  # text, huge integers, inf - inf
            pass
        else:
            if total - total == 0.0:
                return None
    for i, value in enumerate(values):
        kind = value.__class__
        if kind is int:
            if not -_FLOAT_MAX <= value <= _FLOAT_MAX:
                return i
        elif kind is float or (kind is not str and value is not None
                               and isinstance(value, numbers.Real)):  # NumPy scalars too
            if math.isinf(value):
                return i
    return None
