"""The serving core behind every protocol: route, validate, predict, log, answer.

One :class:`ServingService` per server process. It keeps each endpoint's deployment in
memory and polls the store's revisions (one cheap query every ``poll_interval``), so every
worker picks up a deployment change within a second; on PostgreSQL it also listens for the
changes' announcements (``LISTEN/NOTIFY``, :mod:`prodml.serving.changes`) and refreshes at
once, polling staying as the fallback. New model versions are loaded *before* the new
deployment takes traffic, so no request is routed to a version that is not ready.

A request's life (``score``): route through the deployment tree → validate against the
answering version's schema → predict through that version's micro-batcher → apply the
automation mode → log (durably, before the answer leaves) → answer. Shadows and the
canary's comparison with the primary run after, off the critical path: their errors and
timeouts never reach the caller or slow it. A candidate that raises is answered by the
primary; a paused or failing endpoint is answered by its fallback rule when it has one.

A swap (``refresh``) never drops a request: the new deployment takes every request from the
moment it is in place; each version it no longer uses is retired in the background (its
micro-batcher refuses new work, answers what it holds within ``drain_timeout``, then is
closed), so a request routed just before the swap is answered by the version it was routed
to. ``stop`` (SIGTERM) drains the same way, then closes the prediction log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from prodml.errors import InvalidInputError, NotFoundError, ProdmlError
from prodml.serving import deployment as d
from prodml.serving.canary import check_endpoint
from prodml.serving.changes import ChangeListener
from prodml.serving.endpoints import (Endpoint, get_endpoint, list_endpoints, marked_pii,
                                      policy_pii, revisions)
from prodml.serving.fallback import FallbackError, answer_records, compile_rule
from prodml.serving.fleet import CanaryController, StoreProbe, store_fault
from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
from prodml.serving.router import Decision, decide
from prodml.serving.runtime import BatcherClosedError, LoadedModel, MicroBatcher, Predicted
from prodml.serving.validation import RequestValidator
from prodml.store import Store, now_ms
from prodml.tracking.registry import record_learned_signature

log = logging.getLogger("prodml.serving")


class ModelUnavailableError(ProdmlError):
    """The model failed and no fallback rule could answer (HTTP 503)."""

    status_code = 503

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(f"endpoint {endpoint!r} could not answer: {detail}", field="endpoint",
                         value=endpoint, rule="a model or a fallback rule must answer")


@dataclass
class Scored:
    """The answer to one request (one or more rows)."""

    prediction_ids: list[str]
    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None
    confidence: list[float | None]
    model_name: str | None
    model_version: int | None
    route: str  # primary, canary, fallback, human
    statuses: list[str]  # ok, or review (a person decides: prediction None)
    suggestions: list[Any] | None = None  # the model's answer where a person decides
    mode: str = "full"
    endpoint: str = ""
    revision: int | None = None

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row, for the plain JSON protocol."""
        out = []
        for i, pid in enumerate(self.prediction_ids):
            row: dict[str, Any] = {"prediction_id": pid, "prediction": self.predictions[i],
                                   "confidence": self.confidence[i], "status": self.statuses[i]}
            if self.probabilities is not None and self.classes is not None:
                row["probabilities"] = {str(c): p for c, p in
                                        zip(self.classes, self.probabilities[i])}
            if self.suggestions is not None:
                row["suggestion"] = self.suggestions[i]
            out.append(row)
        return out


@dataclass
class EndpointInfo:
    name: str
    versions: list[int]
    inputs: list[dict[str, str]]
    outputs: list[dict[str, str]]
    classes: list[Any] | None
    platform: str
    model_name: str
    summary: str = ""


@dataclass
class _Live:
    """An endpoint as this process serves it right now."""

    endpoint: Endpoint
    fallback: Any = None  # compiled rule
    fallback_refused: str | None = None  # why the stored rule was not compiled
    models: dict[str, LoadedModel] = field(default_factory=dict)
    # The inputs stored hashed, on every route: the union of every served version's PII
    # marks and the endpoint policy's (see prodml.serving.endpoints.pii_columns).
    pii: frozenset[str] = frozenset()


class ServingService:
    """Serves the store's endpoints: the object every protocol's routes call."""

    def __init__(self, store: Store, *, log_mode: str = "durable", max_batch_rows: int = 256,
                 poll_interval: float | None = None, canary_interval: float = 0.5,
                 endpoints: list[str] | None = None,
                 fallback_allow: tuple[str, ...] | None = None,
                 fallback_timeout_ms: float | None = None,
                 drain_timeout: float | None = None, notify: bool | None = None,
                 controller_lease_s: float | None = None) -> None:
        from prodml.config import Settings

        settings = Settings.from_env()
        self.store = store
        # What a fallback rule may import and how long it may take: the server's settings,
        # never anything stored with the endpoint (see prodml.serving.fallback).
        self.fallback_allow = settings.fallback_allow if fallback_allow is None \
            else tuple(fallback_allow)
        self.fallback_timeout_ms = fallback_timeout_ms or settings.fallback_timeout_ms
        # How long a retired version (a swap, a shutdown) may take to answer what it holds.
        self.drain_timeout = drain_timeout or settings.drain_timeout_s
        self.log = PredictionLog(store, mode=log_mode)
        self.max_batch_rows = max_batch_rows
        self.poll_interval = poll_interval or settings.poll_interval
        # Announced changes (PostgreSQL only): the listener wakes the poll loop at once.
        self.notify = (settings.notify if notify is None else notify) \
            and store.dialect == "postgresql"
        self.notify_url = settings.notify_url or store.database_url
        self.listener: ChangeListener | None = None
        self._changed = asyncio.Event()
        self.canary_interval = canary_interval
        # Readiness follows the poll's own query: not ready while the store cannot be read
        # (or has not answered for a while: a connection that hangs), ready on the next
        # poll that succeeds. One replica at a time runs the canary checks (a lease that
        # outlives a few checks: see prodml.serving.fleet).
        self.store_probe = StoreProbe(store, stale_after_s=max(5.0, 10 * self.poll_interval))
        self.controller = CanaryController(store, lease_s=max(
            controller_lease_s or settings.controller_lease_s, 3 * canary_interval))
        self.only = set(endpoints) if endpoints else None
        self._live: dict[str, _Live] = {}
        self._models: dict[str, LoadedModel] = {}
        self._batchers: dict[str, MicroBatcher] = {}
        self._validators: dict[str, RequestValidator] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._learning: set[str] = set()  # versions whose input types are being recorded
        self._retiring: set[asyncio.Task[None]] = set()  # versions draining after a swap
        self._refreshing = asyncio.Lock()
        self._stopping = False
        self.metrics: Any = None  # set by the app: prodml.serving.metrics.ServingMetrics
        self.started = False

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self.log.start()
        await self.refresh()
        # What is loaded by now (libraries, models) lives as long as the server. Frozen, it
        # is left out of the collector's full passes, which otherwise scan ~260,000 objects
        # every few seconds under load: a ~150 ms pause of every request in flight (the p99).
        gc.freeze()
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()  # of this loop (a service may be started again)
        self._tasks = [loop.create_task(self._poll_forever()),
                       loop.create_task(self._canaries_forever())]
        if self.notify:
            self.listener = ChangeListener(self.notify_url, self._announced)
            self._tasks.append(loop.create_task(self.listener.run()))
        self.started = True

    async def stop(self) -> None:
        """Drain, then close, in this order (uvicorn has stopped taking connections and
        waited for the requests in flight): no more swaps; every version answers what it
        holds (at most ``drain_timeout``); shadows and background writes get a moment to
        finish; the prediction log commits everything queued and closes."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._drain_out(batcher) for batcher in
                               self._batchers.values()), *self._retiring,
                             return_exceptions=True)
        if self._background:
            _, late = await asyncio.wait(set(self._background), timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.controller.release()
        await asyncio.to_thread(self.log.close)

    async def refresh(self) -> None:
        """Load what changed in the store (models first, then the new deployment), then
        retire the versions no deployment uses any more (they drain in the background)."""
        # One at a time (the poll loop, the canary loop and an admin change all refresh):
        # otherwise one could retire a version the other has just loaded for its deployment.
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        self.store_probe.asking()
        try:
            current = await asyncio.to_thread(revisions, store=self.store)
        except Exception as exc:
            self.store_probe.failed(exc)
            raise
        self.store_probe.succeeded()
        for name, revision in current.items():
            if self.only is not None and name not in self.only:
                continue
            live = self._live.get(name)
            if live is not None and live.endpoint.revision == revision:
                continue
            try:
                endpoint = await asyncio.to_thread(get_endpoint, name, store=self.store)
                self._live[name] = await asyncio.to_thread(self._prepare, endpoint)
            except Exception:  # keep serving the old deployment; try again next poll
                log.exception("endpoint %s: cannot load revision %s", name, revision)
        for name in set(self._live) - set(current):
            del self._live[name]
        in_use = {ref for live in self._live.values() for ref in live.models}
        for ref in set(self._models) - in_use:
            self._models.pop(ref)
            self._validators.pop(ref, None)
            batcher = self._batchers.pop(ref, None)
            if batcher is not None:
                task = asyncio.get_running_loop().create_task(self._drain_out(batcher))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    async def _drain_out(self, batcher: MicroBatcher) -> None:
        """Retire a version: it answers what it holds, then is closed (see MicroBatcher)."""
        left = await batcher.drain(self.drain_timeout)
        if left:
            log.error("model %s: %d requests not answered within the drain deadline "
                      "(%g s); they were answered 503", batcher.model.ref, left,
                      self.drain_timeout)

    def _prepare(self, endpoint: Endpoint) -> _Live:
        live = _Live(endpoint)
        for leaf in d.leaves(endpoint.spec):
            model = self._models.get(leaf.model)
            if model is None:
                model = LoadedModel.load(leaf.model, store=self.store)
                model.warm_up()
                self._models[leaf.model] = model
                self._batchers[leaf.model] = MicroBatcher(model,
                                                          max_batch_rows=self.max_batch_rows)
                self._validators[leaf.model] = self._validator(model)
            live.models[leaf.model] = model
        # Per endpoint, not per loaded version: a version already loaded for another
        # endpoint, or one without marks beside one with marks, must not change the set.
        live.pii = policy_pii(endpoint.policy).union(
            *(marked_pii(m.schema) for m in live.models.values()))
        self.log.set_pii(endpoint.name, live.pii)
        if endpoint.fallback:
            try:
                live.fallback = compile_rule(endpoint.fallback, allow=self.fallback_allow)
            except ProdmlError as exc:
                # Checked again here, not only when stored: a row written straight into the
                # store must not make this process import anything either.
                live.fallback_refused = str(exc)
                log.error("endpoint %s: fallback rule refused: %s", endpoint.name, exc)
        return live

    def _validator(self, model: LoadedModel) -> RequestValidator:
        """The model's request checks: shared with a loaded version checked by the very same
        rules, so a mirror of a request already checked is not checked again."""
        for ref, validator in self._validators.items():
            other = self._models.get(ref)
            if other is not None and other is not model and other.schema == model.schema \
                    and other.signature == model.signature:
                return validator
        return RequestValidator(model.schema, model.signature)

    def _announced(self, name: str | None, revision: int | None) -> None:
        """A change was announced (``name`` None: anything may have changed)."""
        if name is not None:
            if self.only is not None and name not in self.only:
                return
            live = self._live.get(name)
            if live is not None and revision is not None and live.endpoint.revision >= revision:
                return  # already serving it (this process made the change, or polled first)
        self._changed.set()

    async def _poll_forever(self) -> None:
        while True:
            try:  # an announced change ends the wait early
                async with asyncio.timeout(self.poll_interval):
                    await self._changed.wait()
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                await self.refresh()
            except Exception as exc:
                if not store_fault(exc):  # the store's faults: see store_probe
                    log.exception("refreshing endpoints failed")

    async def _canaries_forever(self) -> None:
        while True:
            await asyncio.sleep(self.canary_interval)
            canaries = [live for live in list(self._live.values())
                        if d.find(live.endpoint.spec, d.Canary) is not None]
            if not canaries or not await self.controller.hold():
                continue  # no canary, or another replica is the controller
            for live in canaries:
                try:
                    self.controller.checks += 1
                    verdict = await asyncio.to_thread(check_endpoint, self.store, live.endpoint)
                    if verdict is not None and verdict.action not in ("wait",):
                        await self.refresh()
                except Exception as exc:
                    if not store_fault(exc):
                        log.exception("canary check of %s failed", live.endpoint.name)

    # ---- what protocols ask --------------------------------------------------------------
    def endpoint_names(self) -> list[str]:
        return sorted(self._live)

    def _get(self, name: str) -> _Live:
        live = self._live.get(name)
        if live is None:
            raise NotFoundError("endpoint", name, "served endpoints: "
                                + (", ".join(sorted(self._live)) or "none"))
        return live

    def _model_for(self, live: _Live, version: int | None) -> LoadedModel:
        """The version a request names, or the one taking all of the primary's traffic."""
        if version is None:
            return live.models[decide(live.endpoint.spec, live.endpoint.name, None).leaf.model
                               if not d.find(live.endpoint.spec, d.Canary)
                               else next(d.leaves(d.find(live.endpoint.spec,
                                                         d.Canary).primary)).model]
        for model in live.models.values():
            if model.version == version:
                return model
        raise NotFoundError("version", version, f"endpoint {live.endpoint.name!r} serves "
                            "versions " + ", ".join(str(m.version) for m in
                                                    live.models.values()))

    def describe(self, name: str, version: int | None = None) -> EndpointInfo:
        live = self._get(name)
        model = self._model_for(live, version)
        inputs = ([{"name": c.name, "type": c.type} for c in model.signature.inputs]
                  if model.signature else
                  [{"name": n, "type": c.type} for n, c in model.schema.columns.items()]
                  if model.schema else [])
        outputs = [{"name": "predict", "type": _answer_type(model)}]
        if model.has_proba:
            outputs.append({"name": "predict_proba", "type": "float"})
        return EndpointInfo(name=name, versions=sorted({m.version for m in
                                                        live.models.values()}),
                            inputs=inputs, outputs=outputs, classes=model.classes,
                            platform=f"prodml-{type(model.model).__module__.split('.')[0]}",
                            model_name=model.name, summary=live.endpoint.describe())

    @property
    def healthy(self) -> bool:
        """The prediction log can commit and the store answers this replica's polls: what
        readiness needs whether or not any endpoint is served."""
        return self.log.healthy and self.store_probe.reachable

    def ready(self, name: str, version: int | None = None) -> bool:
        """Can ``name`` answer? Not while the prediction log cannot commit (every answer is
        logged first, so each would be refused: see ``PredictionLog.healthy``), nor while
        the store cannot be read (``store_probe``)."""
        if not self.healthy:
            return False
        try:
            live = self._get(name)
            self._model_for(live, version)
            return True
        except ProdmlError:
            return False

    async def score(self, endpoint: str, columns: dict[str, list[Any]], *,
                    version: int | None = None, routing_key: str | None = None,
                    protocol: str = "plain", rerouted: bool = False) -> Scored:
        """Answer one request; its rows are logged before this returns (durable mode).

        A request that reaches a version after it was retired (only possible across an
        await: a candidate's failure handed to a primary swapped out meanwhile) is routed
        again, once, on the deployment now in place (``rerouted``): nothing was computed.
        """
        started = time.perf_counter()
        live = self._get(endpoint)
        ep = live.endpoint
        if version is not None:
            decision = Decision(leaf=d.Direct(model=self._model_for(live, version).ref))
        else:
            if routing_key is None:
                canary = d.find(ep.spec, d.Canary)
                if canary is not None and canary.routing_key:
                    values = columns.get(canary.routing_key)
                    routing_key = None if not values else str(values[0])
            decision = decide(ep.spec, ep.name, routing_key)
        model = live.models[decision.leaf.model]
        checked = self._validators[model.ref]
        rows = checked(columns)
        if ep.paused:
            return await self._fallback(live, columns, rows, started, routing_key,
                                        "endpoint paused")
        route = decision.route
        try:
            answer = await self._batchers[model.ref].predict(columns, rows)
        except BatcherClosedError as exc:
            if exc.taken or rerouted or self._stopping:
                raise self._unavailable(live, model, route, columns, rows, started,
                                        routing_key, exc) from None
            return await self.score(endpoint, columns, version=version,
                                    routing_key=routing_key, protocol=protocol, rerouted=True)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            failed = self._records(live, model, "canary" if route == "canary" else route,
                                   columns, rows, None, started, routing_key, "error", detail)
            self.log.write_nowait(failed)
            self._count(ep.name, model, route, "error", started)
            if route == "canary" and decision.canary is not None:
                # The candidate failed: the primary answers, the caller never sees it.
                primary = next(d.leaves(decision.canary.primary)).model
                model, route = live.models[primary], "primary"
                try:
                    answer = await self._batcher(model.ref).predict(columns, rows)
                except BatcherClosedError as again:
                    if again.taken or rerouted or self._stopping:
                        raise self._unavailable(live, model, route, columns, rows, started,
                                                routing_key, again) from None
                    return await self.score(endpoint, columns, version=version,
                                            routing_key=routing_key, protocol=protocol,
                                            rerouted=True)
                except Exception as again:
                    return await self._fallback(live, columns, rows, started, routing_key,
                                                f"{type(again).__name__}: {again}")
            else:
                return await self._fallback(live, columns, rows, started, routing_key, detail)
        scored = self._answer(live, model, route, decision.automation, answer, rows)
        records = self._records(live, model, scored.route, columns, rows, answer, started,
                                routing_key, None, None, scored)
        if model.schema is None and model.signature is not None and model.signature.unknown:
            self._learn_types(model, columns)
        await self.log.write(records)
        self._count(ep.name, model, route, "ok", started, rows)
        self._after(live, decision, columns, rows, scored, routing_key, checked)
        return scored

    def _batcher(self, ref: str) -> MicroBatcher:
        batcher = self._batchers.get(ref)
        if batcher is None:  # retired and drained since the request was routed
            raise BatcherClosedError(ref, "it is no longer loaded", taken=False)
        return batcher

    def _unavailable(self, live: _Live, model: LoadedModel, route: str,
                     columns: dict[str, list[Any]], rows: int, started: float,
                     routing_key: str | None, exc: BatcherClosedError
                     ) -> ModelUnavailableError:
        """A retired version did not answer (its drain deadline passed, or the server is
        shutting down): a 503 the caller may retry, recorded in the log and the metrics as
        the server's failure. Not handed to the fallback rule: the endpoint is not failing,
        this process is changing what it serves."""
        detail = str(exc) if exc.taken else "the server is shutting down"
        self.log.write_nowait(self._records(live, model, route, columns, rows, None, started,
                                            routing_key, "error", detail))
        self._count(live.endpoint.name, model, route, "error", started)
        return ModelUnavailableError(live.endpoint.name, detail)

    def _answer(self, live: _Live, model: LoadedModel, route: str,
                automation: d.Automation | None, answer: Predicted, rows: int) -> Scored:
        mode = automation.mode if automation is not None else "full"
        predictions = list(answer.predictions)
        # Where a person decides, the answer is not the model's: its own answer goes back
        # as a suggestion (assist, partial below the threshold) or not at all (shadow), and
        # the case enters the review queue; the log keeps the model's answer either way.
        if mode == "partial":
            threshold = automation.threshold  # type: ignore[union-attr]
            human = [c is not None and c < threshold for c in answer.confidence]
        else:
            human = [mode in ("shadow", "assist")] * rows
        statuses = ["review" if h else "ok" for h in human]
        suggestions = None
        if any(human):
            suggestions = [p if h and mode != "shadow" else None
                           for p, h in zip(predictions, human)]
            predictions = [None if h else p for p, h in zip(predictions, human)]
            if all(human) and route == "primary":
                route = "human"
        return Scored(prediction_ids=[new_prediction_id() for _ in range(rows)],
                      predictions=predictions,
                      probabilities=None if answer.probabilities is None
                      else answer.probabilities.tolist(),
                      classes=answer.classes, confidence=list(answer.confidence),
                      model_name=model.name, model_version=model.version, route=route,
                      statuses=statuses, suggestions=suggestions, mode=mode,
                      endpoint=live.endpoint.name, revision=live.endpoint.revision)

    def _records(self, live: _Live, model: LoadedModel | None, route: str,
                 columns: dict[str, list[Any]], rows: int, answer: Predicted | None,
                 started: float, routing_key: str | None, status: str | None,
                 error: str | None, scored: Scored | None = None,
                 parents: list[str] | None = None) -> list[PredictionRecord]:
        now = now_ms()
        latency = (time.perf_counter() - started) * 1000
        names = list(columns)
        out = []
        for i in range(rows):
            if scored is not None:
                pid, status_i = scored.prediction_ids[i], scored.statuses[i]
            else:
                pid, status_i = new_prediction_id(), status or "ok"
            value = answer.predictions[i] if answer is not None else None
            proba = None
            if answer is not None and answer.probabilities is not None and answer.classes:
                proba = {str(c): float(p) for c, p in zip(answer.classes,
                                                          answer.probabilities[i])}
            out.append(PredictionRecord(
                id=pid, time=now, endpoint=live.endpoint.name,
                model_name=model.name if model else None,
                model_version=model.version if model else None, route=route,
                revision=live.endpoint.revision, routing_key=routing_key,
                inputs={n: columns[n][i] for n in names}, prediction=value,
                probabilities=proba,
                confidence=answer.confidence[i] if answer is not None else None,
                latency_ms=latency, status=status_i, error=error,
                parent_id=parents[i] if parents else None, pii=live.pii))
        return out

    async def _fallback(self, live: _Live, columns: dict[str, list[Any]], rows: int,
                        started: float, routing_key: str | None, why: str) -> Scored:
        rule = live.fallback
        if rule is None:
            raise ModelUnavailableError(live.endpoint.name, why + (
                f"; the fallback rule was refused ({live.fallback_refused})"
                if live.fallback_refused else " and no fallback rule is set"))
        keys = list(columns)
        try:
            answers = await answer_records(rule, [dict(zip(keys, values))
                                                  for values in zip(*columns.values())],
                                           self.fallback_timeout_ms)
        except FallbackError as exc:
            raise ModelUnavailableError(live.endpoint.name, f"{why}; {exc}") from None
        scored = Scored(prediction_ids=[new_prediction_id() for _ in range(rows)],
                        predictions=answers, probabilities=None, classes=None,
                        confidence=[None] * rows, model_name=None, model_version=None,
                        route="fallback", statuses=["ok"] * rows, endpoint=live.endpoint.name,
                        revision=live.endpoint.revision)
        records = self._records(live, None, "fallback", columns, rows,
                                Predicted(answers, None, None, [None] * rows), started,
                                routing_key, "ok", why, scored)
        await self.log.write(records)
        self._count(live.endpoint.name, None, "fallback", "ok", started, rows)
        return scored

    def _learn_types(self, model: LoadedModel, columns: dict[str, list[Any]]) -> None:
        """A version registered without data has columns of unknown type, which requests
        may fill with anything; the first request it answers types them, once, for every
        worker (recorded in the registry with ``source: "first_request"``)."""
        learned = model.signature.learned(columns) if model.signature else None
        if learned is None or model.ref in self._learning:
            return
        self._learning.add(model.ref)

        async def record() -> None:
            try:
                stored = await asyncio.to_thread(record_learned_signature, model.ref, learned,
                                                 store=self.store)
            except Exception:
                log.warning("model %s: could not record its learned input types", model.ref,
                            exc_info=True)
                stored = None
            finally:
                self._learning.discard(model.ref)
            if stored is not None and stored != model.signature:
                model.signature = stored
                self._validators[model.ref] = RequestValidator(model.schema, stored)

        task = asyncio.get_running_loop().create_task(record())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- off the critical path -----------------------------------------------------------
    def _after(self, live: _Live, decision: Decision, columns: dict[str, list[Any]], rows: int,
               scored: Scored, routing_key: str | None, checked: RequestValidator) -> None:
        jobs: list[tuple[str, float]] = [(next(d.leaves(m.node)).model, m.timeout_s)
                                         for m in decision.mirrors]
        if decision.route == "canary" and decision.compare is not None \
                and scored.route == "canary":
            jobs.append((decision.compare.model, 5.0))
        for ref, timeout in jobs:
            task = asyncio.get_running_loop().create_task(
                self._shadow(live, ref, timeout, columns, rows, scored, routing_key, checked))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _shadow(self, live: _Live, ref: str, timeout: float,
                      columns: dict[str, list[Any]], rows: int, scored: Scored,
                      routing_key: str | None, checked: RequestValidator) -> None:
        model = live.models.get(ref)
        if model is None:
            return
        started = time.perf_counter()
        status, error, answer = "ok", None, None
        try:
            validator = self._validators[ref]
            if validator is not checked:  # the same rules passed already
                validator(columns)
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                answer = await self._batcher(ref).predict(columns, rows)
        except TimeoutError:
            status, error = "timeout", f"no answer within {timeout:g} s"
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
        self.log.write_nowait(self._records(live, model, "shadow", columns, rows, answer,
                                            started, routing_key, status, error,
                                            parents=scored.prediction_ids))
        self._count(live.endpoint.name, model, "shadow", status, started, rows)

    def _count(self, endpoint: str, model: LoadedModel | None, route: str, status: str,
               started: float, rows: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.observe(endpoint, model.version if model else None, route, status,
                                 time.perf_counter() - started, rows)

    def batch_sizes(self) -> dict[str, list[int]]:
        return {ref: b.batch_sizes for ref, b in self._batchers.items()}

    def endpoints(self) -> list[Endpoint]:
        return [live.endpoint for live in self._live.values()]


def _answer_type(model: LoadedModel) -> str:
    if model.classes:
        first = model.classes[0]
        if isinstance(first, str):
            return "string"
        if isinstance(first, bool):
            return "boolean"
        if isinstance(first, int):
            return "integer"
    return "float"


def all_endpoints(store: Store) -> list[Endpoint]:
    return list_endpoints(store=store)


__all__ = ["ServingService", "Scored", "EndpointInfo", "ModelUnavailableError",
           "InvalidInputError"]
