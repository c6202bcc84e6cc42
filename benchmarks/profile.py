"""Benchmark: pm.profile on a large frame against pandas' describe() + nunique(), same run.

Not a test. Prints median times, rows/s per core, and the ratio last.

    .venv/bin/python benchmarks/profile.py --rows 10000000 --columns 20 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import pandas as pd

from prodml.data.profile import profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(i, 1 + i, args.rows) for i in range(args.columns)})
    cores = os.cpu_count() or 1
    print(f"{args.rows:,} rows x {args.columns} float columns, {cores} cores, "
          f"{frame.memory_usage().sum() / 2**30:.2f} GiB")

    def peer() -> None:  # the same questions answered the straightforward way
        frame.describe(percentiles=[0.01, 0.25, 0.5, 0.75, 0.99])
        frame.nunique()
        frame.isna().sum()

    timings: dict[str, list[float]] = {"prodml": [], "pandas": []}
    for rep in range(args.repeat):
        for name, job in (("prodml", lambda: profile(frame)), ("pandas", peer))[::(-1) ** rep]:
            start = time.perf_counter()
            job()
            timings[name].append(time.perf_counter() - start)
            print(f"  rep {rep + 1} {name:6} {timings[name][-1]:.2f} s")
    ours, theirs = (statistics.median(timings[k]) for k in ("prodml", "pandas"))
    print(f"prodml profile: median {ours:.2f} s = {args.rows / ours / cores:,.0f} rows/s per core "
          f"({args.rows * args.columns / ours / cores:,.0f} values/s per core)")
    print(f"pandas describe+nunique+isna: median {theirs:.2f} s")
    print(f"ratio (pandas / prodml): {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
