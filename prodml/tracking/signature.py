"""A model's input signature: the columns it expects, with their types.

Inferred from a training frame (or an input example) when not given; the serving layer
checks requests against it until a full data schema is attached.
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
            return cls(tuple(ColumnSpec(str(c["name"]), str(c.get("type", "unknown")))
                             for c in value["inputs"]))
        except (KeyError, TypeError):
            raise InvalidInputError("signature", value, "must be {'inputs': [{'name': ..., "
                                    "'type': ...}, ...]}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [{"name": c.name, "type": c.type} for c in self.inputs]}


def as_signature(value: Any) -> Signature:
    """Accept a Signature, its dict form, or data to infer one from."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, dict) and "inputs" in value:
        return Signature.from_dict(value)
    return Signature.from_data(value)


def from_model_and_schema(model: Any, schema: list[dict[str, Any]] | None) -> Signature | None:
    """Signature from the model's ``feature_names_in_`` typed by a logged dataset's schema."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    types = {c["name"]: c["type"] for c in schema or []}
    return Signature(tuple(ColumnSpec(str(n), types.get(str(n), "unknown")) for n in names))
