"""A model's input signature: the columns it expects, with their types.

Inferred from a training frame (or an input example) when not given; the serving layer
checks requests against it until a full data schema is attached. A model registered with
neither still gets one: its ``feature_names_in_``, typed by the run's training dataset when
the run logged one, else ``float`` where the model can only read numbers (a scikit-learn
estimator, or the scaler that starts its pipeline; see :func:`numeric_inputs`). A column
still ``unknown`` takes its type from the first request the model answers (``source:
"first_request"``, recorded once in the registry by the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prodml.data.frames import column_schema, to_arrow
from prodml.errors import InvalidInputError


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # integer, float, boolean, string, category, datetime, binary, unknown


@dataclass(frozen=True)
class Signature:
    """Ordered input columns.

    >>> import pandas as pd
    >>> sig = Signature.from_data(pd.DataFrame({"age": [30], "car": ["a"]}))
    >>> sig.names, sig.to_dict()["inputs"][1]
    (['age', 'car'], {'name': 'car', 'type': 'string'})
    >>> Signature.from_dict(sig.to_dict()) == sig
    True
    """

    inputs: tuple[ColumnSpec, ...]
    source: str | None = None  # how the types were found when not from data: first_request

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.inputs]

    @classmethod
    def from_data(cls, data: Any, exclude: list[str] | None = None) -> "Signature":
        drop = set(exclude or [])
        return cls(tuple(ColumnSpec(c["name"], c["type"]) for c in column_schema(to_arrow(data))
                         if c["name"] not in drop))

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> "Signature":
        try:
            source = value.get("source")
            return cls(tuple(ColumnSpec(str(c["name"]), str(c.get("type", "unknown")))
                             for c in value["inputs"]), str(source) if source else None)
        except (KeyError, TypeError):
            raise InvalidInputError("signature", value, "must be {'inputs': [{'name': ..., "
                                    "'type': ...}, ...]}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": [{"name": c.name, "type": c.type}
                                          for c in self.inputs]}
        if self.source:
            out["source"] = self.source
        return out

    @property
    def unknown(self) -> list[str]:
        """Columns whose type is not known yet."""
        return [c.name for c in self.inputs if c.type == "unknown"]

    def learned(self, columns: dict[str, list[Any]]) -> "Signature | None":
        """This signature with its ``unknown`` columns typed by request values the model
        answered (numbers → ``float``, text → ``string``, booleans → ``boolean``); None when
        no column could be typed (all null, or mixed kinds).

        >>> sig = Signature((ColumnSpec("a", "unknown"), ColumnSpec("b", "unknown")))
        >>> sig.learned({"a": [1, 2.5], "b": [None, "x"]}).to_dict()
        {'inputs': [{'name': 'a', 'type': 'float'}, {'name': 'b', 'type': 'string'}], 'source': 'first_request'}
        """
        typed = []
        changed = False
        for column in self.inputs:
            kind = column.type
            if kind == "unknown":
                kinds = {_value_kind(v) for v in columns.get(column.name, ()) if v is not None}
                if len(kinds) == 1 and None not in kinds:
                    kind = kinds.pop()
                    changed = True
            typed.append(ColumnSpec(column.name, kind))
        return Signature(tuple(typed), "first_request") if changed else None


def _value_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "float"  # a float column accepts integers too; an integer one refuses 2.5
    if isinstance(value, str):
        return "string"
    return None


def as_signature(value: Any) -> Signature:
    """Accept a Signature, its dict form, or data to infer one from."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, dict) and "inputs" in value:
        return Signature.from_dict(value)
    return Signature.from_data(value)


def from_model_and_schema(model: Any, schema: list[dict[str, Any]] | None) -> Signature | None:
    """Signature from the model's ``feature_names_in_`` typed by a logged dataset's schema,
    else ``float`` for the inputs the model can only read as numbers, else ``unknown``.

    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = LogisticRegression().fit(pd.DataFrame({"a": [0, 1], "b": [1.5, 2]}), [0, 1])
    >>> from_model_and_schema(model, None).to_dict()
    {'inputs': [{'name': 'a', 'type': 'float'}, {'name': 'b', 'type': 'float'}]}
    >>> from_model_and_schema(model, [{"name": "a", "type": "integer"}]).inputs[0].type
    'integer'
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    types = {c["name"]: c["type"] for c in schema or []}
    numeric = numeric_inputs(model)
    return Signature(tuple(ColumnSpec(str(n), types.get(str(n)) or
                                      ("float" if str(n) in numeric else "unknown"))
                           for n in names))


# scikit-learn estimators that read text or categories as they are: the columns they take
# are not numbers-only. Checked by module so that nothing here imports scikit-learn.
_TEXT_CAPABLE_MODULES = ("sklearn.preprocessing._encoders",
                         "sklearn.preprocessing._target_encoder",
                         "sklearn.preprocessing._function_transformer",
                         "sklearn.preprocessing._label", "sklearn.impute",
                         "sklearn.feature_extraction", "sklearn.dummy", "sklearn.compose",
                         "sklearn.pipeline", "sklearn.frozen")


def numeric_inputs(model: Any) -> frozenset[str]:
    """The input columns ``model`` (fitted) can only read as numbers: all of a plain
    scikit-learn estimator's (it calls ``check_array`` on a float matrix), the first step's
    for a pipeline, and per transformer for a ``ColumnTransformer``. Empty when unsure
    (encoders, imputers, passthrough, models from other libraries).

    >>> import pandas as pd
    >>> from sklearn.compose import make_column_transformer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import OneHotEncoder, StandardScaler
    >>> X = pd.DataFrame({"age": [30, 40], "car": ["a", "b"]})
    >>> model = make_pipeline(make_column_transformer((StandardScaler(), ["age"]),
    ...                                              (OneHotEncoder(), ["car"])),
    ...                       LogisticRegression()).fit(X, [0, 1])
    >>> sorted(numeric_inputs(model))
    ['age']
    """
    names = [str(n) for n in getattr(model, "feature_names_in_", [])]
    kind = type(model)
    steps = getattr(model, "steps", None)
    if kind.__name__ == "Pipeline" and isinstance(steps, list):
        first = next((step for _, step in steps if step not in (None, "passthrough")), None)
        return numeric_inputs(first) if first is not None else frozenset()
    fitted = getattr(model, "transformers_", None)
    if kind.__name__ == "ColumnTransformer" and isinstance(fitted, list):
        found: set[str] = set()
        for _, transformer, columns in fitted:
            if isinstance(transformer, str):  # drop, passthrough: read by something else
                continue
            picked = [names[c] if isinstance(c, int) and c < len(names) else str(c)
                      for c in (columns if isinstance(columns, list) else [])]
            inner = numeric_inputs(transformer)
            found.update(c for c in picked if c in inner or _numbers_only(transformer))
        return frozenset(found)
    if not _numbers_only(model):
        return frozenset()
    categorical = getattr(model, "is_categorical_", None)  # gradient boosting's own categories
    if categorical is not None:
        return frozenset(n for n, c in zip(names, categorical) if not c)
    return frozenset(names)


def _numbers_only(model: Any) -> bool:
    module = type(model).__module__
    if not module.startswith("sklearn.") or module.startswith(_TEXT_CAPABLE_MODULES):
        return False
    tags = getattr(model, "__sklearn_tags__", None)
    try:
        inputs = tags().input_tags if tags is not None else None
    except Exception:  # an estimator whose tags cannot be computed: unsure
        return False
    return inputs is not None and not (inputs.string or inputs.categorical or inputs.dict)
