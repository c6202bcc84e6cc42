"""Benchmark: a full monitor run over a million logged predictions, an incremental run over
the last 10,000, and Evidently's DataDriftPreset on the same frames, in one run.

Not a test. ``--rows`` predictions (default 1,000,000) with ``--features`` features (default
20: 15 numeric, 5 categorical; 3 numeric and 1 categorical shifted in the second half of
the log) are written straight into a SQLite prediction log with ``PredictionLog.write_sync``
in commits of ``--commit-rows`` (default 256, a server under load), for an endpoint whose
version was registered with a training profile of ``--reference-rows`` rows (default: as
many as the log). The monitor has windows of ``--window`` predictions (default 100,000) and
its default checks: software, input and output metrics, data drift of every feature against
the training profile, prior shift of the predictions, the confidence test; plus a drift
alert per feature.

- **full run**: ``run_monitor(name, full=True)``: read the whole log, cut the windows,
  compute and store every series, move the alerts (one transaction);
- **incremental run**: the monitor first runs over all but the last ``--incremental`` rows
  (default 10,000), then the timed run reads just those, closes the last window (its other
  rows come from the open window kept in the store) and stores it. The monitor's row is
  restored before each repetition;
- **Evidently**: ``Report([DataDriftPreset()]).run(current, reference)`` on pandas frames of
  the reference and of the logged features (the same rows the monitor read), converted
  before the clock starts. Its drift verdicts are printed beside the monitor's.

Each is repeated (``--repeat``, ``--evidently-repeat``); the medians are printed, the ratio
(Evidently / full run) last. Evidently 0.7 needs pandas < 3: run it in .venv-bench-drift
(``make bench-monitoring``; ``BENCH_MONITORING_ARGS="--rows 200000"`` for a quick look).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

NUMERIC, CATEGORICAL = 15, 5
SHIFTED = ["num_00", "num_01", "num_02", "cat_0"]
ENDPOINT = "bench"


def make_features(rows: int, seed: int, shift_from: int | None) -> pl.DataFrame:
    """Numeric and categorical features; rows from ``shift_from`` on move the SHIFTED ones."""
    rng = np.random.default_rng(seed)
    moved = np.zeros(rows, dtype=bool) if shift_from is None else np.arange(rows) >= shift_from
    columns: dict[str, np.ndarray] = {}
    for i in range(NUMERIC):
        name = f"num_{i:02d}"
        family = i % 5
        if family == 0:
            x = rng.normal(50, 10, rows) + np.where(moved & (name in SHIFTED), 5.0, 0.0)
        elif family == 1:
            x = rng.lognormal(0, 0.5, rows) * np.where(moved & (name in SHIFTED), 1.5, 1.0)
        elif family == 2:
            x = rng.uniform(0, 100, rows) + np.where(moved & (name in SHIFTED), 30.0, 0.0)
        elif family == 3:
            x = rng.poisson(20, rows).astype(np.float64)
        else:
            x = rng.integers(0, 4, rows).astype(np.float64)
        columns[name] = x
    for j in range(CATEGORICAL):
        name = f"cat_{j}"
        labels = np.array([f"{name}_v{k}" for k in range(3 + 2 * j)])
        p = np.linspace(2, 1, labels.size)
        p /= p.sum()
        values = rng.choice(labels, rows, p=p)
        if name in SHIFTED:
            values = np.where(moved, rng.choice(labels, rows, p=p[::-1]), values)
        columns[name] = values
    return pl.DataFrame(columns)


def build(folder: Path, rows: int, reference_rows: int, commit_rows: int, window: int,
          seed: int) -> tuple[object, pl.DataFrame, pl.DataFrame]:
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    from prodml.monitoring.store import save_monitor
    from prodml.serving import endpoints as eps
    from prodml.serving.prediction_log import PredictionLog, PredictionRecord
    from prodml.store import open_store
    from prodml.tracking import registry

    store = open_store(f"sqlite:///{folder / 'prodml.db'}", str(folder / "artifacts"))
    reference = make_features(reference_rows, seed, None)
    training = reference.with_columns(label=pl.Series(
        np.random.default_rng(seed + 1).integers(0, 2, reference_rows)))
    started = time.perf_counter()
    model = DummyClassifier(strategy="prior").fit(pd.DataFrame({"x": [0, 1]}), [0, 1])
    version = registry.register(ENDPOINT, model, input_example=reference.head(5).to_pandas(),
                                training_data=training, store=store)
    eps.deploy(ENDPOINT, version.ref, store=store)
    profiled = time.perf_counter() - started
    current = make_features(rows, seed + 2, rows // 2)
    rng = np.random.default_rng(seed + 3)
    proba = rng.beta(2, 2, rows)
    latency = rng.gamma(2.0, 3.0, rows)
    status = np.where(rng.random(rows) < 0.01, "error", "ok")
    t0 = int(time.time() * 1000) - rows - 60_000  # one prediction a millisecond, in the past
    names = current.columns
    started = time.perf_counter()
    log = PredictionLog(store, max_batch=commit_rows)
    # ids as the server makes them: the time in ms (12 hex), then a counter (20 hex)
    chunk = 100_000
    for start in range(0, rows, chunk):
        part = current.slice(start, chunk)
        records = [PredictionRecord(
            f"{t0 + start + i:012x}{i + start:020x}", t0 + start + i, ENDPOINT, ENDPOINT,
            version.version, "primary", 1, None, dict(zip(names, values)),
            int(p >= 0.5), {"0": 1 - p, "1": p}, max(p, 1 - p), lat, st)
            for i, (values, p, lat, st) in enumerate(zip(
                part.iter_rows(), proba[start:start + chunk].tolist(),
                latency[start:start + chunk].tolist(), status[start:start + chunk].tolist()))]
        for first in range(0, len(records), commit_rows):
            log.write_sync(records[first:first + commit_rows])
    log.close()
    written = time.perf_counter() - started
    save_monitor({"endpoint": ENDPOINT, "name": "bench", "window": {"predictions": window},
                  "alerts": [{"series": f"drifted[{c}]", "upper": 0.5} for c in names]},
                 store=store)
    print(f"setup: training profile of {reference_rows:,} rows in {profiled:.1f} s; "
          f"{rows:,} predictions x {len(names)} features logged in {written:.1f} s "
          f"(commits of {commit_rows} rows)", flush=True)
    return store, reference, current


def time_prodml(store: object, rows: int, incremental: int, repeat: int, last_time: int
                ) -> tuple[list[float], list[float], object]:
    from sqlalchemy import delete, select, update

    from prodml.monitoring.runner import run_monitor
    from prodml.store import tables as t

    full_times, full_run = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        full_run = run_monitor("bench", store=store, full=True, now=last_time + 1, lag_ms=0)
        full_times.append(time.perf_counter() - started)
        print(f"  full run: {full_times[-1]:.2f} s ({full_run.read:,} rows read, "
              f"{len(full_run.windows)} windows)", flush=True)
    cut = last_time - incremental + 1  # the last `incremental` rows are after this
    run_monitor("bench", store=store, full=True, now=cut, lag_ms=0)
    m, r, a = t.monitors, t.monitor_results, t.alerts
    with store.read() as conn:
        saved = dict(conn.execute(select(m).where(m.c.name == "bench")).mappings().one())
        windows = saved["windows"]
        last_alert = conn.execute(select(a.c.id).order_by(a.c.id.desc()).limit(1)).scalar() or 0
    incremental_times = []
    for _ in range(repeat):
        with store.write() as conn:
            conn.execute(delete(r).where(r.c.monitor == "bench", r.c.window_index >= windows))
            conn.execute(delete(a).where(a.c.id > last_alert))
            revision = conn.execute(select(m.c.revision).where(m.c.name == "bench")).scalar()
            conn.execute(update(m).where(m.c.name == "bench").values(
                **{k: v for k, v in saved.items() if k not in ("name", "revision")},
                revision=revision + 1))
        started = time.perf_counter()
        run = run_monitor("bench", store=store, now=last_time + 1, lag_ms=0)
        incremental_times.append(time.perf_counter() - started)
        print(f"  incremental run: {incremental_times[-1]:.3f} s ({run.read:,} rows read, "
              f"{len(run.windows)} window closed, {run.pending_rows:,} left open)", flush=True)
    return full_times, incremental_times, full_run


def time_evidently(reference: pl.DataFrame, current: pl.DataFrame, repeat: int
                   ) -> tuple[list[float], list[str] | None]:
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        print("  evidently is not installed here (run in .venv-bench-drift): skipped")
        return [], None
    ref, cur = reference.to_pandas(), current.to_pandas()
    numeric = [c for c in ref.columns if c.startswith("num_")]
    categorical = [c for c in ref.columns if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    times, drifted = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition))
        result = snapshot.dict()
        times.append(time.perf_counter() - started)
        drifted = sorted(test["metric_config"]["params"]["column"] for test in result["tests"]
                         if test["metric_config"]["params"]["type"].endswith("ValueDrift")
                         and test["status"] == "FAIL")
        print(f"  evidently DataDriftPreset: {times[-1]:.2f} s", flush=True)
    return times, drifted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=None)
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--incremental", type=int, default=10_000)
    parser.add_argument("--commit-rows", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", help="keep the store here (default: a temporary folder)")
    args = parser.parse_args()
    reference_rows = args.reference_rows or args.rows
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    with tempfile.TemporaryDirectory(prefix="prodml-bench-monitoring-") as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        store, reference, current = build(folder, args.rows, reference_rows, args.commit_rows,
                                          args.window, args.seed)
        from prodml.serving.log_reader import read_predictions

        logged = read_predictions(ENDPOINT, store=store, with_feedback=False)
        last_time = int(logged["time"].max())
        features = logged.select(current.columns)  # the frame the monitor reads, as logged
        del logged
        print("prodml monitor:", flush=True)
        full, incremental, run = time_prodml(store, args.rows, args.incremental, args.repeat,
                                             last_time)
        print("evidently:", flush=True)
        evidently, ev_drifted = time_evidently(reference, features, args.evidently_repeat)
        store.close()
    ours = sorted({k[len("drifted["):-1] for w in run.windows for k, v in w["values"].items()
                   if k.startswith("drifted[") and v == 1.0})
    print(f"drifted (in some window): prodml {', '.join(ours) or 'none'}"
          + (f"; evidently (whole log) {', '.join(ev_drifted) or 'none'}"
             if ev_drifted is not None else "") + f"; shifted: {', '.join(SHIFTED)} "
          "(second half)")
    full_s, inc_s = statistics.median(full), statistics.median(incremental)
    print(f"median full run ({args.rows:,} rows, {len(run.windows)} windows): {full_s:.2f} s; "
          f"median incremental run ({args.incremental:,} rows): {inc_s:.3f} s "
          f"(target < 1 s)")
    if evidently:
        ev = statistics.median(evidently)
        print(f"median evidently DataDriftPreset ({args.rows:,} rows vs {reference_rows:,}): "
              f"{ev:.2f} s")
        print(f"ratio (evidently / prodml full run): {ev / full_s:.1f}x (target >= 20x)")
    else:
        print("ratio: n/a (evidently not installed)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
