"""Validate data against a :class:`~prodml.data.schema.Schema`: anomalies with evidence.

Every check is a vectorised pass over an Arrow column (pyarrow.compute, NumPy, Polars);
example rows are the first indices of a boolean mask. Severity is fixed per kind:

================== ======== =================================================================
kind               severity when
================== ======== =================================================================
too_few_rows       error    fewer rows than ``min_rows``
missing_column     error    a required column is absent (an optional one: warning)
new_column         warning  a column the schema does not know
type_mismatch      error    values of another type (evidence: those that do not read as it)
null_not_allowed   error    nulls in a column that is not nullable
low_presence       error    share of non-null rows below ``min_presence``
nan_not_allowed    error    NaN where ``allow_nan`` is false
inf_not_allowed    error    infinity where ``allow_inf`` is false
out_of_range       error    values outside [``min_value``, ``max_value``]
unexpected_category error   values outside ``categories``
string_length      warning  lengths outside [``min_length``, ``max_length``]
================== ======== =================================================================

One record at a time (request-time checks) is :mod:`prodml.data.record_check`; it reports the same
:class:`Anomaly` kinds.

>>> import pandas as pd
>>> from prodml.data.schema import infer_schema
>>> schema = infer_schema(pd.DataFrame({"age": [20, 30, 40, 50]}))
>>> result = validate(pd.DataFrame({"age": [25, 35, 300, None]}), schema)
>>> result.ok, [(a.kind, a.evidence["count"]) for a in result.anomalies]
(False, [('null_not_allowed', 1), ('out_of_range', 1)])
>>> result.anomalies[1].evidence["examples"]
[{'row': 2, 'value': 300}]
"""

from __future__ import annotations

import datetime as dt
import decimal
import html
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.data.frames import MixedColumn, logical_type, read_table
from prodml.data.schema import TEXT, ColumnSchema, Schema
from prodml.errors import InvalidInputError

EXAMPLES = 5
SEVERITY = {"too_few_rows": "error", "missing_column": "error", "new_column": "warning",
            "type_mismatch": "error", "null_not_allowed": "error", "low_presence": "error",
            "nan_not_allowed": "error", "inf_not_allowed": "error", "out_of_range": "error",
            "unexpected_category": "error", "string_length": "warning"}
REDACTED = "<pii>"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One broken rule: where, what, how bad, a sentence for people and the evidence."""

    column: str | None  # None for dataset-level anomalies (too_few_rows)
    kind: str
    severity: str  # "error" or "warning"
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "severity": self.severity,
                "message": self.message, "evidence": _jsonable(self.evidence)}


@dataclass(frozen=True)
class ValidationResult:
    """The anomalies of one dataset; ``ok`` when none is an error."""

    rows: int
    columns: int
    anomalies: tuple[Anomaly, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.severity == "error"]

    @property
    def warnings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "columns": self.columns,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "anomalies": [a.to_dict() for a in self.anomalies]}

    def headline(self) -> str:
        verdict = "passed" if self.ok else "failed"
        return (f"validation {verdict}: {_plural(len(self.errors), 'error')}, "
                f"{_plural(len(self.warnings), 'warning')} ({self.rows:,} rows, "
                f"{self.columns} columns)")

    def summary(self) -> str:
        """A headline and one line per anomaly."""
        lines = [self.headline()]
        lines += [f"  {a.severity:8} {a.kind:20} {a.message}" for a in self.anomalies]
        return "\n".join(lines)

    __str__ = summary

    def to_html(self, title: str = "Data validation") -> str:
        """A small self-contained HTML page (inline CSS, no scripts, nothing fetched)."""
        rows = "".join(
            f'<tr class="{a.severity}"><td>{a.severity}</td><td>{_h(a.column or "(dataset)")}'
            f"</td><td>{a.kind}</td><td>{_h(a.message)}</td><td>{_evidence_html(a.evidence)}"
            "</td></tr>" for a in self.anomalies)
        table = ("<table><thead><tr><th>severity</th><th>column</th><th>kind</th>"
                 f"<th>what</th><th>evidence</th></tr></thead><tbody>{rows}</tbody></table>"
                 if self.anomalies else "<p>No anomalies.</p>")
        status = "ok" if self.ok else "failed"
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_h(title)}'
                f"</title><style>{_CSS}</style></head><body><h1>{_h(title)}</h1>"
                f'<p class="{status}">{_h(self.headline())}</p>{table}</body></html>')

    def _repr_html_(self) -> str:
        return self.to_html()


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;vertical-align:top}th{background:#f4f4f4}"
        "tr.error td:first-child{color:#b00020;font-weight:bold}"
        "tr.warning td:first-child{color:#9a6700}.ok{color:#1a7f37}.failed{color:#b00020}"
        "ul{margin:0;padding-left:1.2em}code{font-size:90%}")


def _h(text: Any) -> str:
    return html.escape(str(text))


def _evidence_html(evidence: dict[str, Any]) -> str:
    items = []
    for key, value in _jsonable(evidence).items():
        if key == "examples":
            value = ", ".join(f"row {e['row']}: {e['value']!r}" if "row" in e else repr(e)
                              for e in value)
        elif isinstance(value, float):
            value = f"{value:.4g}"
        items.append(f"<li>{_h(key)}: <code>{_h(value)}</code></li>")
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value[:200] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:100]).hex()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)[:200]


# -- whole datasets ------------------------------------------------------------------------
def validate(data: Any, schema: Schema | str | os.PathLike[str] | dict[str, Any]
             ) -> ValidationResult:
    """Check ``data`` (a frame, Arrow table or file path) against ``schema``.

    ``schema`` may be a :class:`Schema`, its dict form, YAML text or a YAML file path.
    """
    if not isinstance(schema, Schema):
        schema = (Schema.from_dict(schema) if isinstance(schema, dict)
                  else Schema.from_yaml(schema))
    table, mixed = read_table(data)
    names = table.column_names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInputError("data columns", ", ".join(twice), "column names must be unique")
    rows = table.num_rows
    found: list[Anomaly] = []
    if rows < schema.min_rows:
        found.append(_anomaly(None, "too_few_rows", f"The data has {rows:,} rows; the schema "
                              f"requires at least {schema.min_rows:,}.",
                              {"rows": rows, "min_rows": schema.min_rows}))
    for name, rules in schema.columns.items():
        if name in mixed or name in names:
            found += _check_column(name, table.column(name), rules, rows, mixed.get(name))
        elif rules.required:
            found.append(_anomaly(name, "missing_column", f"Column {name!r} ({rules.type}) is "
                                  "missing; the schema requires it.",
                                  {"expected_type": rules.type}))
        else:
            found.append(_anomaly(name, "missing_column", f"Optional column {name!r} is "
                                  "missing.", {"expected_type": rules.type}, "warning"))
    for name in names:
        if name not in schema.columns:
            kind = logical_type(table.schema.field(name).type)
            found.append(_anomaly(name, "new_column", f"Column {name!r} ({kind}) is not in the "
                                  "schema.", {"type": kind}))
    return ValidationResult(rows, table.num_columns, tuple(found))


def _anomaly(column: str | None, kind: str, message: str, evidence: dict[str, Any],
             severity: str | None = None) -> Anomaly:
    return Anomaly(column, kind, severity or SEVERITY[kind], message, evidence)


def _share(n: int, rows: int) -> str:
    return f"{n:,} of {rows:,} {'row' if rows == 1 else 'rows'} ({100 * n / rows:.1f}%)"


def _evidence(mask: np.ndarray, values: pa.Array, rows: int, pii: bool,
              **extra: Any) -> dict[str, Any]:
    first = np.flatnonzero(mask)[:EXAMPLES]
    shown = ([REDACTED] * len(first) if pii
             else values.take(pa.array(first, type=pa.int64())).to_pylist())
    return {"count": int(mask.sum()), "share": float(mask.sum()) / rows if rows else 0.0,
            **extra, "examples": [{"row": int(i), "value": v} for i, v in zip(first, shown)]}


def _mask(condition: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(condition.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _check_column(name: str, column: pa.ChunkedArray, rules: ColumnSchema, rows: int,
                  mixed: MixedColumn | None) -> list[Anomaly]:
    values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
        if rules.type in TEXT and not (pa.types.is_string(values.type)
                                       or pa.types.is_large_string(values.type)):
            values = values.cast(pa.large_string())  # categories of numbers are compared as text
    found = _presence(name, values, rules, rows)
    mismatch = _type_mismatch(name, values, rules, rows, mixed)
    if mismatch is not None:  # values of the wrong type: their ranges, lengths... mean nothing
        return [mismatch, *found]
    if rules.type == "integer" and pa.types.is_floating(values.type):
        try:  # whole numbers held as floats: show them as the integers they are
            values = values.cast(pa.int64())
        except pa.ArrowInvalid:
            pass
    if pa.types.is_floating(values.type) and rules.type == "float":
        for kind, test, allowed, word in (("nan_not_allowed", pc.is_nan, rules.allow_nan, "NaN"),
                                          ("inf_not_allowed", pc.is_inf, rules.allow_inf,
                                           "infinite")):
            mask = _mask(test(values))
            if not allowed and mask.any():
                ev = _evidence(mask, values, rows, rules.pii)
                found.append(_anomaly(name, kind, f"Column {name!r} has {ev['count']:,} {word} "
                                      f"values ({100 * ev['share']:.1f}% of rows); the schema "
                                      f"does not allow {word} values.", ev))
    if rules.min_value is not None or rules.max_value is not None:
        found += _range(name, values, rules, rows)
    if rules.categories is not None or rules.min_length is not None \
            or rules.max_length is not None:
        found += _text(name, values, rules, rows)
    return found


def _presence(name: str, values: pa.Array, rules: ColumnSchema, rows: int) -> list[Anomaly]:
    nulls = values.null_count
    if not nulls or not rows:
        return []
    mask = _mask(values.is_null())
    if not rules.nullable:
        ev = _evidence(mask, values, rows, False)
        return [_anomaly(name, "null_not_allowed", f"Column {name!r} must not be null, but "
                         f"{_share(nulls, rows)} are null.", ev)]
    presence = (rows - nulls) / rows
    if presence < rules.min_presence:
        ev = _evidence(mask, values, rows, False, presence=presence,
                       min_presence=rules.min_presence)
        return [_anomaly(name, "low_presence", f"Column {name!r} has a value in "
                         f"{100 * presence:.1f}% of rows; the schema requires at least "
                         f"{100 * rules.min_presence:.1f}%.", ev)]
    return []


# The Python types an object column's values may have, per expected type (mixed columns).
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int, np.integer), "float": (int, float, np.integer, np.floating),
    "boolean": (bool, np.bool_), "string": (str,), "category": (str,),
    "datetime": (dt.date, np.datetime64), "binary": (bytes, bytearray)}


def _foreign(types: Any, expected: str) -> np.ndarray:
    """Mask of values whose Python type is not ``expected`` (one test per distinct type)."""
    allowed = _PY_TYPES[expected]
    wrong = [t for t in types.dropna().unique()
             if not issubclass(t, allowed) or (expected in ("integer", "float")
                                               and issubclass(t, (bool, np.bool_)))]
    return types.isin(wrong).to_numpy(dtype=bool)


def _compatible(expected: str, actual: pa.DataType) -> bool:
    t = pa.types
    if expected == "any" or t.is_null(actual):
        return True
    return {"integer": t.is_integer, "boolean": t.is_boolean,
            "float": lambda a: t.is_integer(a) or t.is_floating(a) or t.is_decimal(a),
            "string": lambda a: t.is_string(a) or t.is_large_string(a),
            "category": lambda a: t.is_string(a) or t.is_large_string(a),
            "datetime": lambda a: t.is_timestamp(a) or t.is_date(a),
            "binary": lambda a: t.is_binary(a) or t.is_large_binary(a),
            }[expected](actual)


def _type_mismatch(name: str, values: pa.Array, rules: ColumnSchema, rows: int,
                   mixed: MixedColumn | None) -> Anomaly | None:
    expected = rules.type
    if mixed is not None:
        if expected == "any":
            return None
        mask = _foreign(mixed.types, expected)
        if not mask.any():
            return None
        ev = _evidence(mask, values, rows, rules.pii, expected=expected, found=mixed.seen)
        return _anomaly(name, "type_mismatch", f"Column {name!r} mixes Python types "
                        f"({mixed.seen}); {_share(ev['count'], rows)} are not {expected}"
                        f"{_for_example(ev, rules.pii)}.", ev)
    if values.null_count == len(values) or _compatible(expected, values.type):
        return None  # types are judged on values: an empty or all-null column has none
    found = logical_type(values.type)
    if expected == "integer" and pa.types.is_floating(values.type):
        whole = pc.and_(pc.is_finite(values), pc.equal(pc.floor(values), values))
        mask = _mask(pc.invert(whole))
        if not mask.any():
            return None  # integers stored as floats (pandas does this to columns with nulls)
        ev = _evidence(mask, values, rows, rules.pii, expected=expected, found=found)
        return _anomaly(name, "type_mismatch", f"Column {name!r} should hold integers but "
                        f"{_share(ev['count'], rows)} are not whole numbers"
                        f"{_for_example(ev, rules.pii)}.", ev)
    mask = _unreadable(values, expected)
    ev = _evidence(mask, values, rows, rules.pii, expected=expected, found=found)
    detail = (f"{_share(ev['count'], rows)} cannot be read as {expected}"
              f"{_for_example(ev, rules.pii)}" if ev["count"]
              else f"every value reads as {expected}: cast the column")
    return _anomaly(name, "type_mismatch", f"Column {name!r} should be {expected} but is "
                    f"{found}; {detail}.", ev)


def _for_example(ev: dict[str, Any], pii: bool) -> str:
    if not ev["examples"] or pii:
        return ""
    first = ev["examples"][0]
    return f", e.g. {_jsonable(first['value'])!r} at row {first['row']}"


def _unreadable(values: pa.Array, expected: str) -> np.ndarray:
    """Mask of the non-null values that do not read as ``expected`` (via their text)."""
    import polars as pl

    if expected in TEXT:
        return np.zeros(len(values), dtype=bool)
    try:
        if expected == "binary" or pa.types.is_binary(values.type) \
                or pa.types.is_large_binary(values.type):
            raise pa.ArrowNotImplementedError("binary is not read through text")
        text = pl.from_arrow(values.cast(pa.large_string()))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return _mask(values.is_valid())  # no text form: every value is of the wrong type
    stripped = text.str.strip_chars()
    if expected == "integer":
        read = stripped.cast(pl.Int64, strict=False)
    elif expected == "float":
        read = stripped.cast(pl.Float64, strict=False)
    elif expected == "boolean":
        words = stripped.str.to_lowercase().is_in(["true", "false"]).fill_null(False)
        return (text.is_not_null() & ~words).to_numpy()
    else:
        read = stripped.str.to_datetime(strict=False)
    return (read.is_null() & text.is_not_null()).to_numpy()


def _range(name: str, values: pa.Array, rules: ColumnSchema, rows: int) -> list[Anomaly]:
    low, high = rules.min_value, rules.max_value
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        if pa.types.is_date(values.type):
            values = values.cast(pa.timestamp("s"))
        low, high = (_as_timestamp(b, values.type) for b in (low, high))
    elif pa.types.is_decimal(values.type):
        values = values.cast(pa.float64())
    elif not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return []
    outside = _outside(values, low, high)
    if pa.types.is_floating(values.type):
        outside = pc.and_(outside, pc.is_finite(values))
    mask = _mask(outside)
    if not mask.any():
        return []
    ev = _evidence(mask, values, rows, rules.pii, min_value=rules.min_value,
                   max_value=rules.max_value, **_seen(values, mask))
    bounds = interval(rules.min_value, rules.max_value)
    span = "" if rules.pii else (f" (from {_jsonable(ev['min_seen'])} to "
                                 f"{_jsonable(ev['max_seen'])})")
    return [_anomaly(name, "out_of_range", f"Column {name!r} has {_share(ev['count'], rows)} "
                     f"outside {bounds}{span}.", ev)]


def _outside(values: pa.Array, low: Any, high: Any) -> pa.Array:
    """Where ``values`` fall below ``low`` or above ``high`` (None: that end is open)."""
    outside = pa.array(np.zeros(len(values), dtype=bool))
    if low is not None:
        outside = pc.or_(outside, pc.less(values, low))
    if high is not None:
        outside = pc.or_(outside, pc.greater(values, high))
    return outside


def _seen(values: pa.Array, mask: np.ndarray) -> dict[str, Any]:
    """The least and greatest of the masked values, as evidence."""
    seen = pc.min_max(pc.filter(values, pa.array(mask)))
    return {"min_seen": seen["min"].as_py(), "max_seen": seen["max"].as_py()}


def interval(low: Any, high: Any, lowest: str = "-inf") -> str:
    """A closed range as messages show it; a missing end is ``lowest`` or ``inf``.

    >>> interval(18, None), interval(None, 2.5), interval(None, 10, lowest="0")
    ('[18, inf]', '[-inf, 2.5]', '[0, 10]')
    """
    return (f"[{lowest if low is None else _jsonable(low)}, "
            f"{'inf' if high is None else _jsonable(high)}]")


def _as_timestamp(bound: dt.datetime | None, kind: pa.TimestampType) -> pa.Scalar | None:
    if bound is None:
        return None
    if kind.tz is None and bound.tzinfo is not None:
        bound = bound.astimezone(dt.timezone.utc).replace(tzinfo=None)
    elif kind.tz is not None and bound.tzinfo is None:
        bound = bound.replace(tzinfo=dt.timezone.utc)
    return pa.scalar(bound, type=pa.timestamp("us", kind.tz))


def _text(name: str, values: pa.Array, rules: ColumnSchema, rows: int) -> list[Anomaly]:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return []
    found = []
    if rules.categories is not None:
        allowed = pa.array(rules.categories, type=values.type)
        mask = _mask(pc.invert(pc.is_in(values, value_set=allowed)))
        if mask.any():
            counts = pc.value_counts(pc.filter(values, pa.array(mask)))
            tally = pa.table({"value": counts.field("values"), "count": counts.field("counts")})
            order = pc.sort_indices(tally, sort_keys=[("count", "descending"),
                                                      ("value", "ascending")])
            top = list(zip(*tally.take(order[:10]).to_pydict().values()))
            unexpected = {REDACTED: int(mask.sum())} if rules.pii else dict(top)
            ev = _evidence(mask, values, rows, rules.pii, unexpected=unexpected)
            listed = REDACTED if rules.pii else ", ".join(f"{v!r} ({n:,})" for v, n in top[:5])
            more = (f" and {tally.num_rows - 5} more" if tally.num_rows > 5 and not rules.pii
                    else "")
            found.append(_anomaly(name, "unexpected_category", f"Column {name!r} has "
                                  f"{_share(ev['count'], rows)} outside its "
                                  f"{len(rules.categories)} categories: {listed}{more}.", ev))
    if rules.min_length is not None or rules.max_length is not None:
        lengths = pc.utf8_length(values)
        mask = _mask(_outside(lengths, rules.min_length, rules.max_length))
        if mask.any():
            ev = _evidence(mask, values, rows, rules.pii, min_length=rules.min_length,
                           max_length=rules.max_length, **_seen(lengths, mask))
            found.append(_anomaly(name, "string_length", f"Column {name!r} has "
                                  f"{_share(ev['count'], rows)} with a length outside "
                                  f"{interval(rules.min_length, rules.max_length, '0')} "
                                  f"(lengths {ev['min_seen']} to {ev['max_seen']}).", ev))
    return found


def __getattr__(name: str) -> Any:
    # RecordChecker lived here; it is in prodml.data.record_check now, which imports this module
    # (for Anomaly), so it is loaded when asked for rather than at import.
    if name == "RecordChecker":
        from prodml.data.record_check import RecordChecker

        return RecordChecker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
