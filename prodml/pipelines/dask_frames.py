"""Dask DataFrames as step outputs: partitions written where they are, read back lazily.

A step that returns a Dask DataFrame never gathers it. Each partition is computed on the
worker that holds it (the Dask cluster when the step runs there, threads otherwise), written
as one Parquet blob into the content-addressed blob store, and the artifact's own blob is a
small manifest: the partitions' SHA-256s and row counts, the frame's empty ``meta`` and its
divisions when JSON can hold them. Equal data gives equal partition bytes, so an equal
manifest and digest, and the cache works as for any frame. Reading the artifact back
(downstream in the same run, from the cache, or ``run.output(...)``) gives a lazy frame over
the stored partitions, each checked against its SHA-256 when it is loaded.

The blob store must be a location every worker can reach (a shared folder or object
storage) for a cluster with more than one machine; see docs/pipelines.md.

>>> import dask.dataframe as dd, pandas as pd, tempfile
>>> from prodml.store.artifacts import ArtifactStore
>>> blobs = ArtifactStore(tempfile.mkdtemp())
>>> frame = dd.from_pandas(pd.DataFrame({"x": range(6)}), npartitions=2)
>>> manifest = write_frame(frame, blobs)
>>> import json; json.loads(manifest)["rows"]
[3, 3]
>>> back = read_frame(manifest, blobs)
>>> back.npartitions, int(back["x"].sum().compute())
(2, 15)
"""

from __future__ import annotations

import io
import json
from typing import Any

FORMAT = "dask-parquet"


def write_frame(frame: Any, blobs: Any) -> bytes:
    """Store every partition of ``frame``; the manifest's bytes."""
    import dask

    parts = [dask.delayed(_put_partition)(part, blobs.location)
             for part in frame.to_delayed()]
    written = _compute(parts)
    meta = blobs.put_bytes(_parquet_bytes(frame._meta))
    divisions = ([d.item() if hasattr(d, "item") else d for d in frame.divisions]
                 if frame.known_divisions else None)
    manifest = {
        "format": FORMAT,
        "partitions": [sha for sha, _rows in written],
        "rows": [rows for _sha, rows in written],
        "meta": meta.sha256,
        "divisions": divisions if _json_safe(divisions) else None,
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def read_frame(manifest: bytes, blobs: Any) -> Any:
    """A lazy Dask DataFrame over the stored partitions of a manifest."""
    import dask.dataframe as dd

    facts = json.loads(manifest)
    meta = _read_parquet(blobs.get_bytes(facts["meta"]))
    divisions = facts["divisions"]
    if divisions is not None:
        divisions = tuple(divisions)
    return dd.from_map(_get_partition, facts["partitions"], args=[blobs.location],
                       meta=meta, divisions=divisions, enforce_metadata=False,
                       label="prodml-stored")


def partition_blobs(manifest: bytes) -> list[str]:
    """Every blob the frame needs besides its manifest (the cache checks they still exist)."""
    facts = json.loads(manifest)
    return [*facts["partitions"], facts["meta"]]


def _compute(collections: list[Any]) -> list[Any]:
    """Compute on the cluster from inside a Dask task (seceding), else as Dask would."""
    import dask

    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return list(dask.compute(*collections))
    # A task that waits for other tasks must leave its worker slot, or a small cluster
    # deadlocks waiting for itself.
    with worker_client() as client:
        return list(client.gather(client.compute(collections)))


def _put_partition(part: Any, location: str) -> tuple[str, int]:
    from prodml.pipelines.task import blob_store

    return blob_store(location).put_bytes(_parquet_bytes(part)).sha256, len(part)


def _get_partition(sha256: str, location: str) -> Any:
    from prodml.pipelines.task import blob_store

    return _read_parquet(blob_store(location).get_bytes(sha256))


def _parquet_bytes(frame: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame), buffer)
    return buffer.getvalue()


def _read_parquet(data: bytes) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pandas()


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False
