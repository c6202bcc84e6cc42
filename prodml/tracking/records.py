"""Read-only views of stored runs and datasets, and how to load them in few queries."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (Connection, Float, Text, bindparam, cast, literal, null, select,
                        union_all)

from prodml.store import tables as t
from prodml.tracking.code_version import CodeVersion


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset version: identified by the digest of its content."""

    id: int
    digest: str
    name: str
    source: str
    source_type: str
    num_rows: int
    num_columns: int
    schema: list[dict[str, Any]]
    context: str | None = None
    profile_sha256: str | None = None  # the stored Profile (see pm.runs.dataset_profile)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactRecord:
    path: str
    sha256: str
    uri: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """Everything the store knows about one run."""

    id: str
    experiment: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    error: str | None
    user: str | None
    host: str | None
    code: CodeVersion
    environment: dict[str, Any]
    wall_time_s: float | None
    cpu_time_s: float | None
    peak_memory_bytes: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[DatasetRecord] = field(default_factory=list)
    artifacts: list[ArtifactRecord] = field(default_factory=list)

    @property
    def started(self) -> datetime:
        return datetime.fromtimestamp(self.start_time / 1000, tz=timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()}
        out["started"] = self.started.isoformat()
        return out


_IDS = bindparam("ids", expanding=True)
# Built once: search loads many runs per call, and building statements cost more than the
# queries (benchmarks/tracking.py).
_RUNS = (select(t.runs, t.experiments.c.name.label("experiment"))
         .join(t.experiments, t.experiments.c.id == t.runs.c.experiment_id)
         .where(t.runs.c.id.in_(_IDS)))
_VALUES = union_all(  # params, tags and latest metrics in one round trip
    select(t.params.c.run_id, literal("p").label("kind"), t.params.c.key,
           t.params.c.value.label("text"), cast(null(), Float).label("number"))
    .where(t.params.c.run_id.in_(_IDS)),
    select(t.tags.c.run_id, literal("t"), t.tags.c.key, t.tags.c.value, cast(null(), Float))
    .where(t.tags.c.run_id.in_(_IDS)),
    select(t.latest_metrics.c.run_id, literal("m"), t.latest_metrics.c.key,
           cast(null(), Text), t.latest_metrics.c.value)
    .where(t.latest_metrics.c.run_id.in_(_IDS)))
_DATASETS = (select(t.run_inputs.c.run_id, t.run_inputs.c.context, t.datasets)
             .join(t.datasets, t.datasets.c.id == t.run_inputs.c.dataset_id)
             .where(t.run_inputs.c.run_id.in_(_IDS)))
_ARTIFACTS = (select(t.run_artifacts.c.run_id, t.run_artifacts.c.path, t.artifacts.c.sha256,
                     t.artifacts.c.uri, t.artifacts.c.size)
              .join(t.artifacts, t.artifacts.c.sha256 == t.run_artifacts.c.sha256)
              .where(t.run_artifacts.c.run_id.in_(_IDS))
              .order_by(t.run_artifacts.c.path))


def load_runs(conn: Connection, run_ids: list[str]) -> list[RunRecord]:
    """Load full records for ``run_ids`` (in that order) in four queries."""
    if not run_ids:
        return []
    ids = {"ids": run_ids}
    by_id: dict[str, dict[str, Any]] = {}
    for row in conn.execute(_RUNS, ids).mappings().all():
        info = dict(row)
        info.update(params={}, metrics={}, tags={}, datasets=[], artifacts=[])
        by_id[info["id"]] = info
    fields = {"p": "params", "t": "tags", "m": "metrics"}
    for run_id, kind, key, text_value, number in conn.execute(_VALUES, ids).all():
        if kind == "m":
            by_id[run_id]["metrics"][key] = math.nan if number is None else number
        else:
            by_id[run_id][fields[kind]][key] = text_value
    for row in conn.execute(_DATASETS, ids).mappings().all():
        by_id[row["run_id"]]["datasets"].append(dataset_record(row, context=row["context"]))
    for run_id, path, sha, uri, size in conn.execute(_ARTIFACTS, ids).all():
        by_id[run_id]["artifacts"].append(ArtifactRecord(path, sha, uri, size))
    return [_run_record(by_id[i]) for i in run_ids if i in by_id]


def dataset_record(row: Any, context: str | None = None) -> DatasetRecord:
    return DatasetRecord(id=row["id"], digest=row["digest"], name=row["name"],
                         source=row["source"], source_type=row["source_type"],
                         num_rows=row["num_rows"], num_columns=row["num_columns"],
                         schema=row["schema"], context=context,
                         profile_sha256=row["profile_sha256"])


def _run_record(info: dict[str, Any]) -> RunRecord:
    code = CodeVersion(commit=info["code_commit"], branch=info["code_branch"],
                       dirty=info["code_dirty"], diff_digest=info["code_diff_digest"],
                       repo=info["code_repo"])
    return RunRecord(
        id=info["id"], experiment=info["experiment"], name=info["name"], status=info["status"],
        start_time=info["start_time"], end_time=info["end_time"], error=info["error"],
        user=info["user"], host=info["host"], code=code, environment=info["environment"] or {},
        wall_time_s=info["wall_time_s"], cpu_time_s=info["cpu_time_s"],
        peak_memory_bytes=info["peak_memory_bytes"], params=info["params"],
        metrics=info["metrics"], tags=info["tags"],
        datasets=sorted(info["datasets"], key=lambda d: (d.context or "", d.name)),
        artifacts=info["artifacts"])
