"""Benchmark: prodml's model server against a plain FastAPI + uvicorn endpoint, in one run.

Not a test. The same scikit-learn model (StandardScaler + LogisticRegression, fitted on the
demo's loan applications) answers one record per request behind:

- (a) the peer: a small FastAPI app as a typical user writes it,
  ``model.predict_proba(pd.DataFrame([record]))`` per request, orjson response;
- (b) prodml, ``direct`` deployment, durable prediction log (a 2xx means committed);
- (c) prodml, ``canary`` at 10 % (a second version; its steps never advance) with a ``shadow``
  mirror at 100 % (a third version);
- (b') prodml, direct, ``--log-mode fast``: a comparison row, not a target (``--no-fast``
  leaves it out);
- (b+auth) prodml as (b) with ``--predict-access token``: every request carries a viewer
  token that the server checks (``--no-auth`` leaves it out). The target: the token check
  costs at most 5 % of (b)'s requests per second.

Every server is a uvicorn subprocess with the same ``--workers``, uvloop and httptools, on
127.0.0.1, started fresh for each measurement. The load generator is wrk (``--latency``,
2 threads) when it is on PATH, else a bounded Python client (asyncio sockets, keep-alive,
one request in flight per connection): ``--connections`` connections, ``--warmup`` seconds
that are not counted, then ``--seconds`` counted. Each round runs every server once, the
order reversed every other round, so the peer and prodml share the machine's noise; the
figures are medians over ``--rounds``. ``CPU ms/req`` is the server's CPU time (all its
processes, read from /proc) per answered request, the figure to compare when other work
shares the cores. After each (b) run the prediction log must hold at least as many new rows
as there were 2xx answers (durable logging); the excess is what was in flight when the
client stopped. The (c) tree is redeployed before each run, its step starting then, so
each run's canary judges its own traffic, not the rows of earlier runs.

    .venv/bin/python benchmarks/serving.py --workers 1 2
    .venv/bin/python benchmarks/serving.py --workers 1 --seconds 5 --rounds 1   # quick

The ratios to (a) and the targets ((b) >= 1.5x the peer's req/s with a p99 no worse,
(c) >= 1.0x) are printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears",
            "loan"]
CANARY_SPEC = {"kind": "shadow",
               "primary": {"kind": "canary", "primary": "bench/1", "candidate": "bench/2",
                           "steps": [10, 100], "step_every_requests": 100_000_000,
                           "guards": {"max_latency_p99_ms": 100_000}},
               "mirrors": [{"model": "bench/3", "percent": 100}]}

PEER_APP = '''\
"""The peer: what a typical user writes to serve a scikit-learn model with FastAPI."""
import joblib
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

model = joblib.load({model_path!r})
classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
app = FastAPI()


@app.get("/health")
async def health() -> Response:
    return Response(b"ok")


@app.post("/predict")
async def predict(request: Request) -> Response:
    record = orjson.loads(await request.body())
    proba = model.predict_proba(pd.DataFrame([record]))[0]
    best = int(proba.argmax())
    return Response(orjson.dumps({{
        "prediction": classes[best], "confidence": float(proba[best]),
        "probabilities": {{str(c): float(p) for c, p in zip(classes, proba)}}}}),
        media_type="application/json")
'''

WRK_SCRIPT = '''\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
local bodies = {{ {bodies} }}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
'''


@dataclass
class Load:
    """One measured run of the load generator."""

    requests: int  # answered within the run
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int  # socket errors and timeouts
    cpu_ms: float = 0.0  # the server's CPU time (all its processes) per answered request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx


@dataclass
class Case:
    key: str
    label: str
    runs: list[Load] = field(default_factory=list)
    logged: list[tuple[int, int]] = field(default_factory=list)  # (new log rows, 2xx)

    def median(self, what: str) -> float:
        return statistics.median(getattr(run, what) for run in self.runs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- setting up ----------------------------------------------------------------------------
def build(home: Path) -> list[dict]:
    """Register the model three times in a fresh store, deploy the two prodml endpoints, save
    the peer's copy and module; return the request records."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prodml.data.schema import infer_schema
    from prodml.demo.data import loan_applications
    from prodml.serving import endpoints as eps
    from prodml.store import open_store
    from prodml.tracking import registry

    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    data = loan_applications(rows=2000, seed=7)
    X, y = data[FEATURES], data["approved"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    schema = infer_schema(X)
    for _ in range(3):  # bench/1, bench/2 (canary), bench/3 (shadow): the same model
        registry.register("bench", model, input_example=X, schema=schema, store=store)
    eps.deploy("direct", "bench/1", store=store, reason="benchmark")
    from prodml.access import create_token
    (home / "viewer-token").write_text(create_token("bench", "viewer", created_by="bench",
                                                    store=store).token)
    store.close()
    joblib.dump(model, home / "model.joblib")
    (home / "peer_app.py").write_text(PEER_APP.format(model_path=str(home / "model.joblib")))
    return X.iloc[:256].to_dict(orient="records")


def deploy_canary(home: Path) -> None:
    """(Re)deploy the canary + shadow tree, its step starting now: each (c) run judges its
    own step, as a freshly started canary does, not the rows of earlier runs."""
    from prodml.serving import endpoints as eps
    from prodml.store import now_ms, open_store

    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    spec = {**CANARY_SPEC, "primary": {**CANARY_SPEC["primary"], "step_started_at": now_ms()}}
    eps.deploy("canary", spec, store=store, reason="benchmark")
    store.close()


def start(case: str, home: Path, workers: int, port: int) -> subprocess.Popen:
    env = {**os.environ, "PRODML_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    for name in ("PRODML_DATABASE_URL", "PRODML_ARTIFACTS", "PRODML_LOG_MODE"):
        env.pop(name, None)
    if case == "a":
        command = [sys.executable, "-m", "uvicorn", "peer_app:app", "--app-dir", str(home),
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                   "--log-level", "warning"]
        ready = f"http://127.0.0.1:{port}/health"
    else:
        command = [sys.executable, "-m", "prodml", "serve", "--host", "127.0.0.1", "--port",
                   str(port), "--workers", str(workers), "--log-mode",
                   "fast" if case == "fast" else "durable",
                   "--endpoint", "canary" if case == "c" else "direct",
                   "--predict-access", "token" if case == "auth" else "open"]
        ready = f"http://127.0.0.1:{port}/endpoints"
    with open(home / f"server-{case}-{port}.log", "ab") as log:  # the child keeps its copy
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server {case} exited {process.returncode}: "
                               f"{(home / f'server-{case}-{port}.log').read_text()[-3000:]}")
        try:
            if httpx.get(ready, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"server {case} did not start within 90 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # uvicorn's parent stops its workers
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU time of the server's processes (its session: uvicorn's parent and
    workers), read from /proc; 0 where /proc is absent."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == process.pid:  # process group (start_new_session: = pid)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def logged_rows(home: Path, endpoint: str) -> int:
    """Answered rows (shadows left out) of ``endpoint`` in the prediction log."""
    with sqlite3.connect(home / "prodml.db", timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM predictions WHERE endpoint = ? AND route "
                            "!= 'shadow'", (endpoint,)).fetchone()[0]


# ---- load generators -----------------------------------------------------------------------
def wrk(url: str, bodies: list[bytes], seconds: float, connections: int, folder: Path,
        token: str | None = None) -> Load:
    script = folder / ("post-auth.lua" if token else "post.lua")
    if not script.exists():
        auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
        script.write_text(WRK_SCRIPT.format(auth=auth, bodies=", ".join(
            "[[" + b.decode() + "]]" for b in bodies)))
    threads = min(2, connections)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d",
                          f"{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout
    found = re.search(r"^RESULT ([\d ]+)$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, duration_us, p50_us, p99_us, *errors = (int(v) for v in found.group(1).split())
    status_errors = errors[3]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(requests, duration_us / 1e6, p50_us / 1000, p99_us / 1000,
                max(status_errors, int(non_2xx.group(1)) if non_2xx else 0),
                errors[0] + errors[1] + errors[2] + errors[4])


def python_client(url: str, bodies: list[bytes], seconds: float, connections: int,
                  token: str | None = None) -> Load:
    """A bounded HTTP/1.1 keep-alive client: each connection sends its next request once the
    last one is answered; stops sending at the deadline and waits for what is in flight."""
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_drive(url, bodies, seconds, connections, token))


async def _drive(url: str, bodies: list[bytes], seconds: float, connections: int,
                 token: str | None) -> Load:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    requests = [(f"POST /{path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: "
                 f"application/json\r\n{auth}Content-Length: {len(b)}\r\n\r\n").encode() + b
                for b in bodies]
    latencies: list[float] = []
    failures = {"non_2xx": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            failures["errors"] += 1
            return
        i = offset
        clock = time.perf_counter
        try:
            while clock() < deadline:
                sent = clock()
                writer.write(requests[i % len(requests)])
                i += 1
                status = int((await reader.readline()).split(b" ", 2)[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(clock() - sent)
                if not 200 <= status < 300:
                    failures["non_2xx"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            failures["errors"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(i * 7) for i in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    if not latencies:
        return Load(0, elapsed, 0.0, 0.0, failures["non_2xx"], failures["errors"])
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return Load(len(latencies), elapsed, pick(0.50), pick(0.99), failures["non_2xx"],
                failures["errors"])


# ---- running -------------------------------------------------------------------------------
def measure(case: Case, home: Path, workers: int, bodies: list[bytes], args: argparse.Namespace,
            use_wrk: bool) -> Load:
    if case.key == "c":
        deploy_canary(home)
    port = free_port()
    process = start(case.key, home, workers, port)
    url = (f"http://127.0.0.1:{port}/predict" if case.key == "a" else
           f"http://127.0.0.1:{port}/endpoints/{'canary' if case.key == 'c' else 'direct'}"
           "/predict")
    token = (home / "viewer-token").read_text() if case.key == "auth" else None
    drive = ((lambda s: wrk(url, bodies, s, args.connections, home, token)) if use_wrk else
             (lambda s: python_client(url, bodies, s, args.connections, token)))
    try:
        drive(args.warmup)
        time.sleep(0.5)
        before = logged_rows(home, "direct") if case.key in ("b", "fast") else 0
        cpu = cpu_seconds(process)
        load = drive(args.seconds)
        load.cpu_ms = (cpu_seconds(process) - cpu) * 1000 / max(1, load.requests)
        if case.key in ("b", "fast"):
            time.sleep(0.5 if case.key == "b" else 1.0)  # fast: the last flush
            case.logged.append((logged_rows(home, "direct") - before, load.ok))
    finally:
        stop(process)
    case.runs.append(load)
    return load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="not counted, per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="medians over the rounds")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-fast", action="store_true",
                        help="leave out the (b') row, prodml with --log-mode fast")
    parser.add_argument("--no-auth", action="store_true",
                        help="leave out the (b+auth) row, prodml with --predict-access token")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    if args.client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH")

    import sklearn
    folder = Path(tempfile.mkdtemp(prefix="prodml-bench-serving-"))
    print(f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
          f"{os.cpu_count()} cores, client: "
          f"{'wrk (2 threads)' if use_wrk else 'python (asyncio sockets)'}, "
          f"{args.connections} connections, {args.seconds:g} s measured after "
          f"{args.warmup:g} s warm-up, {args.rounds} rounds; folder {folder}", flush=True)
    records = build(folder)
    bodies = [orjson.dumps(r) for r in records]
    keys = ["a", "b", "c"] + ([] if args.no_fast else ["fast"]) + ([] if args.no_auth
                                                                   else ["auth"])
    labels = {"a": "(a) FastAPI + sklearn, per request", "b": "(b) prodml direct, durable",
              "c": "(c) prodml canary 10% + shadow 100%",
              "fast": "(b') prodml direct, fast log (info)",
              "auth": "(b+auth) as (b), viewer token checked"}
    cases = {w: {k: Case(k, labels[k]) for k in keys} for w in args.workers}
    try:
        for round_ in range(args.rounds):
            for workers in args.workers:
                order = keys if round_ % 2 == 0 else keys[::-1]
                for key in order:
                    load = measure(cases[workers][key], folder, workers, bodies, args, use_wrk)
                    print(f"round {round_ + 1} workers {workers} {key:>4}: {load.rps:8.0f} "
                          f"req/s  p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:6.2f} ms  "
                          f"non-2xx {load.non_2xx}  errors {load.errors}  "
                          f"server CPU {load.cpu_ms:.3f} ms/req", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    failed = False
    print()
    print(f"{'workers':>7}  {'server':<38} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'non-2xx':>7} {'CPU ms/req':>10} {'x (a)':>6}")
    for workers, by_key in cases.items():
        peer = by_key["a"].median("rps")
        for case in by_key.values():
            non_2xx = sum(r.non_2xx + r.errors for r in case.runs)
            print(f"{workers:>7}  {case.label:<38} {case.median('rps'):>8.0f} "
                  f"{case.median('p50_ms'):>7.2f} {case.median('p99_ms'):>7.2f} "
                  f"{non_2xx:>7} {case.median('cpu_ms'):>10.3f} "
                  f"{case.median('rps') / peer:>5.2f}x")
            failed |= non_2xx > 0
    print()
    for workers, by_key in cases.items():
        for case in (by_key[k] for k in ("b", "fast") if k in by_key):
            for rows, ok in case.logged:
                durable = case.key == "b"
                good = rows >= ok if durable else True
                print(f"workers {workers} {case.key}: prediction log +{rows} rows for {ok} 2xx "
                      f"answers ({rows - ok:+d} in flight at the client's stop)"
                      f"{'' if good else '  LOST ROWS'}")
                failed |= not good
    print()
    for workers, by_key in cases.items():
        a, b, c = by_key["a"], by_key["b"], by_key["c"]
        rb, rc = b.median("rps") / a.median("rps"), c.median("rps") / a.median("rps")
        p99_ok = b.median("p99_ms") <= a.median("p99_ms")
        verdict_b = "MET" if rb >= 1.5 and p99_ok else "MISSED"
        verdict_c = "MET" if rc >= 1.0 else "MISSED"
        print(f"workers {workers}: (b)/(a) {rb:.2f}x req/s (target >= 1.5x), p99 "
              f"{b.median('p99_ms'):.1f} vs {a.median('p99_ms'):.1f} ms (target no worse): "
              f"{verdict_b};  (c)/(a) {rc:.2f}x req/s (target >= 1.0x): {verdict_c}")
        if "auth" in by_key:
            cost = 1 - by_key["auth"].median("rps") / b.median("rps")
            print(f"workers {workers}: the token check costs {cost:+.1%} of (b)'s req/s "
                  f"(target <= 5%): {'MET' if cost <= 0.05 else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
