"""Benchmark: how long a deployment change takes to reach every replica, polling vs NOTIFY.

Not a test (it does not run in CI). It starts its own PostgreSQL server (``initdb`` +
``pg_ctl`` in a temporary folder, as the test suite does; as root, through ``runuser -u
postgres``), registers two small scikit-learn models and deploys them as a blue-green pair
(both stay loaded, so a change costs no model load and what is timed is the propagation
alone). Then, for each mode:

- **polling**: ``--replicas`` ``prodml serve`` processes with ``PRODML_NOTIFY=0``, each
  reading the endpoints' revisions every ``PRODML_POLL_INTERVAL`` (0.5 s, the default);
- **notify**: the same with ``PRODML_NOTIFY=1``: each replica LISTENs and refreshes as soon
  as a change is announced (the poll stays underneath).

``--changes`` changes (default 50) are made through the library (``switch``: the other colour
takes all traffic), a random pause of 0.1 to 0.6 s between them so that they land anywhere in
the poll cycle. The clock starts when ``switch`` returns (its transaction has committed) and
stops, per replica, when an answer of ``POST /endpoints/{name}/predict`` carries the new
``revision``; each replica is asked back to back (``--probe-ms`` between answers, 1 ms by
default, over one raw keep-alive connection each), so a figure is an upper bound by one
round trip. A change's time is that of its
slowest replica. It prints p50, p90, p99 and max per mode, and last the ratio
polling / notify and whether p99 with NOTIFY is under the 100 ms target.

    .venv/bin/python benchmarks/propagation.py                     # 3 replicas, 50 changes
    .venv/bin/python benchmarks/propagation.py --replicas 2 --changes 10   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
try:
    from uvloop import run
except ImportError:  # pragma: no cover - uvloop comes with the server's dependencies
    run = asyncio.run
TARGET_P99_MS = 100.0


# ---- a throwaway PostgreSQL server ---------------------------------------------------------
def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_server_user(args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Postgres:
    """``initdb`` + ``pg_ctl start`` in a temporary folder; ``stop()`` removes it all."""

    def __init__(self) -> None:
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            sys.exit("initdb/pg_ctl are not on PATH: install PostgreSQL's server binaries")
        self.data = Path(tempfile.mkdtemp(prefix="prodml-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.data, user="postgres")
        done = _run(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                     "--no-sync"])
        if done.returncode != 0:
            sys.exit(f"initdb failed:\n{done.stdout}{done.stderr}")
        self.port = free_port()
        options = (f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c max_connections=200")
        done = _run(["pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"),
                     "-o", options, "-w", "-t", "60", "start"])
        if done.returncode != 0:
            sys.exit(f"pg_ctl start failed:\n{done.stdout}{done.stderr}")

    def create_database(self) -> str:
        import psycopg

        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        _run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"], timeout=60)
        shutil.rmtree(self.data, ignore_errors=True)


# ---- the store and the replicas --------------------------------------------------------------
def build(url: str, home: Path) -> Any:
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    from prodml.serving import endpoints as eps
    from prodml.store import open_store
    from prodml.tracking import registry

    store = open_store(url, str(home / "artifacts"))
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    y = [0, 1, 0, 1]
    registry.register("bench", LogisticRegression().fit(X, y), input_example=X, store=store)
    registry.register("bench", DummyClassifier().fit(X, y), input_example=X, store=store)
    eps.deploy("bench", "bench/1", store=store)
    eps.deploy("bench", "bench/2", strategy="blue-green", store=store)
    return store


def start_replicas(count: int, url: str, home: Path, notify: bool) -> list[tuple]:
    env = {**os.environ, "PRODML_HOME": str(home), "PRODML_DATABASE_URL": url,
           "PRODML_ARTIFACTS": str(home / "artifacts"), "PRODML_NOTIFY": "1" if notify else "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    replicas = []
    for _ in range(count):
        port = free_port()
        log = open(home / f"serve-{port}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "prodml", "serve", "--port",
                                    str(port), "--log-mode", "fast"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=home)
        replicas.append((process, f"http://127.0.0.1:{port}", home / f"serve-{port}.log"))
    deadline = time.monotonic() + 90
    for process, base, log_path in replicas:
        while True:
            if process.poll() is not None:
                sys.exit(f"a replica exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.post(f"{base}/endpoints/bench/predict", json={"x": 1.0},
                              timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"a replica did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
    time.sleep(1.0)  # the listeners connect once each app has started
    return replicas


def stop_replicas(replicas: list[tuple]) -> None:
    for process, _, _ in replicas:
        process.terminate()
    for process, _, _ in replicas:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the measurement ---------------------------------------------------------------------------
class Probe:
    """One keep-alive HTTP/1.1 connection to a replica asking which revision it serves.

    Raw sockets rather than an HTTP client library: the probes share the cores with the
    replicas, and a heavier client would measure itself."""

    BODY = b'{"x": 1.0}'

    def __init__(self, base: str) -> None:
        self.host_port = base.removeprefix("http://")
        self.request = (f"POST /endpoints/bench/predict HTTP/1.1\r\nHost: {self.host_port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(self.BODY)}"
                        "\r\n\r\n").encode() + self.BODY
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def revision(self) -> int | None:
        if self.writer is None:
            host, _, port = self.host_port.partition(":")
            self.reader, self.writer = await asyncio.open_connection(host, int(port))
        assert self.reader is not None
        self.writer.write(self.request)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        return orjson.loads(body)["revision"] if status == 200 else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def until_served(probe: Probe, revision: int, started: float, probe_s: float,
                       timeout: float) -> float:
    """Seconds from ``started`` until this replica answers with ``revision`` or later."""
    while True:
        served = await probe.revision()
        now = time.perf_counter()
        if served is not None and served >= revision:
            return now - started
        if now - started > timeout:
            raise RuntimeError(f"revision {revision} not served within {timeout} s")
        await asyncio.sleep(probe_s)


async def run_changes(store: Any, replicas: list[tuple], changes: int, probe_s: float,
                      seed: int) -> list[float]:
    from prodml.serving import endpoints as eps

    rng = random.Random(seed)
    probes = [Probe(base) for _, base, _ in replicas]
    times = []
    try:
        for _ in range(changes):
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            changed = eps.switch("bench", reason="benchmark", store=store)  # committed
            started = time.perf_counter()
            each = await asyncio.gather(*(until_served(p, changed.revision, started, probe_s,
                                                       10.0) for p in probes))
            times.append(max(each) * 1000)
    finally:
        for probe in probes:
            probe.close()
    return times


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--probe-ms", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    postgres = Postgres()
    work = Path(tempfile.mkdtemp(prefix="prodml-bench-propagation-"))
    results: dict[str, list[float]] = {}
    try:
        url = postgres.create_database()
        store = build(url, work)
        print(f"PostgreSQL {postgres.port}, {args.replicas} replicas, {args.changes} changes "
              f"(blue-green switch), probe every {args.probe_ms:g} ms, cpus={os.cpu_count()}")
        for mode in ("polling", "notify"):
            replicas = start_replicas(args.replicas, url, work, notify=mode == "notify")
            try:
                results[mode] = run(run_changes(store, replicas, args.changes,
                                                        args.probe_ms / 1000, args.seed))
            finally:
                stop_replicas(replicas)
        store.close()
    finally:
        postgres.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'mode':<10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}"
          f"{'mean ms':>10}")
    for mode, times in results.items():
        print(f"{mode:<10}{quantile(times, .5):>10.1f}{quantile(times, .9):>10.1f}"
              f"{quantile(times, .99):>10.1f}{max(times):>10.1f}{statistics.mean(times):>10.1f}")
    poll, note = results["polling"], results["notify"]
    p99 = quantile(note, .99)
    print(f"\nNOTIFY p99 {p99:.1f} ms: {'under' if p99 < TARGET_P99_MS else 'OVER'} the "
          f"{TARGET_P99_MS:g} ms target")
    print(f"ratio p50: {quantile(poll, .5) / quantile(note, .5):.1f}x  "
          f"ratio p99: {quantile(poll, .99) / p99:.1f}x  (polling / notify)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
