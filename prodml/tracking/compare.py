"""Runs side by side: every param and metric, with the ones that differ marked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prodml.tracking.records import RunRecord


@dataclass(frozen=True)
class ComparedValue:
    """One row of a comparison: a name and its value in each run (``None`` where absent)."""

    kind: str  # param, metric, tag, attribute
    name: str
    values: tuple[Any, ...]

    @property
    def differs(self) -> bool:
        seen = {("nan" if isinstance(v, float) and math.isnan(v) else v) for v in self.values}
        return len(seen) > 1


@dataclass(frozen=True)
class RunComparison:
    """Params, metrics and tags of several runs, aligned by name.

    >>> from prodml.tracking.code_version import CodeVersion
    >>> def run(i, lr, f1):
    ...     return RunRecord(str(i), "e", f"r{i}", "FINISHED", 0, 1, None, None, None,
    ...                      CodeVersion(), {}, 1.0, 1.0, 1, {"lr": lr}, {"f1": f1}, {})
    >>> c = compare_records([run(1, "0.1", 0.8), run(2, "0.1", 0.9)])
    >>> [(r.name, r.differs) for r in c.rows if r.kind != "attribute"]
    [('lr', False), ('f1', True)]
    """

    runs: tuple[RunRecord, ...]
    rows: tuple[ComparedValue, ...]

    def differing(self) -> list[ComparedValue]:
        return [row for row in self.rows if row.differs]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.id for r in self.runs],
                "rows": [{"kind": r.kind, "name": r.name, "values": list(r.values),
                          "differs": r.differs} for r in self.rows]}


def compare_records(runs: list[RunRecord]) -> RunComparison:
    rows: list[ComparedValue] = []
    for attribute in ("experiment", "status", "code.commit", "wall_time_s"):
        values = tuple(r.code.commit if attribute == "code.commit" else getattr(r, attribute)
                       for r in runs)
        rows.append(ComparedValue("attribute", attribute, values))
    for kind, field in (("param", "params"), ("metric", "metrics"), ("tag", "tags")):
        names = sorted({name for r in runs for name in getattr(r, field)})
        rows += [ComparedValue(kind, name, tuple(getattr(r, field).get(name) for r in runs))
                 for name in names]
    return RunComparison(tuple(runs), tuple(rows))
