"""Pipeline bookkeeping overhead: prodml vs the bare functions vs Kedro, same process.

A chain of ``--steps`` trivial steps (``x + 1``), run ``--repeat`` times each way:

- direct: the functions called one after the other;
- prodml: ``pipeline.run(cache=False, store=SQLite in a temp folder)``: trace, one run
  context, per step a cache-key computation, an execution row when it starts and its outputs,
  events and status when it ends (two transactions), the output serialized into the blob
  store, logs captured, resources measured; and the run read back at the end;
- prodml cached: the same run with the cache on (every step a cache hit: lookup, blob check,
  one transaction per step);
- Kedro: ``SequentialRunner().run(pipeline, DataCatalog)`` with in-memory datasets (Kedro
  keeps no record of a run; its INFO logging is set to WARNING so the terminal is not timed).

Overhead per step = (median run time - median direct time) / steps. The last line is the
ratio of prodml's overhead per step to Kedro's, and whether prodml is under the 20 ms target.

    .venv-bench/bin/python benchmarks/pipelines.py [--steps 20] [--repeat 15]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # kedro-telemetry (only used by its CLI hooks)
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import prodml as pm

TARGET_MS = 20.0


def functions(steps: int) -> list[Callable[[int], int]]:
    made = []
    for i in range(steps):
        def add_one(x: int) -> int:
            return x + 1

        add_one.__name__ = add_one.__qualname__ = f"s{i}"
        made.append(add_one)
    return made


def direct(fns: list[Callable[[int], int]]) -> int:
    x = 0
    for fn in fns:
        x = fn(x)
    return x


def prodml_pipeline(fns: list[Callable[[int], int]]) -> Any:
    steps = [pm.step(name=fn.__name__)(fn) for fn in fns]

    @pm.pipeline(name="chain")
    def chain(x: int = 0):
        for step in steps:
            x = step(x)
        return x

    return chain


def kedro_runner(fns: list[Callable[[int], int]]) -> Callable[[], int] | str:
    try:
        from kedro.io import DataCatalog, MemoryDataset
        from kedro.pipeline import Pipeline, node
        from kedro.runner import SequentialRunner
    except ImportError as error:
        return (f"Kedro is not installed here ({error}); make bench installs it into "
                ".venv-bench from requirements/bench-lock.txt")
    logging.getLogger("kedro").setLevel(logging.WARNING)
    nodes = [node(fn, "x0" if i == 0 else f"d{i - 1}", f"d{i}", name=fn.__name__)
             for i, fn in enumerate(fns)]
    pipeline = Pipeline(nodes)

    def run() -> int:
        catalog = DataCatalog({"x0": MemoryDataset(0)})
        outputs = SequentialRunner().run(pipeline, catalog)
        value = outputs[f"d{len(fns) - 1}"]
        return value.load() if hasattr(value, "load") else value

    return run


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> tuple[list[float], Any]:
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    steps = args.steps
    fns = functions(steps)

    home = tempfile.mkdtemp(prefix="prodml-bench-pipelines-")
    store = pm.open_store(f"sqlite:///{home}/prodml.db", f"{home}/artifacts")
    chain = prodml_pipeline(fns)

    def prodml_run(cache: bool) -> int:
        run = chain.run(store=store, cache=cache)
        assert run.status == "succeeded", run.error
        return run.output(f"s{steps - 1}")

    direct_times, expected = timed(lambda: direct(fns), args.repeat * 20)
    runs = {"prodml (cache off)": lambda: prodml_run(False),
            "prodml (all cached)": lambda: prodml_run(True)}
    kedro = kedro_runner(fns)
    if callable(kedro):
        runs["kedro SequentialRunner"] = kedro
    medians: dict[str, float] = {}
    base = statistics.median(direct_times)
    print(f"{steps}-step chain of x + 1, {args.repeat} runs each, median; SQLite store in "
          f"{home}; python {sys.version.split()[0]}, prodml {pm.__version__}")
    print(f"  {'direct calls':24} {base * 1e3:9.3f} ms total")
    # alternate the tools run by run so that drift in machine load hits both alike
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for name, fn in runs.items():
        timed(fn, 0)  # warm up: imports, first store writes
    for _ in range(args.repeat):
        for name, fn in runs.items():
            times, result = timed(fn, 1, warmup=0)
            assert result == expected, (name, result, expected)
            samples[name] += times
    for name, times in samples.items():
        medians[name] = statistics.median(times)
        overhead = (medians[name] - base) / steps * 1e3
        print(f"  {name:24} {medians[name] * 1e3:9.3f} ms total   {overhead:7.3f} ms/step "
              f"overhead   (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f} ms)")
    ours = (medians["prodml (cache off)"] - base) / steps * 1e3
    verdict = "under" if ours < TARGET_MS else "OVER"
    if callable(kedro):
        theirs = (medians["kedro SequentialRunner"] - base) / steps * 1e3
        print(f"ratio prodml/kedro bookkeeping per step: {ours / theirs:.2f}x "
              f"({ours:.2f} ms vs {theirs:.2f} ms; prodml records every step in SQLite and "
              f"the blob store, Kedro records nothing); {verdict} the {TARGET_MS:.0f} ms "
              "target")
    else:
        print(f"kedro: {kedro}")
        print(f"ratio prodml/direct per step: {ours:.2f} ms of bookkeeping per step; "
              f"{verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
