"""The canary controller: guard checks at each step, ramp-up, promotion, automatic rollback.

At each check the candidate's answers since its step began are read from the prediction log
(so every worker and replica sees the same numbers) and held against the guards, as Flagger
and Argo Rollouts analyse a step. A step begins in the write that starts it: its start is
stamped by the database's clock and its answers are those logged under that endpoint
revision or a later one (see :func:`step_window`), so no replica's clock decides which
answers count and a candidate's answers under an older deployment never do:

- error rate, latency p99 of the candidate;
- disagreement: the share of the candidate's answers that differ from the primary's answer
  to the same request (the primary is asked off-path and logged as a shadow);
- prediction shift: the total variation distance between the candidate's and the primary's
  answer mix over the step;
- accuracy drop, once labels have arrived for both sides.

A step with too few candidate answers is inconclusive (wait). ``failures`` failed checks in a
row roll back; a passed, complete step moves to the next weight; the last step promotes.
The decision is a pure function (:func:`judge`); :func:`check_endpoint` applies it with a
compare-and-set on the endpoint's revision, so among many workers exactly one acts.

>>> from prodml.serving.deployment import Canary, Direct
>>> c = Canary(primary=Direct(model="m/1"), candidate=Direct(model="m/2"), steps=(10, 100),
...            step_every_requests=50, step_started_at=0)
>>> judge(c, StepStats(requests=50, errors=1, latency_p99_ms=8.0), now=1).action
'rollback'
>>> judge(c, StepStats(requests=50, errors=0, latency_p99_ms=8.0), now=1).action
'step'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import aliased

from prodml.serving import deployment as d
from prodml.serving.endpoints import ConcurrentChangeError, Endpoint, change
from prodml.store import Store, db_now_ms
from prodml.store import tables as t

log = logging.getLogger("prodml.canary")
ACTOR = "canary-controller"
# How far behind the database's clock a replica's clock may be and its answers still count:
# a step's answers are found by revision; this lower bound on the replica-stamped ``time``
# only lets the query use the (endpoint, time) index and keeps a recreated endpoint's
# older rows out.
CLOCK_SKEW_ALLOWANCE_MS = 60_000


@dataclass(frozen=True)
class StepStats:
    """What the candidate (and the primary beside it) did since the step began."""

    requests: int = 0  # candidate answers, errors included
    errors: int = 0
    latency_p99_ms: float | None = None
    compared: int = 0  # candidate answers with the primary's answer beside them
    disagreements: int = 0
    prediction_shift: float | None = None  # total variation distance of the answer mix
    labelled: int = 0
    candidate_labelled: int = 0  # labelled answers on each side
    primary_labelled: int = 0
    candidate_accuracy: float | None = None
    primary_accuracy: float | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Verdict:
    action: str  # wait, step, promote, rollback, failed_check
    reasons: tuple[str, ...] = ()
    stats: StepStats = field(default_factory=StepStats)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def failed_guards(guards: d.Guards, stats: StepStats) -> list[str]:
    """The guards the step's numbers break, each as a sentence with the numbers."""
    failed = []
    if stats.requests and guards.max_error_rate is not None:
        rate = stats.errors / stats.requests
        if rate > guards.max_error_rate:
            failed.append(f"error rate {rate:.3f} > {guards.max_error_rate:g} "
                          f"({stats.errors} of {stats.requests} candidate requests)")
    if stats.latency_p99_ms is not None and guards.max_latency_p99_ms is not None \
            and stats.latency_p99_ms > guards.max_latency_p99_ms:
        failed.append(f"latency p99 {stats.latency_p99_ms:.1f} ms > "
                      f"{guards.max_latency_p99_ms:g} ms")
    if stats.compared and guards.max_disagreement is not None:
        share = stats.disagreements / stats.compared
        if share > guards.max_disagreement:
            failed.append(f"disagreement with the primary {share:.3f} > "
                          f"{guards.max_disagreement:g} ({stats.compared} compared)")
    if stats.prediction_shift is not None and guards.max_prediction_shift is not None \
            and stats.prediction_shift > guards.max_prediction_shift:
        failed.append(f"prediction shift {stats.prediction_shift:.3f} > "
                      f"{guards.max_prediction_shift:g}")
    # A few labels say little: accuracy is compared once each side has min_labels of them.
    if guards.max_accuracy_drop is not None and stats.candidate_accuracy is not None \
            and stats.primary_accuracy is not None \
            and min(stats.candidate_labelled, stats.primary_labelled) >= guards.min_labels \
            and stats.primary_accuracy - stats.candidate_accuracy > guards.max_accuracy_drop:
        failed.append(f"accuracy {stats.candidate_accuracy:.3f} vs primary "
                      f"{stats.primary_accuracy:.3f}: drop > {guards.max_accuracy_drop:g}")
    return failed


def judge(canary: d.Canary, stats: StepStats, now: int) -> Verdict:
    """What the controller does with the step's numbers."""
    guards = canary.guards
    failed = failed_guards(guards, stats)
    if failed and (stats.requests >= guards.min_requests or stats.errors >= guards.min_requests
                   or _hopeless(guards, stats)):
        if canary.failed_checks + 1 >= guards.failures:
            return Verdict("rollback", tuple(failed), stats)
        return Verdict("failed_check", tuple(failed), stats)
    if stats.requests < guards.min_requests:
        return Verdict("wait", (f"{stats.requests} of {guards.min_requests} candidate "
                                "requests needed",), stats)
    if failed:  # pragma: no cover - covered by the first branch
        return Verdict("wait", tuple(failed), stats)
    needed = canary.step_every_requests
    if needed is None and canary.step_every_seconds is None:
        needed = guards.min_requests
    done_by_requests = needed is not None and stats.requests >= needed
    done_by_time = canary.step_every_seconds is not None and \
        stats.elapsed_s >= canary.step_every_seconds
    if not (done_by_requests or done_by_time):
        return Verdict("wait", ("step not complete",), stats)
    if canary.step_index + 1 >= len(canary.steps):
        return Verdict("promote", (f"all {len(canary.steps)} steps passed",), stats)
    return Verdict("step", (f"step {canary.step_index + 1} passed at {canary.weight:g}%",),
                   stats)


def _hopeless(guards: d.Guards, stats: StepStats) -> bool:
    """An error rate so high that waiting for ``min_requests`` cannot save the step."""
    if guards.max_error_rate is None or not stats.requests:
        return False
    worst_final = stats.errors / max(stats.requests, guards.min_requests)
    return worst_final > guards.max_error_rate


def apply(canary: d.Canary, verdict: Verdict, now: int) -> tuple[d.Node | None, str]:
    """The node that replaces the canary for a verdict (None: leave it) and the action name."""
    if verdict.action == "rollback":
        return canary.primary, "rollback"
    if verdict.action == "promote":
        return canary.candidate, "promote"
    if verdict.action == "step":  # the write stamps the new step (endpoints.change)
        return canary.model_copy(update={"step_index": canary.step_index + 1,
                                         "step_started_at": now, "failed_checks": 0}), "step"
    if verdict.action == "failed_check":
        return canary.model_copy(update={"failed_checks": canary.failed_checks + 1}), \
            "failed_check"
    return None, "wait"


def step_window(endpoint: str, canary: d.Canary) -> Any:
    """Which logged answers belong to the canary's current step: those routed by the
    revision that started the step or a later one (every record carries the revision the
    replica served), not older than the step's database-clock start less
    :data:`CLOCK_SKEW_ALLOWANCE_MS`. A canary stamped before revisions were recorded falls
    back to its start time alone."""
    p = t.predictions
    since = canary.step_started_at or 0
    if canary.step_revision is None:
        return and_(p.c.endpoint == endpoint, p.c.time >= since)
    return and_(p.c.endpoint == endpoint, p.c.time >= since - CLOCK_SKEW_ALLOWANCE_MS,
                p.c.revision >= canary.step_revision)


def step_stats(store: Store, endpoint: str, canary: d.Canary, now: int) -> StepStats:
    """The candidate's numbers since its step began, from the prediction log (``now``: the
    database's clock, as the step's start is)."""
    since = canary.step_started_at or 0
    candidate = _model_of(canary.candidate)
    primary = _model_of(canary.primary)
    p = t.predictions
    in_step = step_window(endpoint, canary)
    with store.read() as conn:
        rows = conn.execute(select(p.c.status, p.c.latency_ms, p.c.prediction)
                            .where(in_step, p.c.route == "canary",
                                   p.c.model_name == candidate[0],
                                   p.c.model_version == candidate[1])).all()
        primary_answers = conn.execute(
            select(p.c.prediction, func.count()).where(
                in_step, p.c.route == "primary", p.c.status == "ok",
                p.c.model_name == primary[0], p.c.model_version == primary[1])
            .group_by(p.c.prediction)).all() if primary else []
        shadow = aliased(p)
        compared = conn.execute(
            select(func.count(), func.sum(case((shadow.c.prediction != p.c.prediction, 1),
                                               else_=0)))
            .select_from(p.join(shadow, shadow.c.parent_id == p.c.id))
            .where(in_step, p.c.route == "canary", p.c.status == "ok",
                   shadow.c.route == "shadow", shadow.c.status == "ok",
                   p.c.model_name == candidate[0], p.c.model_version == candidate[1],
                   shadow.c.model_name == primary[0], shadow.c.model_version == primary[1])
        ).one() if primary else (0, 0)
        accuracy = _accuracies(conn, in_step, candidate, primary)
    errors = sum(1 for r in rows if r.status == "error")
    latencies = np.array([r.latency_ms for r in rows if r.latency_ms is not None])
    ok_answers: dict[Any, int] = {}
    for r in rows:
        if r.status == "ok":
            ok_answers[r.prediction] = ok_answers.get(r.prediction, 0) + 1
    shift = _total_variation(ok_answers, dict(primary_answers)) \
        if ok_answers and primary_answers else None
    return StepStats(requests=len(rows), errors=errors,
                     latency_p99_ms=float(np.percentile(latencies, 99)) if len(latencies)
                     else None,
                     compared=int(compared[0] or 0), disagreements=int(compared[1] or 0),
                     prediction_shift=shift, labelled=accuracy[0],
                     candidate_accuracy=accuracy[1], primary_accuracy=accuracy[2],
                     candidate_labelled=accuracy[3], primary_labelled=accuracy[4],
                     elapsed_s=(now - since) / 1000)


def _model_of(node: d.Node) -> tuple[str, int] | None:
    leaf = next(d.leaves(node), None)
    if leaf is None:  # pragma: no cover
        return None
    name, _, version = leaf.model.rpartition("/")
    return name, int(version)


def _total_variation(a: dict[Any, int], b: dict[Any, int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in keys)


def _accuracies(conn: Any, in_step: Any, candidate: Any, primary: Any
                ) -> tuple[int, float | None, float | None, int, int]:
    """Accuracy of each side on the step's labelled answers (the latest label wins)."""
    p, f = t.predictions, t.feedback
    latest = select(f.c.prediction_id, func.max(f.c.id).label("id")).where(
        f.c.kind == "label").group_by(f.c.prediction_id).subquery()
    rows = conn.execute(select(p.c.route, p.c.prediction, f.c.value)
                        .join(latest, latest.c.prediction_id == p.c.id)
                        .join(f, f.c.id == latest.c.id)
                        .where(in_step, p.c.status == "ok",
                               p.c.route.in_(("canary", "primary")))).all()
    if not rows:
        return 0, None, None, 0, 0
    hits: dict[str, list[bool]] = {"canary": [], "primary": []}
    for route, prediction, label in rows:
        hits[route].append(prediction == label)
    acc = {k: (sum(v) / len(v) if v else None) for k, v in hits.items()}
    return (len(rows), acc["canary"], acc["primary"], len(hits["canary"]),
            len(hits["primary"]))


def check_endpoint(store: Store, endpoint: Endpoint, *, now: int | None = None
                   ) -> Verdict | None:
    """Judge the endpoint's canary (if one runs) and apply the verdict. None: no canary."""
    canary = d.find(endpoint.spec, d.Canary)
    if canary is None or endpoint.paused:
        return None
    if now is None:  # the step's start is the database's clock: so is its elapsed time
        with store.read() as conn:
            now = db_now_ms(conn)
    stats = step_stats(store, endpoint.name, canary, now)
    verdict = judge(canary, stats, now)
    node, action = apply(canary, verdict, now)
    if node is None:
        return verdict
    spec = d.replace(endpoint.spec, canary, node)
    reason = f"{verdict.reason} [{_stats_line(stats)}]"
    try:
        change(endpoint.name, lambda ep: (spec, ep.paused, action, reason), actor=ACTOR,
               expected_revision=endpoint.revision, store=store)
        log.warning("endpoint %s: canary %s: %s", endpoint.name, action, reason)
    except ConcurrentChangeError:
        return None  # another worker (or a person) acted first; judge again next time
    return verdict


def _stats_line(stats: StepStats) -> str:
    parts = [f"requests={stats.requests}", f"errors={stats.errors}"]
    if stats.latency_p99_ms is not None:
        parts.append(f"p99={stats.latency_p99_ms:.1f}ms")
    if stats.compared:
        parts.append(f"disagreement={stats.disagreements / stats.compared:.3f}")
    if stats.prediction_shift is not None:
        parts.append(f"shift={stats.prediction_shift:.3f}")
    if stats.candidate_accuracy is not None and stats.primary_accuracy is not None:
        parts.append(f"accuracy={stats.candidate_accuracy:.3f}/{stats.candidate_labelled} "
                     f"vs {stats.primary_accuracy:.3f}/{stats.primary_labelled}")
    return " ".join(parts)
