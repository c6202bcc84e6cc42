"""Pipeline runs as the dashboard lists and links them: set-based reads of the pipeline records.

Each function is a fixed number of statements whatever the number of runs: the runs list is
one query for the runs and one grouped count of their executions; the links from alerts and
model versions to the runs that came from them are one query each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from prodml.store import Store
from prodml.store import tables as t

RUN_STATUSES = ("running", "waiting", "succeeded", "failed")
STEP_STATUSES = ("succeeded", "cached", "failed", "waiting", "skipped", "running")


def pipeline_names(store: Store) -> list[str]:
    """The names of the pipelines that have run, sorted.

    >>> from prodml.store import open_store
    >>> pipeline_names(open_store("sqlite://"))
    []
    """
    c = t.pipeline_contexts
    with store.read() as conn:
        return sorted(conn.execute(select(c.c.name).where(c.c.type == "pipeline_run")
                                   .distinct()).scalars())


def pipeline_runs(store: Store, *, pipeline: str | None = None, status: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Runs, newest first, each with its steps counted by status (``steps``: {status: n}).

    >>> from prodml.store import open_store
    >>> pipeline_runs(open_store("sqlite://"), status="waiting")
    []
    """
    c, e = t.pipeline_contexts, t.executions
    query = select(c.c.id, c.c.name, c.c.status, c.c.spec, c.c.triggered_by, c.c.error,
                   c.c.created_at, c.c.ended_at).where(c.c.type == "pipeline_run")
    if pipeline:
        query = query.where(c.c.name == pipeline)
    if status:
        query = query.where(c.c.status == status)
    query = query.order_by(c.c.created_at.desc(), c.c.id).limit(limit)
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        ids = [r["id"] for r in rows]
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        if ids:
            for context_id, step_status, n in conn.execute(
                    select(e.c.context_id, e.c.status, func.count())
                    .where(e.c.context_id.in_(ids)).group_by(e.c.context_id, e.c.status)):
                counts[context_id][step_status] = n
    for row in rows:
        row["steps"] = counts[row["id"]]
        row["total_steps"] = sum(row["steps"].values())
        row["engine"] = (row["spec"] or {}).get("engine", "local")
    return rows


def alert_id(triggered_by: str | None) -> int | None:
    """The alert id in ``alert:<id>``, else None.

    >>> alert_id("alert:12"), alert_id("cli"), alert_id("alert:x")
    (12, None, None)
    """
    if triggered_by and triggered_by.startswith("alert:") and triggered_by[6:].isdigit():
        return int(triggered_by[6:])
    return None


def alerts_by_id(store: Store, ids: set[int]) -> dict[int, dict[str, Any]]:
    """The alerts with these ids (id, endpoint, monitor, series, severity, status, message)."""
    if not ids:
        return {}
    a = t.alerts
    with store.read() as conn:
        return {r["id"]: dict(r) for r in conn.execute(
            select(a.c.id, a.c.endpoint, a.c.monitor, a.c.series, a.c.severity, a.c.status,
                   a.c.message, a.c.fired_at).where(a.c.id.in_(sorted(ids)))).mappings()}


def runs_for_alerts(store: Store, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The pipeline runs each alert started (``triggered_by == "alert:<id>"``), oldest first."""
    if not ids:
        return {}
    c = t.pipeline_contexts
    found: dict[int, list[dict[str, Any]]] = {}
    with store.read() as conn:
        for r in conn.execute(select(c.c.id, c.c.name, c.c.status, c.c.triggered_by)
                              .where(c.c.type == "pipeline_run",
                                     c.c.triggered_by.in_([f"alert:{i}" for i in set(ids)]))
                              .order_by(c.c.created_at, c.c.id)).mappings():
            found.setdefault(int(r["triggered_by"][6:]), []).append(dict(r))
    return found


def runs_of_model_version(store: Store, ref: str) -> list[dict[str, Any]]:
    """The pipeline runs (with the step) whose execution wrote the ModelVersion artifact of
    ``ref`` (``name/version``): the pipeline that registered it."""
    name, _, version = ref.rpartition("/")
    a, ev, e, c = t.lineage_artifacts, t.events, t.executions, t.pipeline_contexts
    with store.read() as conn:
        rows = conn.execute(
            select(c.c.id, c.c.name, c.c.status, e.c.step, e.c.id.label("execution_id"),
                   e.c.status.label("step_status"), a.c.properties)
            .join(ev, (ev.c.artifact_id == a.c.id) & (ev.c.kind == "output"))
            .join(e, e.c.id == ev.c.execution_id)
            .join(c, c.c.id == e.c.context_id)
            .where(a.c.type == "ModelVersion", a.c.name == ref)
            .order_by(e.c.id)).mappings().all()
    return [{k: v for k, v in r.items() if k != "properties"} for r in rows
            if (r["properties"] or {}).get("model", name) == name
            and str((r["properties"] or {}).get("version", version)) == version]


def runs_of_tracked_run(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The pipeline runs (with the step) whose execution opened tracked run ``run_id``."""
    e, c = t.executions, t.pipeline_contexts
    with store.read() as conn:
        return [dict(r) for r in conn.execute(
            select(c.c.id, c.c.name, c.c.status, e.c.step, e.c.id.label("execution_id"),
                   e.c.status.label("step_status"))
            .join(c, c.c.id == e.c.context_id).where(e.c.run_id == run_id)
            .order_by(e.c.id)).mappings()]


def execution_runs(store: Store, ids: set[int]) -> dict[int, str]:
    """The pipeline run of each execution id (where a cached step's outputs came from)."""
    if not ids:
        return {}
    e = t.executions
    with store.read() as conn:
        return dict(conn.execute(select(e.c.id, e.c.context_id)
                                 .where(e.c.id.in_(sorted(ids)))).tuples().all())
