"""``pm.lineage``: where a record came from, or everything it touched, in the one store.

Lineage is a join, not an integration: the prediction log, the registry, tracked runs and
their datasets, annotations, deployments and the pipelines' artifacts, executions and events
are all tables of one database, and a walk is a few set-based queries per hop over them.

Upstream (``direction="up"``) from a logged prediction: the model version that answered
and the deployment that routed it, the version's tracked run, the exact dataset versions the
run trained on (by digest), the pipeline executions that made those datasets and their inputs
back to the Source artifacts (files, queries), and the labelers of the rows (annotations by
dataset digest, a labeler column in the dataset's provenance).

Downstream (``direction="down"``) from a source, an artifact, a dataset or a labeler: the
executions that read it and what they wrote, the datasets, runs and model versions that
follow, the endpoints that served those versions and, per endpoint and version, how many
predictions they answered and when (a count, not a node per prediction).

>>> import pandas as pd, prodml as pm
>>> with pm.start_run(experiment="lineage-doc") as run:
...     train = run.log_dataset(pd.DataFrame({"x": [1, 2, 3]}), context="train")
>>> graph = pm.lineage(run.id, direction="up")
>>> [n.id == train.digest for n in graph.nodes_of("dataset")]
[True]
>>> pm.lineage(train.digest, direction="down").nodes_of("run")[0].id == run.id
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prodml.errors import InvalidInputError
from prodml.pipelines.lineage_graph import LineageEdge, LineageGraph, LineageNode
from prodml.pipelines.lineage_refs import UnknownRefError, resolve
from prodml.pipelines.lineage_walk import walk
from prodml.store import Store, get_store

if TYPE_CHECKING:
    from prodml.pipelines.results import PipelineRun

__all__ = ["LineageEdge", "LineageGraph", "LineageNode", "UnknownRefError", "lineage",
           "rerun_affected"]
DIRECTIONS = ("up", "down")


def lineage(ref: str, direction: str = "up", depth: int | None = None, *,
            store: Store | None = None) -> LineageGraph:
    """The lineage graph of ``ref``, upstream (``"up"``) or downstream (``"down"``).

    ``ref`` is a prediction id, a model reference (``models:/loan/3``, ``loan/3``,
    ``loan@champion``), a tracked run id, a dataset digest, a pipeline artifact
    (``artifact:12``), a pipeline run id, a source URI or path, or an explicit
    ``kind:key`` (``endpoint:loan``, ``labeler:ann``, ``execution:5``). ``depth`` bounds
    the hops from it (records of the same thing, such as a Dataset artifact and its dataset
    version, are one hop apart from nothing). An unknown ref raises
    :class:`~prodml.pipelines.lineage_refs.UnknownRefError`.
    """
    if direction not in DIRECTIONS:
        raise InvalidInputError("direction", direction, "must be 'up' or 'down'")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                              or depth < 0):
        raise InvalidInputError("depth", depth, "must be a whole number >= 0, or None")
    store = store or get_store()
    with store.read() as conn:
        roots = resolve(conn, ref)
        graph = LineageGraph(str(ref).strip(), direction, depth, roots)
        walk(conn, store, graph, depth)
    return graph


def affected_pipeline_runs(artifact: str, *, store: Store | None = None
                           ) -> list[dict[str, Any]]:
    """The pipeline runs whose executions read ``artifact``, directly or through what they
    made: the latest run of each distinct recorded spec (pipeline, target and params),
    oldest first, as ``{"id", "pipeline", "spec", "created_at"}``."""
    from sqlalchemy import select

    from prodml.store import tables as t

    store = store or get_store()
    ids = lineage(artifact, "down", store=store).pipeline_runs()
    if not ids:
        return []
    c = t.pipeline_contexts
    with store.read() as conn:
        rows = conn.execute(select(c.c.id, c.c.name, c.c.spec, c.c.created_at)
                            .where(c.c.id.in_(ids), c.c.type == "pipeline_run")
                            .order_by(c.c.created_at, c.c.id)).all()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        spec = row.spec or {}
        if not spec.get("target"):
            continue
        key = repr((row.name, spec["target"], sorted((spec.get("params") or {}).items())))
        latest.pop(key, None)  # keep the order of each spec's latest run
        latest[key] = {"id": row.id, "pipeline": row.name, "spec": spec,
                       "created_at": row.created_at}
    return sorted(latest.values(), key=lambda r: (r["created_at"], r["id"]))


def rerun_affected(artifact: str, *, store: Store | None = None, engine: str = "local"
                   ) -> list[PipelineRun]:
    """Re-run every pipeline run that consumed ``artifact`` (directly or transitively) from
    its recorded spec (target and params), with caching on: only the steps whose inputs
    changed since (a corrected source file, and everything after it) run again.

    ``artifact`` is any lineage ref (``artifact:12``, a source path, a dataset digest); each
    new run is triggered by ``rerun:<artifact>``. Returns the new runs, oldest spec first.

    >>> import pathlib, tempfile, prodml as pm
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "blacklist.csv"
    >>> _ = path.write_text("ip\\n10.0.0.1\\n10.0.0.2\\n")
    >>> @pm.step
    ... def blocked(source) -> int:
    ...     return len(pathlib.Path(source).read_text().splitlines()) - 1
    >>> @pm.pipeline(name="blacklist-doc")
    ... def blacklist(src: str = str(path)):
    ...     return blocked(pm.pipelines.Source(src))
    >>> first = blacklist.run()
    >>> source = f"artifact:{first.executions[0].inputs[0].id}"
    >>> _ = path.write_text("ip\\n10.0.0.1\\n")   # one address was blacklisted by mistake
    >>> [(run.triggered_by == f"rerun:{source}", run.output("blocked"))
    ...  for run in pm.rerun_affected(source)]
    [(True, 1)]
    """
    store = store or get_store()
    with store.read() as conn:
        roots = resolve(conn, artifact)
    label = roots[0] if len(roots) == 1 else str(artifact).strip()
    return [_pipeline(found["pipeline"], found["spec"]["target"]).run(
        params=found["spec"].get("params") or {}, store=store, engine=engine, cache=True,
        triggered_by=f"rerun:{label}")
        for found in affected_pipeline_runs(artifact, store=store)]


def _pipeline(name: str, target: str) -> Any:
    """The pipeline a spec names: defined in this process, else loaded from its target."""
    from prodml.pipelines.pipeline import defined

    live = defined.get(name)
    if live is not None and live.target == target:
        return live
    try:
        from prodml.pipelines.loading import load_pipeline
    except ImportError:  # pragma: no cover - the loader ships with the pipelines package
        raise InvalidInputError("pipeline", target, "is not defined in this process and "
                                "cannot be loaded from its target") from None
    return load_pipeline(target)
