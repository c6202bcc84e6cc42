"""Benchmark: batch predictions (predict_batch) against calling the model on the whole frame.

Not a test. The loan data (9 numeric features) scored by a logistic regression (scaler +
LogisticRegression, the demo's baseline) on ``--rows`` rows:

- floor: ``model.predict(frame)`` on the whole pandas frame already in memory (no reading,
  no checks, no writing, one call);
- floor + proba: ``model.predict_proba(frame)``, which is what the answers need (class,
  confidence and per-class probabilities);
- prodml parquet -> parquet: ``predict_batch`` from a Parquet file to a Parquet file in
  chunks of ``--chunk-rows`` (reading, vectorised schema checks, predict_proba, writing), as
  timed by the job itself; the wall time with loading the model and recording the run
  (input digest, output copied into the artifact store) is printed beside it;
- prodml frame -> memory: the same from the frame in memory, answers kept in memory;
- prodml dask (threads): the Dask engine on the local threaded scheduler, Parquet to a folder.

The data is ``loan_applications`` (River's Agrawal generator, about 10k rows/s to make)
generated once for 100,000 rows and repeated to ``--rows`` with a fresh id column.

    .venv/bin/python benchmarks/batch.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prodml.data.schema import infer_schema
    from prodml.demo.data import FEATURES, loan_applications
    from prodml.serving.batch import predict_batch
    from prodml.store import open_store
    from prodml.tracking import registry

    home = Path(tempfile.mkdtemp(prefix="prodml-batch-bench-"))
    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    train = loan_applications(rows=5000, seed=7)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(
        train[FEATURES], train["approved"])
    registry.register("loan", model, input_example=train[FEATURES],
                      schema=infer_schema(train[FEATURES]), store=store)
    base = loan_applications(rows=min(args.rows, 100_000), seed=11)[FEATURES]
    frame = pd.concat([base] * -(-args.rows // len(base)), ignore_index=True).iloc[:args.rows]
    frame.insert(0, "id", np.arange(args.rows))
    source = home / "applications.parquet"
    frame.to_parquet(source, index=False, row_group_size=args.chunk_rows)
    features = frame[FEATURES]
    cores = os.cpu_count() or 1
    print(f"{args.rows:,} rows x {len(FEATURES)} numeric features, logistic regression, "
          f"chunks of {args.chunk_rows:,}, {cores} cores; input "
          f"{source.stat().st_size / 2**20:.1f} MiB of Parquet")

    walls: dict[str, list[float]] = {}

    def job(name: str) -> float:
        if name == "floor":
            model.predict(features)
        elif name == "floor + proba":
            model.predict_proba(features)
        elif name == "prodml parquet -> parquet":
            start = time.perf_counter()
            result = predict_batch("loan/1", source, output=home / "answers.parquet",
                                   chunk_rows=args.chunk_rows, id_column="id", store=store)
            walls.setdefault(name, []).append(time.perf_counter() - start)
            return result.seconds
        elif name == "prodml frame -> memory":
            return predict_batch("loan/1", frame, chunk_rows=args.chunk_rows, id_column="id",
                                 store=store).seconds
        else:
            return predict_batch("loan/1", source, output=home / "dask.parquet", engine="dask",
                                 chunk_rows=args.chunk_rows, id_column="id",
                                 store=store).seconds
        return -1.0

    names = ["floor", "floor + proba", "prodml parquet -> parquet", "prodml frame -> memory",
             "prodml dask (threads)"]
    timings: dict[str, list[float]] = {name: [] for name in names}
    job("prodml frame -> memory")  # warm up: imports, thread pools
    for rep in range(args.repeat):
        for name in names[::(-1) ** rep]:
            start = time.perf_counter()
            took = job(name)
            timings[name].append(took if took >= 0 else time.perf_counter() - start)
            print(f"  rep {rep + 1} {name:26} {timings[name][-1]:.3f} s")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name in names:
        extra = ""
        if name in walls:
            wall = statistics.median(walls[name])
            extra = f" (wall {wall:.3f} s with model load and run record)"
        best = min(timings[name])
        print(f"{name:26} median {medians[name]:.3f} s = "
              f"{args.rows / medians[name]:>12,.0f} rows/s (best {args.rows / best:,.0f})"
              f"{extra}")
    ours, floor = medians["prodml parquet -> parquet"], medians["floor"]
    print(f"ratio (prodml parquet->parquet rows/s / floor model.predict rows/s): "
          f"{floor / ours:.2f}x")


if __name__ == "__main__":
    main()
