"""A traced pipeline: steps as nodes, in call order, wired by the handles they were given.

Call order is a topological order by construction: a step can only receive handles of steps
called before it.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prodml.errors import InvalidInputError
from prodml.pipelines.step import StepOutput

if TYPE_CHECKING:
    from prodml.pipelines.step import Step


@dataclass
class Node:
    """One call of a step: its bound arguments (handles still in place) and its upstream."""

    name: str
    step: Step[Any]
    signature: inspect.Signature
    arguments: dict[str, Any]
    upstream: tuple[str, ...]



@dataclass
class Graph:
    """The nodes of one traced pipeline."""

    pipeline: str
    nodes: dict[str, Node] = field(default_factory=dict)
    returned: list[str] = field(default_factory=list)  # nodes the pipeline function returned

    def add(self, step: Step[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        signature = _signature(step)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise InvalidInputError(f"step {step.name}", _call_text(args, kwargs),
                                    f"does not match {step.name}{signature}: {error}") from None
        bound.apply_defaults()
        name = self._unique(step.name)
        upstream: list[str] = []
        for _path, value in walk(dict(bound.arguments)):
            if isinstance(value, StepOutput):
                if value.node not in self.nodes:
                    raise InvalidInputError(f"step {name}", repr(value),
                                            "is an output of another pipeline's trace")
                if value.node not in upstream:
                    upstream.append(value.node)
        self.nodes[name] = Node(name, step, signature, dict(bound.arguments), tuple(upstream))
        if step.outputs is None:
            return StepOutput(name, "output")
        return tuple(StepOutput(name, output) for output in step.outputs)

    def _unique(self, name: str) -> str:
        if name not in self.nodes:
            return name
        n = 2
        while f"{name}_{n}" in self.nodes:
            n += 1
        return f"{name}_{n}"

    def downstream(self, name: str) -> set[str]:
        """Every node that depends on ``name``, directly or not."""
        found: set[str] = set()
        for node in self.nodes.values():  # call order: parents come first
            if name in node.upstream or found.intersection(node.upstream):
                found.add(node.name)
        return found


# Weak and keyed by the function itself: an id() key could be reused by a new function
# once the old one is freed (steps defined inside functions), and return its signature.
_signatures: weakref.WeakKeyDictionary[Any, inspect.Signature] = weakref.WeakKeyDictionary()


def _signature(step: Step[Any]) -> inspect.Signature:
    try:
        return _signatures[step.function]
    except KeyError:
        signature = _signatures[step.function] = inspect.signature(step.function)
        return signature
    except TypeError:  # not weak-referenceable (a callable object): no cache
        return inspect.signature(step.function)


def _call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"[:200]


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a structure of dicts, lists and tuples, with its path (``a[0].b``)."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else key)
    elif isinstance(value, (list, tuple)) and not _is_namedtuple(value):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


def substitute(value: Any, replace: Callable[[str, Any], Any], path: str = "") -> Any:
    """The same structure with each leaf passed through ``replace(path, leaf)``."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {key: substitute(item, replace, f"{path}.{key}" if path else key)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not _is_namedtuple(value):
        return type(value)(substitute(item, replace, f"{path}[{index}]")
                           for index, item in enumerate(value))
    return replace(path, value)


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")
