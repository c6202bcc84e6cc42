"""Loaded model versions, and the micro-batcher that feeds them.

scikit-learn spends ~0.3 ms of fixed overhead per ``predict`` call on this kind of machine,
far more than the arithmetic for one row, so throughput comes from calling it once for many
requests. Each loaded version has one :class:`MicroBatcher`: while a batch is being
predicted, the requests that arrive queue up; the next call takes all of them (up to
``max_batch_rows``). An idle model answers a lone request at once: batching adds no wait
when there is no load, and grows by itself with load (the adaptive part).

A pandas frame costs more again: building it and scikit-learn's per-call DataFrame
handling took a call of a scaler + logistic regression from ~0.4 ms (a float matrix) to
~1.5 ms of CPU here (pandas 3, scikit-learn 1.9). So where the answers provably cannot
differ (:func:`matrix_model`), the rows go in as one float matrix; everything else gets the
frame, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prodml.data.schema import Schema
from prodml.tracking.signature import Signature


@dataclass
class Predicted:
    """The answers for some rows: one prediction each, probabilities when the model has them."""

    predictions: list[Any]
    probabilities: np.ndarray | None  # rows x classes
    classes: list[Any] | None
    confidence: list[float | None]


@dataclass
class LoadedModel:
    """One model version in memory, with what serving needs to know about it."""

    ref: str
    name: str
    version: int
    model: Any
    signature: Signature | None
    schema: Schema | None
    classes: list[Any] | None = None
    has_proba: bool = False
    columns: list[str] = field(default_factory=list)
    _matrix_model: Any = field(default=None, init=False, repr=False, compare=False)
    _index: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._matrix_model = matrix_model(self.model, self.columns,
                                          _column_types(self.schema, self.signature))
        self._index = pd.Index(self.columns) if self.columns else None

    @classmethod
    def load(cls, ref: str, *, store: Any = None) -> "LoadedModel":
        from prodml.tracking import registry

        version = registry.get(ref, store=store)
        model = registry.load(version.ref, store=store)
        classes = getattr(model, "classes_", None)
        columns = (version.signature.names if version.signature else
                   list(version.schema.columns) if version.schema else
                   [str(c) for c in getattr(model, "feature_names_in_", [])])
        return cls(ref=version.ref, name=version.name, version=version.version, model=model,
                   signature=version.signature, schema=version.schema,
                   classes=[_plain(c) for c in classes] if classes is not None else None,
                   has_proba=callable(getattr(model, "predict_proba", None)),
                   columns=columns)

    def warm_up(self) -> bool:
        """Predict one made-up row before taking traffic: the first call of a model pays for
        thread pools and lazy imports (hundreds of ms), which a canary's p99 guard would
        otherwise charge to the first callers. False when no valid row could be made."""
        row: dict[str, list[Any]] = {}
        if self.schema is not None:
            for name, rules in self.schema.columns.items():
                row[name] = [_example_value(rules.type, rules.min_value, rules.categories)]
        elif self.signature is not None:
            for column in self.signature.inputs:
                row[column.name] = [_example_value(column.type, None, None)]
        if not row:
            return False
        try:
            self.predict_columns(row)
            return True
        except Exception:  # a made-up row may break a rule the model enforces: not fatal
            return False

    def frame(self, columns: dict[str, list[Any]]) -> pd.DataFrame:
        """The model's input frame, in its column order (extra request fields dropped)."""
        if self._index is None:
            names = list(columns)
            return pd.DataFrame({name: columns[name] for name in names}, columns=names)
        return pd.DataFrame({name: columns[name] for name in self.columns}, columns=self._index)

    def predict_columns(self, columns: dict[str, list[Any]]) -> Predicted:
        """Predictions for request columns (name → values): as one float matrix where that
        gives the frame's answers (see :func:`matrix_model`), else as a frame."""
        if self._matrix_model is not None and _default_output():
            values = [columns[name] for name in self.columns]
            if not any(None in v for v in values):  # None: the frame's own rules decide
                try:
                    matrix = np.array(values, dtype=np.float64).T  # the frame's layout too
                except (TypeError, ValueError):
                    pass  # not numbers after all: the frame path gives the model's own error
                else:
                    return self._predict(self._matrix_model, matrix)
        return self.predict(self.frame(columns))

    def predict(self, frame: pd.DataFrame) -> Predicted:
        """Predictions for a frame; probabilities and confidence (the top class's probability)
        when the model has ``predict_proba``."""
        return self._predict(self.model, frame)

    def _predict(self, model: Any, inputs: Any) -> Predicted:
        if self.has_proba:
            proba = np.asarray(model.predict_proba(inputs), dtype=float)
            classes = self.classes if self.classes is not None else list(range(proba.shape[1]))
            top = proba.argmax(axis=1)
            predictions = [classes[i] for i in top.tolist()]
            return Predicted(predictions, proba, classes, proba.max(axis=1).tolist())
        raw = np.asarray(model.predict(inputs))
        return Predicted([_plain(v) for v in raw.tolist()], None, None, [None] * len(raw))


# scikit-learn estimators whose predict/transform begins by turning X into one float64 matrix
# (``validate_data(..., dtype=FLOAT_DTYPES or float)``) and reads nothing else from a
# DataFrame but its column names, which they only check against ``feature_names_in_``.
_MATRIX_FIRST = frozenset({
    "sklearn.preprocessing._data.StandardScaler", "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.MaxAbsScaler", "sklearn.preprocessing._data.RobustScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._base.LinearRegression", "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor"})


def matrix_model(model: Any, columns: list[str], types: dict[str, str] | None) -> Any:
    """The model to call with the rows as one float matrix instead of a frame, or None.

    Only where the answers cannot differ: every input is an integer or float column (the
    request was checked against those types), and the model is a scikit-learn ``Pipeline``
    (or a lone estimator) whose first step is one of ``_MATRIX_FIRST``, exactly (not a
    subclass), fitted on exactly these columns in this order, with its output left as
    arrays. Such a step turns the frame into the same float matrix itself (int64 columns
    cast to float64, in Fortran order, as pandas lays a frame out), and every later step
    sees arrays either way. What is returned is a shallow copy whose first step forgets its
    feature names (the same fitted arrays), so scikit-learn does not warn that a matrix came
    without them; the model itself is never changed.

    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> X = pd.DataFrame({"age": [20, 35, 50, 65], "income": [1.0, 2.5, 3.0, 4.5]})
    >>> types = {"age": "integer", "income": "float"}
    >>> pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, [0, 0, 1, 1])
    >>> bare = matrix_model(pipe, ["age", "income"], types)
    >>> bool((bare.predict_proba(X.to_numpy(dtype=float)) == pipe.predict_proba(X)).all())
    True
    >>> hasattr(pipe, "feature_names_in_"), hasattr(bare, "feature_names_in_")
    (True, False)
    >>> matrix_model(pipe, ["income", "age"], types) is None  # not the fitted order
    True
    >>> matrix_model(DecisionTreeClassifier().fit(X, [0, 0, 1, 1]), ["age", "income"],
    ...              types) is None
    True
    """
    if not columns or not types or any(types.get(c) not in ("integer", "float")
                                       for c in columns):
        return None
    is_pipeline = _name(type(model)) == "sklearn.pipeline.Pipeline"
    first = model.steps[0][1] if is_pipeline and model.steps else model
    if _name(type(first)) not in _MATRIX_FIRST \
            or list(getattr(first, "feature_names_in_", ())) != list(columns) \
            or getattr(first, "_sklearn_output_config", {}).get("transform",
                                                                 "default") != "default":
        return None
    bare = copy.copy(first)
    del bare.feature_names_in_
    if first is model:
        return bare
    pipeline = copy.copy(model)
    pipeline.steps = [(model.steps[0][0], bare), *model.steps[1:]]
    return pipeline


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _default_output() -> bool:
    """scikit-learn's global ``transform_output`` is arrays (a frame would carry names)."""
    import sklearn

    return sklearn.get_config().get("transform_output", "default") == "default"


def _column_types(schema: Schema | None, signature: Signature | None) -> dict[str, str] | None:
    """The types requests are checked against (see :mod:`prodml.serving.validation`)."""
    if schema is not None:
        return {name: rules.type for name, rules in schema.columns.items()}
    if signature is not None:
        return {c.name: c.type for c in signature.inputs}
    return None


def _example_value(kind: str, low: Any, categories: Any) -> Any:
    if categories:
        return categories[0]
    if kind in ("integer", "float"):
        return low if isinstance(low, (int, float)) else 0
    if kind == "boolean":
        return False
    return ""


def _plain(value: Any) -> Any:
    """NumPy scalars as Python values, so answers serialise as JSON."""
    return value.item() if isinstance(value, np.generic) else value


class BatcherClosedError(Exception):
    """A retired version's batcher did not answer a request.

    ``taken`` False: refused on arrival, nothing was computed (the caller may route the
    request again); True: it was held, and not answered within the drain deadline.
    """

    def __init__(self, ref: str, detail: str, *, taken: bool) -> None:
        super().__init__(f"model {ref} was retired: {detail}")
        self.ref = ref
        self.taken = taken


@dataclass
class _Job:
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[Predicted]


class MicroBatcher:
    """Gathers concurrent requests for one model into one vectorised ``predict`` call.

    Retired with :meth:`drain` (a swap, a shutdown): it takes no new request from then on
    (``BatcherClosedError``, ``taken=False``), answers those it holds, and only then
    releases its thread; past the deadline, those still held fail with
    ``BatcherClosedError`` (``taken=True``). No caller's future is ever left unresolved.
    """

    def __init__(self, model: LoadedModel, *, max_batch_rows: int = 256,
                 executor: concurrent.futures.Executor | None = None) -> None:
        self.model = model
        self.max_batch_rows = max_batch_rows
        self._queue: list[_Job] = []
        self._batch: list[_Job] = []  # the jobs in the model right now
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # takes no new request
        self._shut = False  # the thread is released
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"predict-{model.ref}")
        self.batch_sizes: list[int] = []  # recent batch sizes, for /metrics (bounded below)

    @property
    def closed(self) -> bool:
        """True from the start of a drain (or close): new requests are refused."""
        return self._closing

    async def predict(self, columns: dict[str, list[Any]], rows: int) -> Predicted:
        if self._closing:
            raise BatcherClosedError(self.model.ref, "it takes no new requests", taken=False)
        loop = asyncio.get_running_loop()
        job = _Job(columns, rows, loop.create_future())
        self._queue.append(job)
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())
        return await job.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, rows = [], 0
                while self._queue and (not batch or rows + self._queue[0].rows
                                       <= self.max_batch_rows):
                    job = self._queue.pop(0)
                    batch.append(job)
                    rows += job.rows
                self._batch = batch
                try:
                    result = await loop.run_in_executor(self._executor, self._predict, batch)
                except Exception as exc:  # the whole batch failed: retry each job alone
                    if len(batch) == 1 or self._shut:
                        for job in batch:
                            _set(job.future, exc=exc)
                        continue
                    for job in batch:
                        try:
                            single = await loop.run_in_executor(self._executor,
                                                                self._predict, [job])
                            _set(job.future, single[0])
                        except Exception as one:
                            _set(job.future, exc=one)
                    continue
                for job, part in zip(batch, result):
                    _set(job.future, part)
            self._batch = []
        except BaseException:
            # Cancelled (a drain past its deadline, the loop closing): whoever waits on a
            # job of this batcher must still get an answer.
            self._fail("not answered: the model was closed")
            raise
        finally:
            self._running = False

    def _predict(self, batch: list[_Job]) -> list[Predicted]:
        names = self.model.columns or list(batch[0].columns)
        if len(batch) == 1:
            merged = batch[0].columns
        else:
            merged = {name: [v for job in batch for v in job.columns[name]] for name in names}
        out = self.model.predict_columns(merged)
        self.batch_sizes.append(len(batch))
        if len(self.batch_sizes) > 4096:
            del self.batch_sizes[:2048]
        parts, start = [], 0
        for job in batch:
            end = start + job.rows
            parts.append(Predicted(out.predictions[start:end],
                                   None if out.probabilities is None
                                   else out.probabilities[start:end],
                                   out.classes, out.confidence[start:end]))
            start = end
        return parts

    async def drain(self, timeout: float = 30.0) -> int:
        """Retire this batcher: refuse new requests at once, answer those it holds (for at
        most ``timeout`` seconds), then release its thread. Returns how many requests were
        failed (``BatcherClosedError``) because the deadline passed first."""
        self._closing = True
        task, left = self._task, 0
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():  # the model is stuck or slow: give up on what it holds
                left = self._fail(f"not answered within the drain deadline of {timeout:g} s")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.close()
        return left

    def close(self) -> None:
        """Close now: refuse new requests, fail those still queued (a batch already in the
        model finishes and is answered), release the thread. :meth:`drain` first answers
        what is queued; this is what it ends with."""
        self._closing = True
        self._fail("closed before it was answered", batch=False)
        self._shut = True
        # Never cancel_futures: a batch handed to the thread must come back to its callers.
        self._executor.shutdown(wait=False)

    def _fail(self, why: str, *, batch: bool = True) -> int:
        """Fail every request still waiting here (queued, and the batch in the model)."""
        jobs = [*(self._batch if batch else ()), *self._queue]
        self._queue.clear()
        failed = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(BatcherClosedError(self.model.ref, why, taken=True))
                failed += 1
        return failed


def _set(future: asyncio.Future[Any], value: Any = None, exc: BaseException | None = None
         ) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
