"""``@pm.pipeline``: a function whose step calls are traced into a graph, then run.

The pipeline function's parameters are the run's parameters (defaults from its signature,
overridden by ``run(params=...)``). Tracing calls the function once with those values: each
step call adds a node and returns handles, so the graph follows the data.

>>> import prodml as pm
>>> @pm.step
... def load(n: int) -> list:
...     return list(range(n))
>>> @pm.step
... def total(values: list) -> int:
...     return sum(values)
>>> @pm.pipeline
... def numbers(n: int = 4):
...     return total(load(n))
>>> graph = numbers.trace({"n": 10})
>>> [(node.name, node.upstream) for node in graph.nodes.values()]
[('load', ()), ('total', ('load',))]
>>> numbers.params
{'n': 4}
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from prodml.errors import InvalidInputError
from prodml.pipelines.graph import Graph
from prodml.pipelines.step import StepOutput, _tracing

if TYPE_CHECKING:
    from prodml.pipelines.results import PipelineRun
    from prodml.store import Store

# Pipelines defined in this process, by name: resume() finds the live definition here before
# loading the run's target from its file or module.
defined: dict[str, Pipeline] = {}


class Pipeline:
    """A traced, runnable pipeline (see :func:`pipeline`)."""

    def __init__(self, function: Callable[..., Any], *, name: str | None = None) -> None:
        if not callable(function):
            raise InvalidInputError("pipeline", function, "must decorate a function")
        self.function = function
        self.name = name or function.__name__
        self.signature = inspect.signature(function)
        for parameter in self.signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise InvalidInputError(f"pipeline {self.name}", parameter.name,
                                        "parameters must be named (no *args or **kwargs)")
        functools.update_wrapper(self, function)  # type: ignore[arg-type]
        self.target = _target(function)
        defined[self.name] = self

    @property
    def params(self) -> dict[str, Any]:
        """The parameters and their defaults (``inspect.Parameter.empty`` when required)."""
        return {p.name: p.default for p in self.signature.parameters.values()}

    def resolve_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overridden by ``params``; an unknown or missing parameter is an error."""
        given = dict(params or {})
        known = self.params
        for key, value in given.items():
            if key not in known:
                raise InvalidInputError(
                    f"params.{key}", value, f"not a parameter of pipeline {self.name} "
                    f"(its parameters: {', '.join(known) or 'none'})")
        resolved = {**{k: v for k, v in known.items() if v is not inspect.Parameter.empty},
                    **given}
        missing = [k for k in known if k not in resolved]
        if missing:
            raise InvalidInputError(f"params.{missing[0]}", None,
                                    f"pipeline {self.name} needs a value for it")
        return resolved

    def trace(self, params: Mapping[str, Any] | None = None) -> Graph:
        """Call the pipeline function with resolved params and return the graph it built."""
        resolved = self.resolve_params(params)
        graph = Graph(self.name)
        token = _tracing.set(graph)
        try:
            returned = self.function(**resolved)
        finally:
            _tracing.reset(token)
        if not graph.nodes:
            raise InvalidInputError(f"pipeline {self.name}", self.target,
                                    "calls no step: decorate its steps with @pm.step")
        graph.returned = _returned_nodes(returned)
        return graph

    def run(self, params: Mapping[str, Any] | None = None, *, store: Store | None = None,
            engine: Literal["local", "processes", "dask"] = "local", scheduler: Any = None,
            cache: bool = True, triggered_by: str = "python",
            max_workers: int | None = None) -> PipelineRun:
        """Run the pipeline and record it; returns the run (check ``run.status``).

        ``engine="local"`` runs steps on threads, ``"processes"`` in worker processes (steps
        must be importable or defined in the pipeline's file), ``"dask"`` as tasks on a
        ``distributed`` cluster: ``scheduler`` is its address or a ``distributed.Client``
        (none: a local cluster in this process).
        ``cache=False`` runs every step even when an earlier execution matches.
        """
        from prodml.pipelines.runner import start_run

        return start_run(self, params, store=store, engine=engine, scheduler=scheduler,
                         cache=cache, triggered_by=triggered_by, max_workers=max_workers)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Calling the pipeline function directly runs its steps as plain calls.
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pipeline {self.name} ({self.target})>"


def _returned_nodes(returned: Any) -> list[str]:
    items = returned if isinstance(returned, (tuple, list)) else [returned]
    return [item.node for item in items if isinstance(item, StepOutput)]


def _target(function: Callable[..., Any]) -> str:
    """Where to find the function again: ``file.py:name`` or ``module:name``."""
    module = sys.modules.get(function.__module__)
    path = getattr(module, "__file__", None)
    if function.__module__ in ("__main__", "__mp_main__") or (
            path and getattr(module, "__prodml_loaded_from_path__", False)):
        return f"{Path(path).resolve()}:{function.__qualname__}" if path else \
            f"{function.__module__}:{function.__qualname__}"
    return f"{function.__module__}:{function.__qualname__}"


@overload
def pipeline(function: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(function: Callable[..., Any] | None = None, /, *, name: str | None = None
             ) -> Any:
    """Make ``function`` a pipeline; use bare (``@pm.pipeline``) or ``@pm.pipeline(name=...)``.

    >>> @pipeline(name="empty")
    ... def nothing():
    ...     return None
    >>> nothing.name
    'empty'
    """
    def wrap(fn: Callable[..., Any]) -> Pipeline:
        return Pipeline(fn, name=name)

    return wrap if function is None else wrap(function)
