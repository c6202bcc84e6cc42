"""One chunk of a batch job: check it against the version's schema, then predict, on whole
arrays (no Python loop over rows).

Checks are :func:`~prodml.data.validate.validate`'s vectorised ones; the first broken rule
stops the job with an error naming the row, the column, the value and the rule. Rules about
the whole data (``min_rows``, a column's ``min_presence``) are checked once, on the totals,
so that the answer does not depend on the chunk size.

Answers are the server's (:meth:`~prodml.serving.runtime.LoadedModel.predict`):
``prediction`` is the class with the highest probability, ``confidence`` that probability,
and ``probability_<class>`` one column per class; a model without ``predict_proba`` gives
``prediction`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.data.schema import Schema
from prodml.data.validate import Anomaly, validate
from prodml.errors import InvalidInputError
from prodml.serving.runtime import LoadedModel

PREDICTION, CONFIDENCE, PROBABILITY = "prediction", "confidence", "probability_"


def chunk_rules(schema: Schema) -> Schema:
    """The rules one chunk can be held to: ``min_rows`` and ``min_presence`` are about the
    whole data, so they are checked once at the end (:meth:`ChunkScorer.check_totals`)."""
    return Schema(min_rows=0, columns={name: rules.model_copy(update={"min_presence": 0.0})
                                       for name, rules in schema.columns.items()})


@dataclass
class ChunkScorer:
    """Checks and scores one chunk; the same object runs here or in a Dask worker."""

    model: LoadedModel
    schema: Schema | None  # the version's rules (its signature's when it has no schema)
    features: list[str]  # the model's input columns, in its order
    keep: list[str]  # input columns copied to the output (the id column first)
    # Kept columns holding personal data: written as their hashes (log_payload.hash_pii),
    # as the prediction log stores them. The key travels with the scorer, so Dask workers
    # on other machines hash alike.
    pii: frozenset[str] = frozenset()
    key: bytes | None = field(default=None, repr=False)
    _rules: Schema | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rules = chunk_rules(self.schema) if self.schema is not None else None

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # A version's bytes never change under its reference: no need to hash the model.
        return ("ChunkScorer", self.model.ref, tuple(self.features), tuple(self.keep),
                self.schema.model_dump_json() if self.schema is not None else None,
                tuple(sorted(self.pii)))

    @property
    def read(self) -> list[str]:
        """The input columns a chunk must hold."""
        names = list(self.keep)
        for name in [*self.features, *(self.schema.columns if self.schema else ())]:
            if name not in names:
                names.append(name)
        return names

    def __call__(self, table: pa.Table, first_row: int = 0,
                 partition: int | None = None) -> pa.Table:
        """The answers for ``table`` (kept columns first); an error naming the column, the
        rule and the row when the chunk breaks a rule of the schema."""
        if self._rules is not None:
            result = validate(table, self._rules)
            if result.errors:
                raise chunk_error(result.errors[0], first_row, table.num_rows, partition)
        frame = table.select(self.features).to_pandas()
        columns = {name: self._hashed(table.column(name)) if name in self.pii
                   else table.column(name) for name in self.keep}
        columns.update(self.predict(frame))
        return pa.table(columns)

    def _hashed(self, column: pa.ChunkedArray) -> pa.Array:
        # One HMAC per value: there is no vectorised HMAC, and only PII columns pay it.
        from prodml.serving.log_payload import hash_pii, pii_key

        key = self.key if self.key is not None else pii_key()
        return pa.array([hash_pii(v, key=key) for v in column.to_pylist()], pa.string())

    def predict(self, frame: Any) -> dict[str, pa.Array]:
        """One ``predict_proba`` (or ``predict``) call; answers as :class:`LoadedModel`
        gives them, computed on whole arrays."""
        model = self.model
        if not model.has_proba:
            return {PREDICTION: pa.array(np.asarray(model.model.predict(frame)))}
        proba = np.asarray(model.model.predict_proba(frame), dtype=float)
        classes = model.classes if model.classes is not None else list(range(proba.shape[1]))
        top = proba.argmax(axis=1)
        out = {PREDICTION: pa.array(np.asarray(classes)[top]),
               CONFIDENCE: pa.array(proba[np.arange(len(top)), top])}
        for j, label in enumerate(classes):
            out[f"{PROBABILITY}{label}"] = pa.array(proba[:, j])
        return out

    def check_totals(self, rows: int, nulls: dict[str, int]) -> None:
        """The whole-data rules: at least ``min_rows`` rows, each column present enough."""
        if self.schema is None:
            return
        if rows < self.schema.min_rows:
            raise InvalidInputError("data", f"{rows:,} rows", f"the schema requires at least "
                                    f"{self.schema.min_rows:,} rows (rule too_few_rows)")
        for name, rules in self.schema.columns.items():
            if rules.min_presence > 0 and name in nulls and rows:
                presence = 1 - nulls[name] / rows
                if presence < rules.min_presence:
                    raise InvalidInputError(
                        f"data.{name}", f"{presence:.1%} present",
                        f"Column {name!r} has a value in {100 * presence:.1f}% of rows; the "
                        f"schema requires at least {100 * rules.min_presence:.1f}% "
                        "(rule low_presence)")


def chunk_error(anomaly: Anomaly, first_row: int, rows: int,
                partition: int | None = None) -> InvalidInputError:
    """A chunk's broken rule as one error naming the row, the column, the value and the rule.

    Rows are counted from the start of the input, or of the Dask ``partition`` when given.
    """
    prefix = f"partitions[{partition}]." if partition is not None else ""
    span = f"{first_row:,}-{first_row + rows - 1:,}"
    where = f"in input rows {span}" if partition is None else \
        f"in rows {span} of partition {partition}"
    detail = f"{anomaly.message} (rule {anomaly.kind}, {where})"
    examples = anomaly.evidence.get("examples") if anomaly.evidence else None
    if anomaly.column and examples:
        row = first_row + examples[0]["row"]
        return InvalidInputError(f"{prefix}rows[{row}].{anomaly.column}", examples[0]["value"],
                                 detail)
    return InvalidInputError(f"{prefix}data.{anomaly.column or 'rows'}", anomaly.kind, detail)


def build_scorer(model: LoadedModel, schema: Schema | None, names: list[str],
                 id_column: str | None, keep_columns: Sequence[str] | bool,
                 pii: frozenset[str] = frozenset(), key: bytes | None = None) -> ChunkScorer:
    """The scorer for data with columns ``names``; an error naming the column when the
    model needs one the data lacks, or a kept column is not there. Kept columns in ``pii``
    are written hashed."""
    if keep_columns is True:
        keep = list(names)
    elif keep_columns is False or keep_columns is None:
        keep = []
    elif isinstance(keep_columns, str):
        keep = [keep_columns]
    else:
        keep = list(keep_columns)
    if id_column is not None:
        keep = [id_column] + [k for k in keep if k != id_column]
    for name in keep:
        if name not in names:
            which = "id_column" if name == id_column else "keep_columns"
            raise InvalidInputError(which, name, "is not a column of the data (columns: "
                                    + ", ".join(names) + ")")
        if name == PREDICTION or name == CONFIDENCE or name.startswith(PROBABILITY):
            raise InvalidInputError("keep_columns", name, "clashes with an answer column; "
                                    "rename it first")
    features = model.columns or [n for n in names if n != id_column]
    required = [*features, *(n for n, c in (schema.columns.items() if schema else ())
                             if c.required and n not in features)]
    for name in required:
        if name not in names:
            raise InvalidInputError(f"data.{name}", "missing_column", f"model {model.ref} "
                                    f"needs column {name!r}; the data has "
                                    + ", ".join(names))
    present = [n for n in (schema.columns if schema else ()) if n in names]
    masked = frozenset(pii) & frozenset(keep)
    if masked and key is None:
        from prodml.serving.log_payload import pii_key
        key = pii_key()
    return ChunkScorer(model, _only(schema, present) if schema else None, features, keep,
                       masked, key)


def _only(schema: Schema, names: list[str]) -> Schema:
    """The schema without the optional columns the data lacks (their absence is allowed)."""
    return Schema(min_rows=schema.min_rows,
                  columns={n: c for n, c in schema.columns.items() if n in names})


@dataclass
class Scored:
    """What an engine did: rows, chunks, null counts per input column (for the whole-data
    rules and the input's record) and, without an output path, the answers."""

    rows: int = 0
    chunks: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    table: pa.Table | None = None

    def add(self, chunk: pa.Table) -> None:
        self.rows += chunk.num_rows
        self.chunks += 1
        for name, column in zip(chunk.column_names, chunk.columns):
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
