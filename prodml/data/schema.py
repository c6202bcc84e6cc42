"""Data schemas: what a dataset is expected to look like, inferred once and then edited.

``infer_schema(data)`` reads a profile (or profiles the data) and proposes, per column, a
type, presence, nullability, a domain (categories or a numeric range), string length bounds
and whether NaN / infinity may appear. The schema is a frozen pydantic model that round-trips
through YAML, so it can be reviewed and edited by hand; a malformed file gives an
:class:`~prodml.errors.InvalidInputError` naming the field and the rule.

>>> import pandas as pd
>>> frame = pd.DataFrame({"age": [23, 41, 35, 58], "plan": ["basic", "pro", "basic", "pro"]})
>>> schema = infer_schema(frame)
>>> schema["plan"].categories, schema["age"].min_value, schema["age"].max_value
(('basic', 'pro'), 19, 62)
>>> Schema.from_yaml(schema.to_yaml()) == schema
True
>>> [a.kind for a in schema.check_record({"age": 130, "plan": "gold"})]
['out_of_range', 'unexpected_category']
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from prodml.data.frames import read_table, unreadable
from prodml.errors import InvalidInputError

if TYPE_CHECKING:
    from prodml.data.validate import Anomaly

SCHEMA_VERSION = 1
TYPES = ("integer", "float", "boolean", "string", "category", "datetime", "binary", "any")
NUMERIC = ("integer", "float")
TEXT = ("string", "category")
ColumnType = Literal["integer", "float", "boolean", "string", "category", "datetime", "binary",
                     "any"]
Bound = int | float | dt.datetime


class ColumnSchema(BaseModel):
    """The rules for one column. Fields left out (None) are not checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ColumnType
    required: bool = True  # the column must be in the data
    nullable: bool = True  # nulls may appear at all
    min_presence: float = Field(0.0, ge=0.0, le=1.0)  # least share of rows with a value
    categories: tuple[str, ...] | None = None  # the allowed values (string/category columns)
    min_value: Bound | None = None  # inclusive range (numeric and datetime columns)
    max_value: Bound | None = None
    min_length: int | None = Field(None, ge=0)  # inclusive string length bounds
    max_length: int | None = Field(None, ge=0)
    allow_nan: bool = False  # float columns only
    allow_inf: bool = False
    pii: bool = False  # personal data: set by a person, kept out of reports' examples
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _presence_follows_nullable(cls, data: Any) -> Any:
        # A column that may not hold nulls is fully present; say so without making the
        # editor write both fields.
        if isinstance(data, dict) and data.get("nullable") is False \
                and data.get("min_presence") is None:
            data = {**data, "min_presence": 1.0}
        return data

    @field_validator("min_presence")
    @classmethod
    def _presence_consistent(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("nullable") is False and value < 1.0:
            raise ValueError("must be 1.0 when nullable is false (a column without nulls is "
                             "present in every row); set nullable: true to allow missing values")
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _categories_input(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if any(isinstance(v, bool) for v in value):
                raise ValueError("holds a boolean: YAML reads unquoted yes/no/true/false as "
                                 "booleans; quote categories like 'yes'")
            # Unquoted codes such as 10001 are still categories, compared as text.
            return [str(v) if isinstance(v, (int, float)) else v for v in value]
        return value

    @field_validator("categories")
    @classmethod
    def _categories_fit(cls, value: tuple[str, ...] | None,
                        info: ValidationInfo) -> tuple[str, ...] | None:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind not in TEXT:
            raise ValueError(f"categories apply to string or category columns, not {kind}")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("must not repeat a value")
        return value

    @field_validator("min_value", "max_value", mode="before")
    @classmethod
    def _bound_input(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number or a datetime, not a boolean")
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day)  # YAML reads 2024-01-31
        return value

    @field_validator("min_value", "max_value")
    @classmethod
    def _bound_fits(cls, value: Bound | None, info: ValidationInfo) -> Bound | None:
        if value is None:
            return None
        kind = info.data.get("type")
        if kind in NUMERIC and isinstance(value, dt.datetime):
            raise ValueError(f"must be a number for {_a(kind)} column")
        if kind == "datetime" and not isinstance(value, dt.datetime):
            raise ValueError("must be a datetime (e.g. 2024-01-31 or 2024-01-31T12:00:00) "
                             "for a datetime column")
        if kind is not None and kind not in NUMERIC and kind != "datetime":
            raise ValueError(f"a value range applies to integer, float or datetime columns, "
                             f"not {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        low = info.data.get("min_value")
        if info.field_name == "max_value" and low is not None and _after(low, value):
            raise ValueError(f"must be >= min_value ({low})")
        return value

    @field_validator("min_length", "max_length")
    @classmethod
    def _lengths_fit(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if value is not None and kind is not None and kind not in TEXT:
            raise ValueError(f"length bounds apply to string or category columns, not {kind}")
        low = info.data.get("min_length")
        if info.field_name == "max_length" and value is not None and low is not None \
                and value < low:
            raise ValueError(f"must be >= min_length ({low})")
        return value

    @field_validator("allow_nan", "allow_inf")
    @classmethod
    def _float_only(cls, value: bool, info: ValidationInfo) -> bool:
        kind = info.data.get("type")
        if value and kind is not None and kind != "float":
            raise ValueError(f"applies to float columns only (NaN and infinity cannot occur in "
                             f"{_a(kind)} column)")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The fields that say something (unset bounds and float-only flags are left out)."""
        out = self.model_dump(mode="json", exclude_none=True)
        if self.type != "float":
            out.pop("allow_nan"), out.pop("allow_inf")
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _after(a: Bound, b: Bound) -> bool:
    try:
        return a > b  # type: ignore[operator]
    except TypeError:  # aware against naive datetimes: compare both as UTC
        return _utc(a) > _utc(b)  # type: ignore[arg-type]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


class Schema(BaseModel):
    """Expected columns (by name) and dataset-level rules; frozen, edited by copy.

    ``from_yaml``, ``from_dict``, ``with_column`` and ``without_column`` turn broken rules
    into an :class:`~prodml.errors.InvalidInputError` naming the field; the constructor
    raises pydantic's ``ValidationError`` (a ``ValueError``) with the same information.

    >>> s = Schema(columns={"age": {"type": "integer", "min_value": 0}})
    >>> s = s.with_column("age", max_value=120)
    >>> s["age"].max_value, s.column_names
    (120, ['age'])
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = SCHEMA_VERSION
    min_rows: int = Field(1, ge=0)
    columns: dict[str, ColumnSchema]
    _checker: Any = PrivateAttr(default=None)

    @field_validator("columns", mode="before")
    @classmethod
    def _names_as_text(cls, value: Any) -> Any:
        # An unquoted YAML key like 2024 loads as a number; a column name is text.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    def __eq__(self, other: object) -> bool:  # the rules, not the compiled-checker cache
        return isinstance(other, Schema) and (self.version, self.min_rows, self.columns) == (
            other.version, other.min_rows, other.columns)

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, name: str) -> ColumnSchema:
        try:
            return self.columns[name]
        except KeyError:
            raise InvalidInputError("column", name, "is not in the schema; columns: "
                                    + ", ".join(self.columns)) from None

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def with_column(self, name: str, **changes: Any) -> "Schema":
        """A copy with column ``name`` changed (or added, when ``type`` is given), validated."""
        current = self.columns[name].to_dict() if name in self.columns else {}
        if not current and "type" not in changes:
            raise InvalidInputError("column", name, "is not in the schema; give type=... to add "
                                    "it")
        merged = {**current, **changes}
        return self._validated({**self.to_dict(), "columns": {**self._columns_dict(),
                                                              name: merged}})

    def without_column(self, name: str) -> "Schema":
        """A copy without column ``name``."""
        self[name]
        columns = {k: v for k, v in self._columns_dict().items() if k != name}
        return self._validated({**self.to_dict(), "columns": columns})

    # -- serialisation ------------------------------------------------------------------------
    def _columns_dict(self) -> dict[str, Any]:
        return {name: column.to_dict() for name, column in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (datetimes as ISO text); ``Schema.from_dict`` reads it back."""
        return {"version": self.version, "min_rows": self.min_rows,
                "columns": self._columns_dict()}

    def to_yaml(self) -> str:
        """YAML for people: one block per column, category lists on one line."""
        body = {"version": self.version, "min_rows": self.min_rows,
                "columns": {name: _yaml_ready(column.to_dict(), column)
                            for name, column in self.columns.items()}}
        return ("# prodml data schema (docs/schema.md): edit freely, then validate with\n"
                "#   prodml validate DATA --schema THIS_FILE\n"
                + yaml.dump(body, Dumper=_SchemaDumper, sort_keys=False, allow_unicode=True,
                            width=100))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_yaml` to ``path`` atomically (a reader never sees half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_yaml())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def from_dict(cls, value: Any, *, source: str = "schema") -> "Schema":
        """Validate a dict (parsed YAML or JSON); errors name the field and the rule."""
        if not isinstance(value, dict):
            raise InvalidInputError(source, "empty" if value is None else type(value).__name__,
                                    "a schema is a mapping with 'columns' (and optionally "
                                    "'min_rows', 'version')")
        return cls._validated(value, source)

    @classmethod
    def from_yaml(cls, text_or_path: str | os.PathLike[str]) -> "Schema":
        """Read a schema from YAML text or a ``.yaml`` / ``.yml`` file."""
        text, source = _yaml_text(text_or_path)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InvalidInputError(source, "YAML", f"is not valid YAML{where}: "
                                    f"{problem}") from None
        return cls.from_dict(value, source=source)

    @classmethod
    def _validated(cls, value: dict[str, Any], source: str = "schema") -> "Schema":
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise _readable(exc, source) from None

    # -- serving -----------------------------------------------------------------------------
    def check_record(self, record: dict[str, Any]) -> list[Anomaly]:
        """Anomalies of one record (a dict of field values), for request-time checks.

        Checks what one record can show: missing fields, nulls where not allowed, wrong
        types, NaN / infinity, ranges, categories and string lengths (not presence rates or
        row counts). The rules are compiled once per schema, so a field costs about a
        microsecond.

        >>> s = Schema(columns={"age": {"type": "integer", "min_value": 18, "max_value": 99}})
        >>> s.check_record({"age": 30})
        []
        >>> print(s.check_record({"age": "thirty"})[0].message)
        Field 'age' should be integer but is str: 'thirty'.
        """
        # Read the cache straight from pydantic's private dict: attribute access to a
        # private field goes through __getattr__ and would cost more than the checks.
        checker = self.__pydantic_private__["_checker"]
        if checker is None:
            from prodml.data.record_check import RecordChecker  # record_check imports this module

            checker = self._checker = RecordChecker(self)
        return checker(record)


def _yaml_ready(values: dict[str, Any], column: ColumnSchema) -> dict[str, Any]:
    # Datetime bounds go to YAML as timestamps (YAML reads them back as datetimes).
    for key in ("min_value", "max_value"):
        bound = getattr(column, key)
        if isinstance(bound, dt.datetime):
            values[key] = bound
    if "categories" in values:
        values["categories"] = _FlowList(values["categories"])
    return values


class _FlowList(list):  # type: ignore[type-arg]
    pass


class _SchemaDumper(yaml.SafeDumper):
    pass


_SchemaDumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                              flow_style=True))


def _yaml_text(text_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    if isinstance(text_or_path, os.PathLike) or (
            isinstance(text_or_path, str) and "\n" not in text_or_path
            and (text_or_path.lower().endswith((".yaml", ".yml")) or os.path.isfile(text_or_path))):
        path = Path(text_or_path)
        if not path.is_file():
            raise InvalidInputError("schema", str(path), "file does not exist")
        return path.read_text(encoding="utf-8"), str(path)
    if not isinstance(text_or_path, str):
        raise InvalidInputError("schema", type(text_or_path).__name__,
                                "must be YAML text or a path to a .yaml file")
    return text_or_path, "schema"


_FRIENDLY = {"extra_forbidden": "is not a schema field ({allowed})",
             "missing": "is required"}


def _readable(exc: ValidationError, source: str) -> InvalidInputError:
    """One error naming the first bad field and its rule, and how many more there are."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        rule = error["msg"].removeprefix("Value error, ")
        if error["type"] in _FRIENDLY:
            fields = ColumnSchema.model_fields if len(error["loc"]) == 3 else Schema.model_fields
            rule = _FRIENDLY[error["type"]].format(
                allowed="allowed: " + ", ".join(f for f in fields if not f.startswith("_")))
        value = None if error["type"] == "missing" else error.get("input")
        if isinstance(value, (dt.date, dt.time)):
            value = value.isoformat()
        problems.append((loc or "schema", value, rule))
    field, value, rule = problems[0]
    if len(problems) > 1:
        rule += f" (and {len(problems) - 1} more: " + "; ".join(
            f"{loc}: {r}" for loc, _v, r in problems[1:4]) + ("; ..." if len(problems) > 4
                                                              else "") + ")"
    if source != "schema":
        rule += f" (in {source})"
    if isinstance(value, dict):
        value = "{" + ", ".join(list(map(str, value))[:6]) + "}"
    return InvalidInputError(field, value, rule)


# -- inference -----------------------------------------------------------------------------
def infer_schema(data: Any, *, max_categories: int = 50, range_margin: float = 0.1,
                 presence_margin: float = 0.05, min_rows: int = 1) -> Schema:
    """Propose a schema from a :class:`~prodml.data.profile.Profile` or from data.

    - type: the column's logical type; an all-null column gets ``any`` (set it by hand);
    - nullable / min_presence: a column with no nulls is not nullable (min_presence 1.0);
      otherwise min_presence is the observed share less ``presence_margin``;
    - categories: string/category columns with at most ``max_categories`` distinct values,
      each seen twice on average (so an ID column is not taken for a category);
    - min_value / max_value: numeric columns, the observed range widened by ``range_margin``
      of its span on each side (not below 0 for a column that never went below 0);
    - min_length / max_length: other string columns, the observed lengths;
    - allow_nan / allow_inf: float columns, whether any were seen.

    >>> import pandas as pd
    >>> s = infer_schema(pd.DataFrame({"score": [0.5, None, 2.5], "id": ["a1", "b22", "c3"]}))
    >>> s["score"].nullable, s["score"].min_presence, s["score"].min_value, s["score"].max_value
    (True, 0.61, 0.3, 2.7)
    >>> s["id"].categories, s["id"].min_length, s["id"].max_length
    (None, 2, 3)
    """
    from prodml.data.profile import Profile, profile

    if not isinstance(data, Profile):
        if type(data).__module__.startswith("dask"):
            data = profile(data)  # profiled per partition where it lives
        elif isinstance(data, (str, os.PathLike)):
            try:
                data = profile(data)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise unreadable(data, exc) from None
        else:
            table, mixed = read_table(data)
            if mixed:
                column = next(iter(mixed.values()))
                raise InvalidInputError(f"column {column.name!r}", column.seen,
                                        "mixes Python types in one column; convert it to one "
                                        "type first (e.g. .astype(str), or pd.to_numeric(..., "
                                        "errors='coerce') for numbers)")
            if table.num_columns == 0:
                raise InvalidInputError("data", "0 columns", "a schema needs at least one "
                                        "column")
            data = profile(table)
    if data.rows == 0:
        raise InvalidInputError("data", "0 rows", "a schema is inferred from at least one row")
    return Schema(min_rows=min_rows, columns={
        name: _infer_column(col, max_categories, range_margin, presence_margin)
        for name, col in data.columns.items()})


def _infer_column(col: Any, max_categories: int, range_margin: float,
                  presence_margin: float) -> ColumnSchema:
    kind = col.logical_type
    rules: dict[str, Any] = {"type": kind if kind in TYPES else "any"}
    if kind == "null" or col.present == 0:
        rules["description"] = "all values were null when inferred: set the type"
    elif kind not in TYPES:
        rules["description"] = f"Arrow type {kind}: values are not checked"
    if col.missing:
        share = col.present / col.count
        rules["min_presence"] = max(0.0, math.floor((share - presence_margin) * 100) / 100)
    else:
        rules["nullable"] = False
    if kind == "float":
        rules["allow_nan"], rules["allow_inf"] = col.nan > 0, col.inf > 0
    if kind in NUMERIC and col.moments.n:
        rules["min_value"], rules["max_value"] = _widen(col.min, col.max, range_margin,
                                                        kind == "integer")
    if kind in TEXT and col.present:
        frequencies = col.frequencies() if col.distinct <= 1.5 * max_categories else {}
        if frequencies and len(frequencies) <= max_categories \
                and 2 * len(frequencies) <= col.present:
            rules["categories"] = sorted(frequencies)
        elif col.lengths.n:
            rules["min_length"], rules["max_length"] = (int(col.lengths.min),
                                                        int(col.lengths.max))
    return ColumnSchema(**rules)


def _widen(low: float, high: float, margin: float, integer: bool) -> tuple[Any, Any]:
    pad = margin * ((high - low) or abs(high))
    lo, hi = low - pad, high + pad
    if low >= 0:
        lo = max(lo, 0.0)
    if integer:
        return math.floor(lo), math.ceil(hi)
    if pad == 0:
        return float(low), float(high)
    step = 10.0 ** (math.floor(math.log10(high - low or abs(high))) - 2)  # 3 significant digits
    digits = max(0, -math.floor(math.log10(step)))
    return (round(math.floor(lo / step + 1e-9) * step, digits),
            round(math.ceil(hi / step - 1e-9) * step, digits))
