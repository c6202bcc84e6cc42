"""A node's arguments sorted into inputs and parameters, and its cache key.

Each leaf of the arguments is one of: a handle (an upstream output: an input), a
:class:`~prodml.pipelines.source.Source` (an input recorded as a "Source" artifact, digested
by content), a value JSON holds (a parameter), a function (a parameter recorded by name and
code digest), or any other object (an input recorded as a "Value" artifact, digested by its
serialized bytes). The cache key is the digest of the code digest, the parameters and the
input digests, so any change to one of them gives a new key.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from prodml.pipelines.code import CACHE_VERSION, code_digest, function_ref
from prodml.pipelines.graph import Node, substitute
from prodml.pipelines.records import ArtifactSpec, InputBinding
from prodml.pipelines.source import Source
from prodml.pipelines.step import StepOutput
from prodml.pipelines.task import Given, Slot
from prodml.pipelines.values import canonical_json, default_type, is_json, serialize, stored_facts

NOT_PARAM = object()


@dataclass(frozen=True)
class OutputState:
    """An output the driver knows: its artifact and where its value is."""

    artifact_id: int
    digest: str
    ref: Any  # task.Produced or task.Stored


@dataclass
class Bound:
    """A node ready to be recorded and run."""

    arguments: dict[str, Any]  # with Slot markers
    inputs: dict[str, Any] = field(default_factory=dict)  # path -> Produced/Stored/Given
    bindings: list[InputBinding] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # input path -> digest
    code_digest: str = ""
    cache_key: str = ""


def bind(node: Node, outputs: dict[tuple[str, str], OutputState], store: Any) -> Bound:
    """Sort ``node``'s arguments (see the module docstring); ``store``'s blob store keeps
    Value inputs, and a source that lives in the store (a prediction log window) is
    digested there."""
    bound = Bound(arguments={})
    blobs = store.artifacts

    def leaf(path: str, value: Any) -> Any:
        if isinstance(value, StepOutput):
            state = outputs[(value.node, value.name)]
            bound.inputs[path] = state.ref
            bound.bindings.append(InputBinding(path, artifact_id=state.artifact_id))
            bound.digests[path] = state.digest
            return Slot(path)
        if isinstance(value, Source):
            digest = value.digest(store)
            bound.inputs[path] = Given(value)
            bound.bindings.append(InputBinding(path, artifact=ArtifactSpec(
                "Source", digest, value.uri, value.display_name(), None,
                value.properties())))
            bound.digests[path] = digest
            return Slot(path)
        if _param(value) is not NOT_PARAM:
            return value
        data, fmt = serialize(value, blobs)
        blob = blobs.put_bytes(data)
        bound.inputs[path] = Given(value)
        bound.bindings.append(InputBinding(path, artifact=ArtifactSpec(
            default_type(value), blob.sha256, blob.uri, f"{node.name}.{path}", blob.sha256,
            stored_facts(value, data, fmt))))
        bound.digests[path] = blob.sha256
        return Slot(path)

    bound.arguments = {k: substitute(v, leaf, k) for k, v in node.arguments.items()}
    bound.params = {k: substitute(v, _recorded) for k, v in bound.arguments.items()}
    bound.code_digest = code_digest(node.step.function)
    bound.cache_key = cache_key(bound.code_digest, bound.params, bound.digests)
    return bound


def cache_key(code: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """SHA-256 of the code digest, parameters and input digests.

    >>> a = cache_key("c0de", {"min_age": 18}, {"frame": "d1"})
    >>> a == cache_key("c0de", {"min_age": 18}, {"frame": "d1"})
    True
    >>> a == cache_key("c0de", {"min_age": 21}, {"frame": "d1"})
    False
    """
    text = canonical_json({"version": CACHE_VERSION, "code": code, "params": params,
                           "inputs": inputs})
    return hashlib.sha256(text).hexdigest()


def _param(value: Any) -> Any:
    """The JSON a parameter is recorded as, or NOT_PARAM when ``value`` is an input."""
    if is_json(value):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item") and \
            getattr(value, "shape", None) == ():
        item = value.item()
        return item if is_json(item) else NOT_PARAM
    if callable(value) and hasattr(value, "__qualname__"):
        return {"callable": function_ref(value), "code_digest": code_digest(value)}
    try:
        if hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None)):
            data = value.model_dump(mode="json")  # a pydantic model
        elif dataclasses.is_dataclass(value):
            to_dict = getattr(value, "to_dict", None)
            data = to_dict() if callable(to_dict) else dataclasses.asdict(value)
        else:
            return NOT_PARAM
    except Exception:  # noqa: BLE001 - not a plain record after all: a Value input
        return NOT_PARAM
    return {"object": function_ref(type(value)), "value": data} if is_json(data) else NOT_PARAM


def _recorded(path: str, value: Any) -> Any:
    if isinstance(value, Slot):
        return {"$input": value.path}
    recorded = _param(value)
    return repr(value)[:200] if recorded is NOT_PARAM else recorded
