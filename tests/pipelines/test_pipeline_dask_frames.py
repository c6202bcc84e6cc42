"""Dask DataFrames between steps: written partition by partition, never gathered, read back
lazily downstream and from the cache, on a LocalCluster and on the local engine."""

from __future__ import annotations

import json
import threading
from collections import Counter

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import prodml as pm
from tests.pipelines.test_pipeline_engines import dask_client  # noqa: F401 (a fixture)

computed: Counter = Counter()
lock = threading.Lock()


def make_part(i: int, rows: int) -> pd.DataFrame:
    """Partition ``i`` of the source, counting how often Dask computes it."""
    with lock:
        computed[i] += 1
    return part(i, rows)


def part(i: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    return pd.DataFrame({"id": np.arange(i * rows, (i + 1) * rows),
                         "amount": rng.normal(100, 30, rows).round(2),
                         "region": rng.choice(["n", "s", "e"], rows)})


def reference(parts: int, rows: int) -> pd.DataFrame:
    whole = pd.concat([part(i, rows) for i in range(parts)], ignore_index=True)
    return whole[whole["amount"] > 80]


@pm.step
def load(parts: int, rows: int):
    return dd.from_map(make_part, range(parts), args=[rows], meta=part(0, 0))


@pm.step
def clean(frame):
    assert isinstance(frame, dd.DataFrame)
    return frame[frame["amount"] > 80]


@pm.step
def by_region(frame) -> dict:
    totals = frame.groupby("region")["amount"].sum().compute()
    return {k: round(float(v), 6) for k, v in sorted(totals.items())}


@pm.pipeline(name="dask-frames")
def frames(parts: int = 4, rows: int = 250):
    cleaned = clean(load(parts, rows))
    return by_region(cleaned)


def expected_totals(parts: int, rows: int) -> dict:
    totals = reference(parts, rows).groupby("region")["amount"].sum()
    return {k: round(float(v), 6) for k, v in sorted(totals.items())}


def check_run(run, store, parts: int, rows: int) -> None:
    assert run.status == "succeeded", run.error
    for step in ("load", "clean"):
        artifact = run.step(step).output()
        assert artifact.type == "Dataset"
        assert artifact.properties["format"] == "dask-parquet"
        assert artifact.properties["npartitions"] == parts
    assert run.step("load").output().properties["rows"] == parts * rows
    kept = reference(parts, rows)
    assert run.step("clean").output().properties["rows"] == len(kept)
    assert run.output("by_region") == expected_totals(parts, rows)
    # the value comes back lazy over the stored partitions, equal to the pandas reference
    back = run.output("clean")
    assert isinstance(back, dd.DataFrame) and back.npartitions == parts
    # (Dask turns object strings into Arrow strings; the values are what count)
    pd.testing.assert_frame_equal(back.compute().reset_index(drop=True),
                                  kept.reset_index(drop=True), check_dtype=False)


def test_dask_frames_on_a_local_cluster(store, dask_client):  # noqa: F811
    computed.clear()
    run = frames.run(store=store, engine="dask", scheduler=dask_client)
    check_run(run, store, 4, 250)
    # each partition of load was computed once: clean and by_region read what was stored
    assert computed == Counter({0: 1, 1: 1, 2: 1, 3: 1})

    # the manifest names every partition blob; all are in the blob store, and nothing else
    manifest = json.loads(store.artifacts.get_bytes(run.step("clean").output().blob_sha256))
    assert len(manifest["partitions"]) == 4
    assert sum(manifest["rows"]) == run.step("clean").output().properties["rows"]
    for sha in manifest["partitions"]:
        stored = pd.read_parquet(store.artifacts.download(sha, store.artifacts.root + "/p.pq"))
        assert (stored["amount"] > 80).all()

    # run again: all cached, on Dask or locally; nothing computed
    computed.clear()
    again = frames.run(store=store, engine="dask", scheduler=dask_client)
    assert [e.status for e in again.executions] == ["cached"] * 3
    assert again.output("by_region") == expected_totals(4, 250) and not computed

    # a partition blob that went missing makes its step a cache miss, not a broken read; the
    # step writes the same partitions again, so what reads them is still a cache hit
    lost = store.artifacts._path(manifest["partitions"][2])
    store.artifacts.fs.rm(lost)
    mended = frames.run(store=store, engine="dask", scheduler=dask_client)
    assert [e.status for e in mended.executions] == ["cached", "succeeded", "cached"]
    assert store.artifacts.fs.exists(lost)
    assert mended.step("clean").output().digest == run.step("clean").output().digest
    check_run(mended, store, 4, 250)


def test_dask_frames_on_the_local_engine(store):
    computed.clear()
    run = frames.run(params={"parts": 3, "rows": 100}, store=store)
    check_run(run, store, 3, 100)
    assert computed == Counter({0: 1, 1: 1, 2: 1})
    # without the cache it runs again: same data, same partition bytes, same artifact
    other = frames.run(params={"parts": 3, "rows": 100}, store=store, cache=False)
    assert other.step("clean").output().digest == run.step("clean").output().digest


def test_a_dask_frame_given_as_an_argument_is_stored_too(store):
    @pm.pipeline(name="dask-given")
    def given():
        frame = dd.from_pandas(part(0, 60), npartitions=2)
        return clean(frame)

    run = given.run(store=store)
    assert run.status == "succeeded", run.error
    source = run.step("clean").inputs[0]
    assert source.properties["format"] == "dask-parquet" and source.properties["rows"] == 60
    expected = part(0, 60)
    pd.testing.assert_frame_equal(run.output("clean").compute(),
                                  expected[expected["amount"] > 80], check_dtype=False)


def test_serialize_needs_a_blob_store_for_a_dask_frame():
    from prodml.pipelines.values import serialize

    with pytest.raises(ValueError, match="pass blobs="):
        serialize(dd.from_pandas(pd.DataFrame({"x": [1]}), npartitions=1))
