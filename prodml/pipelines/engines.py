"""Where steps run: threads in this process, worker processes, or tasks on a Dask cluster.

An engine only runs :func:`~prodml.pipelines.task.execute` and says which runs finished; the
driver does all the bookkeeping. On Dask a step's result stays on the worker that made it
and goes straight to the workers of the steps that read it; the driver fetches only a copy
without the values (outputs are in the blob store already). In worker processes a step
reads what the steps before it wrote from the blob store, and sends back only that copy.
"""

from __future__ import annotations

import os
import sys
import uuid
from concurrent.futures import (FIRST_COMPLETED, Future, ProcessPoolExecutor,
                                ThreadPoolExecutor, wait)
from typing import Any, Protocol

from prodml.errors import InvalidInputError
from prodml.pipelines.task import Produced, StepTask, Stored, TaskResult, execute, meta_of

ENGINES = ("local", "processes", "dask")


class Engine(Protocol):
    def submit(self, name: str, task: StepTask, inputs: dict[str, Any]) -> Any: ...

    def wait(self, handles: list[Any]) -> list[tuple[Any, TaskResult]]: ...

    def release(self, name: str) -> None: ...  # no later step reads this step's values

    def close(self) -> None: ...


class _PoolEngine:
    """Steps as futures of a ``concurrent.futures`` pool, each known by its step's name."""

    def __init__(self, pool: ThreadPoolExecutor | ProcessPoolExecutor) -> None:
        self.pool = pool
        self.names: dict[Future[TaskResult], str] = {}

    def _track(self, name: str, future: Future[TaskResult]) -> Future[TaskResult]:
        self.names[future] = name
        return future

    def wait(self, handles: list[Any]) -> list[tuple[Any, TaskResult]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        finished = []
        for future in done:
            name = self.names.pop(future)
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - a worker died, unpickling failed
                result = TaskResult(error=f"{type(error).__name__}: {error}", exception=error)
            self._keep(name, result)
            finished.append((future, result))
        return finished

    def _keep(self, name: str, result: TaskResult) -> None:
        """What later steps will need of a finished one."""

    def release(self, name: str) -> None:
        pass

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class LocalEngine(_PoolEngine):
    """Steps on a thread pool: independent steps run at the same time."""

    def __init__(self, max_workers: int | None = None) -> None:
        workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        super().__init__(ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="prodml-step"))
        self.results: dict[str, TaskResult] = {}  # values stay in memory for the readers

    def submit(self, name: str, task: StepTask, inputs: dict[str, Any]) -> Future[TaskResult]:
        return self._track(name, self.pool.submit(execute, task, inputs, self.results))

    def _keep(self, name: str, result: TaskResult) -> None:
        self.results[name] = result

    def release(self, name: str) -> None:
        self.results.pop(name, None)


class ProcessEngine(_PoolEngine):
    """Steps in worker processes (``spawn``ed): CPU-bound Python steps run in parallel,
    free of the driver's GIL. A task travels as cloudpickle bytes, so a step defined in a
    pipeline file loaded by path (or in ``__main__``) travels by value."""

    def __init__(self, max_workers: int | None = None) -> None:
        import multiprocessing

        super().__init__(ProcessPoolExecutor(max_workers=max_workers or os.cpu_count() or 2,
                                             mp_context=multiprocessing.get_context("spawn")))
        self.stored: dict[tuple[str, str], Stored] = {}

    def submit(self, name: str, task: StepTask, inputs: dict[str, Any]) -> Future[TaskResult]:
        import cloudpickle

        # What ran in another process is read back from the blob store it wrote to.
        local = {path: self.stored[(ref.node, ref.name)] if isinstance(ref, Produced) else ref
                 for path, ref in inputs.items()}
        module = sys.modules.get(task.step.function.__module__)
        if module is not None and getattr(module, "__prodml_loaded_from_path__", False):
            cloudpickle.register_pickle_by_value(module)
        try:
            payload = cloudpickle.dumps((task, local))
        except Exception as error:  # noqa: BLE001 - e.g. a lock or a connection as argument
            # The step fails like any other: recorded, with the reason, downstream skipped.
            future: Future[TaskResult] = Future()
            future.set_result(TaskResult(error=f"step {task.context.step} cannot be sent to "
                                         f"a worker process: {type(error).__name__}: {error}"))
            return self._track(name, future)
        return self._track(name, self.pool.submit(_execute_pickled, payload))

    def _keep(self, name: str, result: TaskResult) -> None:
        for output in result.outputs:
            self.stored[(name, output.name)] = Stored(output.sha256, output.format)


def _execute_pickled(payload: bytes) -> TaskResult:
    import pickle

    task, inputs = pickle.loads(payload)  # bytes this run's driver just made
    return meta_of(execute(task, inputs, {}))


class DaskEngine:
    """Steps as tasks on a ``distributed`` cluster (an address, a Client, or a local one)."""

    def __init__(self, scheduler: Any = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - distributed is a dependency
            raise InvalidInputError("engine", "dask", "needs the 'distributed' package") from None
        self._owned: list[Any] = []
        if isinstance(scheduler, Client):
            self.client = scheduler
        elif scheduler is None:
            cluster = LocalCluster(n_workers=1, threads_per_worker=os.cpu_count() or 2,
                                   processes=False, dashboard_address=None)
            self.client = Client(cluster)
            self._owned += [self.client, cluster]
        elif isinstance(scheduler, str):
            try:
                self.client = Client(scheduler, timeout=30)
            except OSError as error:
                raise InvalidInputError("scheduler", scheduler,
                                        f"cannot reach the Dask scheduler ({error})") from None
            self._owned.append(self.client)
        else:
            raise InvalidInputError("scheduler", scheduler,
                                    "must be a scheduler address or a distributed.Client")
        self.futures: dict[str, Any] = {}

    def submit(self, name: str, task: StepTask, inputs: dict[str, Any]) -> Any:
        upstream = {ref.node: self.futures[ref.node] for ref in inputs.values()
                    if getattr(ref, "node", None) in self.futures}
        key = f"prodml-{task.context.step}-{uuid.uuid4().hex}"
        future = self.client.submit(execute, task, inputs, upstream, pure=False, key=key)
        self.futures[name] = future
        return self.client.submit(meta_of, future, pure=False,
                                  key=f"{key}-meta")

    def wait(self, handles: list[Any]) -> list[tuple[Any, TaskResult]]:
        from distributed import wait as dask_wait

        done, _ = dask_wait(handles, return_when="FIRST_COMPLETED")
        finished = []
        for meta in done:
            try:
                result = meta.result()
            except Exception as error:  # noqa: BLE001 - a worker lost, a pickling error
                result = TaskResult(error=f"{type(error).__name__}: {error}", exception=error)
            finished.append((meta, result))
        return finished

    def release(self, name: str) -> None:
        self.futures.pop(name, None)  # the last reference: the worker frees the values

    def close(self) -> None:
        self.futures.clear()
        for owned in self._owned:
            owned.close()


def open_engine(engine: str, scheduler: Any = None, max_workers: int | None = None) -> Engine:
    """The engine named ``engine`` (``local``, ``processes`` or ``dask``)."""
    if engine in ("local", "processes") and scheduler is not None:
        raise InvalidInputError("scheduler", scheduler, "only the dask engine takes one")
    if engine == "local":
        return LocalEngine(max_workers)
    if engine == "processes":
        return ProcessEngine(max_workers)
    if engine == "dask":
        return DaskEngine(scheduler)
    raise InvalidInputError("engine", engine, f"must be one of {', '.join(ENGINES)}")
