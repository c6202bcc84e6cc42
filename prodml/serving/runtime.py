"""Loaded model versions, and the micro-batcher that feeds them.

scikit-learn spends ~0.3 ms of fixed overhead per ``predict`` call on this kind of machine,
far more than the arithmetic for one row, so throughput comes from calling it once for many
requests. Each loaded version has one :class:`MicroBatcher`: while a batch is being
predicted, the requests that arrive queue up; the next call takes all of them (up to
``max_batch_rows``). An idle model answers a lone request at once: batching adds no wait
when there is no load, and grows by itself with load (the adaptive part).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
            self.predict(self.frame(row))
            return True
        except Exception:  # a made-up row may break a rule the model enforces: not fatal
            return False

    def frame(self, columns: dict[str, list[Any]]) -> pd.DataFrame:
        """The model's input frame, in its column order (extra request fields dropped)."""
        names = self.columns or list(columns)
        return pd.DataFrame({name: columns[name] for name in names}, columns=names)

    def predict(self, frame: pd.DataFrame) -> Predicted:
        """Predictions for a frame; probabilities and confidence (the top class's probability)
        when the model has ``predict_proba``."""
        if self.has_proba:
            proba = np.asarray(self.model.predict_proba(frame), dtype=float)
            classes = self.classes if self.classes is not None else list(range(proba.shape[1]))
            top = proba.argmax(axis=1)
            predictions = [classes[i] for i in top.tolist()]
            return Predicted(predictions, proba, classes, proba.max(axis=1).tolist())
        raw = np.asarray(self.model.predict(frame))
        return Predicted([_plain(v) for v in raw.tolist()], None, None, [None] * len(raw))


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


@dataclass
class _Job:
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[Predicted]


class MicroBatcher:
    """Gathers concurrent requests for one model into one vectorised ``predict`` call."""

    def __init__(self, model: LoadedModel, *, max_batch_rows: int = 256,
                 executor: concurrent.futures.Executor | None = None) -> None:
        self.model = model
        self.max_batch_rows = max_batch_rows
        self._queue: list[_Job] = []
        self._running = False
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"predict-{model.ref}")
        self.batch_sizes: list[int] = []  # recent batch sizes, for /metrics (bounded below)

    async def predict(self, columns: dict[str, list[Any]], rows: int) -> Predicted:
        loop = asyncio.get_running_loop()
        job = _Job(columns, rows, loop.create_future())
        self._queue.append(job)
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
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
                try:
                    result = await loop.run_in_executor(self._executor, self._predict, batch)
                except Exception as exc:  # the whole batch failed: retry each job alone
                    if len(batch) == 1:
                        _set(batch[0].future, exc=exc)
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
        finally:
            self._running = False

    def _predict(self, batch: list[_Job]) -> list[Predicted]:
        names = self.model.columns or list(batch[0].columns)
        if len(batch) == 1:
            merged = batch[0].columns
        else:
            merged = {name: [v for job in batch for v in job.columns[name]] for name in names}
        out = self.model.predict(self.model.frame(merged))
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

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _set(future: asyncio.Future[Any], value: Any = None, exc: BaseException | None = None
         ) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
