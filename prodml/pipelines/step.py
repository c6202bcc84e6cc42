"""``@pm.step``: a plain function that a pipeline can wire by its data.

Outside a pipeline a step is its function: calling it calls the function. While a pipeline
function is being traced, calling a step records a node of the pipeline's graph and returns an
:class:`StepOutput` handle (or a tuple of them for ``outputs=(...)``). Handles passed to other
steps are the data edges; every other argument is a parameter.

>>> import prodml as pm
>>> @pm.step
... def double(x: int) -> int:
...     return 2 * x
>>> double(21)
42
>>> double.name, double.cache, double.approval
('double', True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from prodml.errors import InvalidInputError

if TYPE_CHECKING:
    from prodml.pipelines.graph import Graph

R = TypeVar("R")

# The graph being traced in this context (None: steps are plain calls). A ContextVar, not a
# global: threads that run steps never see a trace, so a step calling another step while it
# runs makes a plain call.
_tracing: ContextVar[Graph | None] = ContextVar("prodml_pipeline_tracing", default=None)


@dataclass(frozen=True, eq=False)
class StepOutput:
    """A handle on one output of one step in a pipeline being traced (a data edge)."""

    node: str  # the step's name in the graph
    name: str  # the output's name ("output" for a single output)

    def __repr__(self) -> str:
        return f"<output {self.name!r} of step {self.node!r}>"

    def _misuse(self, *_: Any) -> Any:
        raise InvalidInputError(
            "pipeline", repr(self),
            "a step's output is a handle while the pipeline is traced: pass it to another "
            "step; its value exists only when the step runs")

    __bool__ = __iter__ = __len__ = __getitem__ = __call__ = _misuse


class Step(Generic[R]):
    """A function made into a pipeline step (see :func:`step`)."""

    def __init__(self, function: Callable[..., R], *, name: str | None = None,
                 cache: bool = True, approval: bool = False,
                 outputs: tuple[str, ...] | None = None) -> None:
        if not callable(function):
            raise InvalidInputError("step", function, "must decorate a function")
        if outputs is not None:
            outputs = tuple(outputs)
            if not outputs or len(set(outputs)) != len(outputs) or not all(
                    isinstance(o, str) and o for o in outputs):
                raise InvalidInputError("outputs", outputs,
                                        "must be distinct, non-empty output names")
        self.function = function
        self.name = name or getattr(function, "__name__", "step")
        self.cache = cache
        self.approval = approval
        self.outputs = outputs
        functools.update_wrapper(self, function)  # type: ignore[arg-type]

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.outputs or ("output",)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = _tracing.get()
        if graph is None:
            return self.function(*args, **kwargs)
        return graph.add(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name}>"


@overload
def step(function: Callable[..., R], /) -> Step[R]: ...


@overload
def step(*, name: str | None = None, cache: bool = True, approval: bool = False,
         outputs: tuple[str, ...] | None = None) -> Callable[[Callable[..., R]], Step[R]]: ...


def step(function: Callable[..., R] | None = None, /, *, name: str | None = None,
         cache: bool = True, approval: bool = False,
         outputs: tuple[str, ...] | None = None) -> Any:
    """Make ``function`` a pipeline step; use bare (``@pm.step``) or with options.

    ``name`` is the step's name in runs (default: the function's name); ``cache=False`` runs
    it every time; ``approval=True`` stops the run before it until someone approves;
    ``outputs=("train", "test")`` names the items of the tuple it returns, each recorded as
    its own artifact and wired on its own.

    >>> @step(outputs=("low", "high"))
    ... def halves(values: list) -> tuple:
    ...     middle = len(values) // 2
    ...     return values[:middle], values[middle:]
    >>> halves([1, 2, 3, 4])
    ([1, 2], [3, 4])
    >>> halves.output_names
    ('low', 'high')
    """
    def wrap(fn: Callable[..., R]) -> Step[R]:
        return Step(fn, name=name, cache=cache, approval=approval, outputs=outputs)

    return wrap if function is None else wrap(function)
