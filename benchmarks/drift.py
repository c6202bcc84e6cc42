"""Evidently's DataDriftPreset vs prodml's ``drift`` on the same frames, in one run.

20 numeric + 5 categorical columns, ``--rows`` a side (default 1,000,000), with 5 shifted
columns (3 numeric, 2 categorical) and 5 % nulls in a few others. The frames are generated
once (seeded) and written to Parquet; each tool then runs in its own fresh subprocess, which
reads them into pandas (the form Evidently takes), times only the drift computation, and
reports its peak RSS (``ru_maxrss``) and the extra RSS seen during the computation (sampled
by psutil every 5 ms). Both use their default methods (prodml follows Evidently's choice), so
the per-column methods, scores and verdicts are compared too. The ratio line comes last.

Run it in .venv-bench-drift (Evidently 0.7 needs pandas < 3), from the repository root:

    uv venv -p 3.11 .venv-bench-drift
    uv pip install -p .venv-bench-drift -r requirements/bench-drift-lock.txt
    uv pip install -p .venv-bench-drift --no-deps -e .
    .venv-bench-drift/bin/python benchmarks/drift.py --rows 100000   # quick
    .venv-bench-drift/bin/python benchmarks/drift.py                 # 1,000,000 a side
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

NUMERIC, CATEGORICAL = 20, 5
SHIFTED = ["num_00", "num_01", "num_02", "cat_0", "cat_1"]
EVIDENTLY_METHODS = {"K-S p_value": "ks", "Wasserstein distance (normed)": "wasserstein",
                     "Jensen-Shannon distance": "jensenshannon", "chi-square p_value": "chisquare",
                     "Z-test p_value": "z", "PSI": "psi"}


def make_frame(rows: int, current: bool, seed: int):
    """One side's columns; the current side moves the SHIFTED columns."""
    import pandas as pd

    rng = np.random.default_rng(seed + (1 if current else 0))
    cols: dict[str, np.ndarray] = {}
    for i in range(NUMERIC):
        name = f"num_{i:02d}"
        moved = current and name in SHIFTED
        family = i % 5
        if family == 0:
            x = rng.normal(50 + (3 if moved else 0), 10, rows)  # mean shift 0.3 std
        elif family == 1:
            x = rng.lognormal(0, 0.5 * (1.4 if moved else 1), rows)  # wider
        elif family == 2:
            x = rng.uniform(0, 100 + (30 if moved else 0), rows)
        elif family == 3:
            x = rng.poisson(20, rows).astype(np.float64)  # integer-valued, ~40 values
        else:
            x = rng.integers(0, 4, rows).astype(np.float64)  # 4 values: Jensen-Shannon
        if i in (5, 9, 13):
            x[rng.random(rows) < 0.05] = np.nan
        cols[name] = x
    for j in range(CATEGORICAL):
        name = f"cat_{j}"
        labels = np.array([f"{name}_v{k}" for k in range(3 + 4 * j)])
        p = np.linspace(2, 1, labels.size)
        if current and name == "cat_0":
            p = p[::-1]  # the rarest become the most common
        if current and name == "cat_1":
            p = np.r_[p, p.sum() * 0.4]  # a new value, 29 % of rows
            labels = np.r_[labels, [f"{name}_new"]]
        cols[name] = rng.choice(labels, rows, p=p / p.sum())
    return pd.DataFrame(cols)


class PeakSampler:
    """Highest RSS seen while running, sampled every 5 ms (psutil)."""

    def __init__(self) -> None:
        import psutil
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def child(tool: str, folder: Path) -> None:
    import pandas as pd

    if tool == "evidently":
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    else:
        from prodml.data.drift import drift
    ref = pd.read_parquet(folder / "reference.parquet")
    cur = pd.read_parquet(folder / "current.parquet")
    numeric = [c for c in ref.columns if c.startswith("num_")]
    categorical = [c for c in ref.columns if c.startswith("cat_")]
    with PeakSampler() as sampler:
        started = time.perf_counter()
        if tool == "evidently":
            definition = DataDefinition(numerical_columns=numeric,
                                        categorical_columns=categorical)
            snapshot = Report([DataDriftPreset()], include_tests=True).run(
                current_data=Dataset.from_pandas(cur, data_definition=definition),
                reference_data=Dataset.from_pandas(ref, data_definition=definition))
            result = snapshot.dict()
        else:
            report = drift(ref, cur)
        seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    columns: dict[str, dict] = {}
    if tool == "evidently":
        for metric in result["metrics"]:
            config = metric["config"]
            if config["type"].endswith("ValueDrift"):
                columns[config["column"]] = {
                    "method": EVIDENTLY_METHODS.get(config["method"], config["method"]),
                    "score": float(metric["value"]), "threshold": config["threshold"]}
            elif config["type"].endswith("DriftedColumnsCount"):
                share = metric["value"]["share"]
        for test in result["tests"]:
            params = test["metric_config"]["params"]
            if params["type"].endswith("ValueDrift"):
                columns[params["column"]]["drifted"] = test["status"] == "FAIL"
        dataset = share >= 0.5
        extra = {}
    else:
        for c in report.columns:
            columns[c.name] = {"method": c.method, "score": c.score, "threshold": c.threshold,
                               "drifted": c.drifted}
        share, dataset = report.share_drifted, report.dataset_drift
        import pyarrow.parquet as pq
        tables = [pq.read_table(folder / f"{side}.parquet") for side in ("reference", "current")]
        started = time.perf_counter()
        drift(*tables)
        extra = {"arrow_seconds": time.perf_counter() - started}
    (folder / f"{tool}.json").write_text(json.dumps({
        "seconds": seconds, "peak_rss": peak_kb * 1024, "run_rss": sampler.peak - sampler.start,
        "columns": columns, "share": share, "dataset_drift": dataset, **extra}))


def run_child(tool: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", tool, str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{tool} run failed:\n{done.stderr[-4000:]}")
    return json.loads((folder / f"{tool}.json").read_text())


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows a side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["prodml", "evidently"], help="run one tool")
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    import evidently

    with tempfile.TemporaryDirectory(prefix="prodml-bench-drift-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        for side, current in (("reference", False), ("current", True)):
            make_frame(args.rows, current, args.seed).to_parquet(folder / f"{side}.parquet")
        print(f"data: {args.rows:,} rows a side, {NUMERIC} numeric + {CATEGORICAL} categorical "
              f"columns, shifted: {', '.join(SHIFTED)} (generated in "
              f"{time.perf_counter() - started:.1f} s); {os.cpu_count()} CPUs")
        tools = [args.only] if args.only else ["evidently", "prodml"]
        results = {tool: run_child(tool, folder) for tool in tools}
    names = {"evidently": f"evidently {evidently.__version__} DataDriftPreset",
             "prodml": "prodml drift (pandas in)"}
    for tool, r in results.items():
        print(f"{names[tool]:38} {r['seconds']:8.2f} s   peak RSS {gb(r['peak_rss'])} "
              f"(+{gb(r['run_rss'])} during the run)   dataset drift {r['dataset_drift']} "
              f"(share {r['share']:.2f})")
    if "prodml" in results:
        print(f"{'prodml drift (Arrow tables in)':38} {results['prodml']['arrow_seconds']:8.2f} s"
              "   (information only)")
    if len(results) < 2:
        return
    ev, pm = results["evidently"]["columns"], results["prodml"]["columns"]
    same = [c for c in ev if c in pm and ev[c]["method"] == pm[c]["method"]]
    agree = [c for c in same if ev[c]["drifted"] == pm[c]["drifted"]]
    gap = max((abs(ev[c]["score"] - pm[c]["score"]) for c in same), default=float("nan"))
    print(f"methods: same on {len(same)}/{len(ev)} columns; verdicts agree on {len(agree)}/"
          f"{len(same)} of those; max |score difference| {gap:.2e}")
    for c in ev:
        if c not in same or c not in agree:
            print(f"  {c}: evidently {ev[c]} / prodml {pm.get(c)}")
    print(f"drifted: evidently {sorted(c for c in ev if ev[c]['drifted'])}, "
          f"prodml {sorted(c for c in pm if pm[c]['drifted'])}")
    e, p = results["evidently"], results["prodml"]
    print(f"ratio time: {e['seconds'] / p['seconds']:.1f}x  "
          f"ratio peak memory: {e['peak_rss'] / p['peak_rss']:.2f}x  "
          f"(evidently / prodml; above 1 means prodml is faster or smaller)")


if __name__ == "__main__":
    main()
