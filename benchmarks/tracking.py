"""Tracking benchmark: MLflow (SQLite backend) and prodml (SQLite store) side by side.

A benchmark, not a test: it prints timings and asserts only that both tools stored and
found the same things. Run it in the separate benchmark virtualenv (see benchmarks/README.md)::

    .venv-bench/bin/python benchmarks/tracking.py [--runs 100] [--points 100] [--repeat 3]

Workload A ("log"): in a fresh store, create an experiment, then ``--runs`` runs; each run
logs 3 params in one ``log_params`` call and ``--points`` points of metric ``m``, one
``log_metric(key, value, step=i)`` call per point, and is ended by its context manager.
Timed from experiment creation to the last run's end. Opening (and migrating) the empty
store is timed separately and left out of the ratio. Repeated ``--repeat`` times, each time
in a new temporary folder, alternating which tool goes first.

Workload B ("search"): on the stores of the last repetition, search the experiment for
``metrics.m > 0.5`` (the latest value of ``m``; exactly half the runs match), returning full
run records (MLflow ``MlflowClient.search_runs`` -> ``Run`` objects; prodml
``pm.runs.search`` -> ``RunRecord`` objects), ``--search-repeat`` times each.

The last line printed is ``ratio log: Nx  ratio search: Nx`` (MLflow time / prodml time).

``--profile N`` instead profiles N prodml ``log_metric`` calls with cProfile and prints the
top functions (MLflow is not needed for that).
"""

from __future__ import annotations

import os

# Before MLflow is imported: no telemetry, no system-metrics sampler, no async logging
# (MLflow's default is synchronous; set it explicitly so a user's environment cannot change
# what is measured), no console noise. prodml has no telemetry; its per-run resource meter
# and code-version capture are always on and are part of what is measured.
for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "MLFLOW_CONFIGURE_LOGGING": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "GIT_PYTHON_REFRESH": "quiet",
}.items():
    os.environ[_name] = _value
for _name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
              "MLFLOW_RUN_ID"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

EXPERIMENT = "bench"
METRIC = "m"
QUERY = f"metrics.{METRIC} > 0.5"

Plan = list[tuple[dict[str, Any], list[float]]]


def make_plan(runs: int, points: int) -> Plan:
    """Params and metric values for every run, made before any timing.

    The last value of run i is (i + 0.5) / runs, so ``metrics.m > 0.5`` matches runs // 2 runs.
    """
    plan = []
    for i in range(runs):
        rng = random.Random(i)
        values = [rng.random() for _ in range(points - 1)] + [(i + 0.5) / runs]
        params = {"lr": round(0.01 * (i % 10 + 1), 2), "depth": i % 8 + 1,
                  "model": "gbm" if i % 2 else "linear"}
        plan.append((params, values))
    return plan


@dataclass
class LogResult:
    open_s: float  # opening + migrating an empty store (not in the ratio)
    log_s: float  # the workload


# -- MLflow ---------------------------------------------------------------------------------

class MlflowSide:
    name = "mlflow"

    def __init__(self) -> None:
        import mlflow
        from mlflow import MlflowClient
        self.mlflow = mlflow
        self.client_class = MlflowClient
        self.client: Any = None
        self.experiment_id: str | None = None

    def log(self, folder: Path, plan: Plan) -> LogResult:
        mlflow = self.mlflow
        t0 = time.perf_counter()
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        self.client = self.client_class()
        self.client.search_experiments(max_results=1)  # creates and migrates the database
        t1 = time.perf_counter()
        self.experiment_id = self.client.create_experiment(
            EXPERIMENT, artifact_location=(folder / "mlflow-artifacts").as_uri())
        mlflow.set_experiment(experiment_id=self.experiment_id)
        for params, values in plan:
            with mlflow.start_run():
                mlflow.log_params(params)
                for step, value in enumerate(values):
                    mlflow.log_metric(METRIC, value, step=step)
        t2 = time.perf_counter()
        return LogResult(t1 - t0, t2 - t1)

    def search(self) -> int:
        found = self.client.search_runs([self.experiment_id], filter_string=QUERY,
                                        max_results=1000)
        return len(found)

    def search_frame(self) -> int:
        return len(self.mlflow.search_runs([self.experiment_id], filter_string=QUERY))

    def count_points(self) -> int:
        runs = self.client.search_runs([self.experiment_id], max_results=1000)
        return sum(len(self.client.get_metric_history(r.info.run_id, METRIC)) for r in runs)

    def close(self) -> None:
        try:
            self.client._tracking_client.store.engine.dispose()
        except Exception:  # private attribute; closing is only tidiness
            pass


# -- prodml ---------------------------------------------------------------------------------

class ProdmlSide:
    name = "prodml"

    def __init__(self) -> None:
        import prodml as pm
        self.pm = pm
        self.store: Any = None

    def log(self, folder: Path, plan: Plan) -> LogResult:
        pm = self.pm
        t0 = time.perf_counter()
        self.store = pm.open_store(f"sqlite:///{folder}/prodml.db", f"{folder}/artifacts",
                                   make_default=True)
        t1 = time.perf_counter()
        for params, values in plan:
            with pm.start_run(experiment=EXPERIMENT) as run:  # creates the experiment once
                run.log_params(params)
                for step, value in enumerate(values):
                    run.log_metric(METRIC, value, step=step)
        t2 = time.perf_counter()
        return LogResult(t1 - t0, t2 - t1)

    def search(self) -> int:
        return len(self.pm.runs.search(QUERY, experiment=EXPERIMENT, max_results=1000))

    def count_points(self) -> int:
        runs = self.pm.runs.search("", experiment=EXPERIMENT, max_results=1000)
        return sum(len(self.pm.runs.history(r.id, METRIC)) for r in runs)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


# -- running --------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def benchmark(args: argparse.Namespace) -> int:
    try:
        mlflow_side = MlflowSide()
    except ImportError as exc:
        print(f"MLflow is not importable here ({exc}). Run this with the benchmark venv: "
              "see benchmarks/README.md", file=sys.stderr)
        return 2
    prodml_side = ProdmlSide()
    for noisy in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")

    print(f"python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs")
    print(f"mlflow {version('mlflow')}, prodml {version('prodml')}, "
          f"sqlalchemy {version('sqlalchemy')}, sqlite {__import__('sqlite3').sqlite_version}")
    print(f"workload A: {args.runs} runs x {args.points} log_metric calls (+3 params/run), "
          f"{args.repeat} repetitions; workload B: search {QUERY!r} x {args.search_repeat}")
    print(f"prodml code version captured from cwd {Path.cwd()}")
    print(f"load average at start: {load_average()}")

    plan = make_plan(args.runs, args.points)
    expected_hits = sum(1 for _, values in plan if values[-1] > 0.5)
    root = Path(tempfile.mkdtemp(prefix="prodml-bench-"))
    log_times: dict[str, list[float]] = {"mlflow": [], "prodml": []}
    open_times: dict[str, list[float]] = {"mlflow": [], "prodml": []}
    sides = [mlflow_side, prodml_side]
    try:
        for rep in range(args.repeat):
            order = sides if rep % 2 == 0 else sides[::-1]
            for side in order:
                if rep > 0:
                    side.close()
                folder = root / f"{side.name}-{rep}"
                folder.mkdir()
                result = side.log(folder, plan)
                log_times[side.name].append(result.log_s)
                open_times[side.name].append(result.open_s)
                per_call = result.log_s / (args.runs * args.points) * 1e6
                print(f"  rep {rep + 1}/{args.repeat} log  {side.name:6s} "
                      f"{fmt_s(result.log_s):>10s}"
                      f"  ({per_call:.0f} us per log_metric incl. run overhead;"
                      f" store open {fmt_s(result.open_s)})", flush=True)

        # Same data in both stores, before timing the search.
        for side in sides:
            points = side.count_points()
            if points != args.runs * args.points:
                raise SystemExit(f"{side.name} stored {points} points, expected "
                                 f"{args.runs * args.points}")

        search_times: dict[str, list[float]] = {"mlflow": [], "prodml": []}
        frame_times: list[float] = []
        for i in range(args.search_repeat):
            order = sides if i % 2 == 0 else sides[::-1]
            for side in order:
                t0 = time.perf_counter()
                hits = side.search()
                search_times[side.name].append(time.perf_counter() - t0)
                if hits != expected_hits:
                    raise SystemExit(f"{side.name} found {hits} runs, expected {expected_hits}")
            t0 = time.perf_counter()
            hits = mlflow_side.search_frame()
            frame_times.append(time.perf_counter() - t0)
            if hits != expected_hits:
                raise SystemExit(f"mlflow.search_runs found {hits} runs, expected {expected_hits}")
    finally:
        for side in sides:
            side.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"stores kept in {root}")

    print(f"load average at end: {load_average()} (other work on these cores skews timings)")
    m_log, p_log = median(log_times["mlflow"]), median(log_times["prodml"])
    m_search, p_search = median(search_times["mlflow"]), median(search_times["prodml"])
    print(f"store open+migrate (not in ratio): mlflow median {fmt_s(median(open_times['mlflow']))}"
          f"  prodml median {fmt_s(median(open_times['prodml']))}")
    print(f"(info) mlflow.search_runs -> pandas DataFrame median {fmt_s(median(frame_times))}")
    print(f"log    ({args.runs} runs x {args.points} points, median of {args.repeat}): "
          f"mlflow {fmt_s(m_log)}  prodml {fmt_s(p_log)}")
    print(f"search ({QUERY!r}, {expected_hits} of {args.runs} runs, median of "
          f"{args.search_repeat}): mlflow {fmt_s(m_search)}  prodml {fmt_s(p_search)}")
    print(f"ratio log: {m_log / p_log:.1f}x  ratio search: {m_search / p_search:.1f}x")
    return 0


def profile(args: argparse.Namespace) -> int:
    """cProfile over ``args.profile`` prodml log_metric calls in one run."""
    import cProfile
    import pstats

    import prodml as pm

    root = Path(tempfile.mkdtemp(prefix="prodml-profile-"))
    try:
        store = pm.open_store(f"sqlite:///{root}/prodml.db", f"{root}/artifacts",
                              make_default=True)
        values = [random.Random(0).random() for _ in range(args.profile)]
        with pm.start_run(experiment=EXPERIMENT) as run:
            run.log_metric(METRIC, 0.0, step=0)  # warm SQLAlchemy's statement cache
            profiler = cProfile.Profile()
            t0 = time.perf_counter()
            profiler.enable()
            for step, value in enumerate(values, start=1):
                run.log_metric(METRIC, value, step=step)
            profiler.disable()
            elapsed = time.perf_counter() - t0
        print(f"{args.profile} prodml log_metric calls: {fmt_s(elapsed)} under cProfile "
              f"({elapsed / args.profile * 1e6:.0f} us per call)")
        stats = pstats.Stats(profiler)
        stats.sort_stats(args.profile_sort).print_stats(args.profile_top)
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per repetition (100)")
    parser.add_argument("--points", type=int, default=100,
                        help="log_metric calls per run (100)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions of the log workload, fresh stores each (3)")
    parser.add_argument("--search-repeat", type=int, default=10,
                        help="repetitions of the search (10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="profile N prodml log_metric calls instead of benchmarking")
    parser.add_argument("--profile-sort", default="cumulative",
                        help="pstats sort key for --profile (cumulative)")
    parser.add_argument("--profile-top", type=int, default=30,
                        help="functions shown by --profile (30)")
    args = parser.parse_args(argv)
    if args.runs < 2 or args.points < 1 or args.repeat < 1 or args.search_repeat < 1:
        parser.error("--runs must be >= 2; --points, --repeat, --search-repeat >= 1")
    return profile(args) if args.profile else benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
