"""``pm.pipelines.current()``: what a running step knows about its execution.

A built-in step uses it to tie its records to the pipeline's: the tracked run it opened
(``set_run_id``), and the type and properties of what it returns (``annotate_output``), e.g.
a "Dataset" artifact that names the dataset version it registered. The driver writes both
when the step finishes, in the same transaction as the execution's outputs.

>>> current() is None   # outside a running step
True
>>> context = StepContext(execution_id=7, context_id="ab" * 16, step="ingest",
...                       database_url="sqlite://", artifacts="/tmp/a")
>>> context.annotate_output(type="Dataset", properties={"dataset_digest": "e3b0"})
>>> context.set_run_id("0123456789abcdef0123456789abcdef")
>>> context.annotations["output"], context.run_id[:4]
({'type': 'Dataset', 'properties': {'dataset_digest': 'e3b0'}, 'name': None}, '0123')
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prodml.errors import InvalidInputError

if TYPE_CHECKING:
    from prodml.store import Store

_local = threading.local()
# Stores by (database URL, artifact location), so that a step running in the driver's
# process uses the run's own store, and one in a Dask worker process opens it once.
_stores: dict[tuple[str, str], Store] = {}
_stores_lock = threading.Lock()


@dataclass
class StepContext:
    """The execution a step is running as (see :func:`current`)."""

    execution_id: int
    context_id: str  # the pipeline run
    step: str
    database_url: str
    artifacts: str
    output_names: tuple[str, ...] = ("output",)
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def run_context_id(self) -> str:
        return self.context_id

    @property
    def store(self) -> Store:
        """The store the pipeline records into (opened here once per process if needed)."""
        key = (self.database_url, self.artifacts)
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                from prodml.store import open_store

                store = _stores[key] = open_store(self.database_url, self.artifacts)
            return store

    def set_run_id(self, run_id: str) -> None:
        """Record ``run_id`` (a tracked run this step opened) on the execution."""
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInputError("run_id", run_id, "must be a run id")
        self.run_id = run_id

    def annotate_output(self, *, type: str | None = None,  # MLMD calls it the type
                        properties: dict[str, Any] | None = None, name: str | None = None,
                        output: str | None = None) -> None:
        """Give an output artifact a type and properties (merged over the defaults).

        ``output`` picks one of a multi-output step's outputs (default: the only one);
        ``name`` is the artifact's display name.
        """
        key = output or self.output_names[0]
        if key not in self.output_names:
            raise InvalidInputError("output", output,
                                    f"step {self.step} has outputs {list(self.output_names)}")
        if type is not None and (not isinstance(type, str) or not type):
            raise InvalidInputError("type", type, "must be a non-empty artifact type name")
        entry = self.annotations.setdefault(key, {"type": None, "properties": {},
                                                  "name": None})
        if type is not None:
            entry["type"] = type
        if name is not None:
            entry["name"] = name
        entry["properties"].update(properties or {})


def current() -> StepContext | None:
    """The running step's context in this thread; ``None`` outside a pipeline step."""
    return getattr(_local, "context", None)


def _enter(context: StepContext | None) -> StepContext | None:
    previous = current()
    _local.context = context
    return previous


def register_store(store: Store) -> None:
    """Let steps in this process use ``store`` itself instead of opening it again."""
    with _stores_lock:
        _stores[(store.database_url, store.artifacts.location)] = store
