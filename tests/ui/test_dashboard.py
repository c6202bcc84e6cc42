"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real
``prodml serve``: every page renders without console errors, every chart holds data, the
rollback button rolls the endpoint back with the admin token typed into the page, and the
review form resolves a case. Then the endpoint page's aggregates over 1,000,000 logged
predictions, timed.

The store is populated through the real parts: a canary deployed with history, ~200
predictions over HTTP plus labels as feedback, a partially automated endpoint whose
low-confidence cases wait for review, a run with stepped metrics, a dataset and an
artifact, a registered version with an evaluation and a gate's blessing, a drift report,
and a monitor run by the monitor runner (drift, performance, an alert that fires).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving.conftest import FEATURES, build_store, free_port, start_server, stop_server
from tests.ui.conftest import need_chromium, sign_in

TOKEN = "ui-test-token"


@dataclass
class Site:
    url: str
    store: Any
    home: Path
    run_id: str
    data: Any

    def client(self) -> httpx.Client:
        """A client holding the server's admin token (``PRODML_ADMIN_TOKEN``)."""
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {TOKEN}"})

    def token(self, name: str, role: str) -> str:
        from prodml.access import create_token

        return create_token(name, role, created_by="tests", store=self.store).token




def _predict(client: httpx.Client, endpoint: str, records: list[dict]) -> list[dict]:
    answers = []
    for i in range(0, len(records), 10):
        response = client.post(f"/endpoints/{endpoint}/predict",
                               json={"records": records[i:i + 10]})
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    return answers


def _populate_tracking(store: Any, data: Any, reports: Path) -> str:
    """A run with stepped metrics, a dataset, an artifact and a hostile tag; a version
    registered from it with an evaluation and a blessing; a drift report."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prodml.data.drift import drift
    from prodml.evaluation.evaluate import evaluate
    from prodml.evaluation.gates import gate
    from prodml.tracking import registry
    from prodml.tracking.runs import start_run

    train, test = data.iloc[:1500], data.iloc[1500:]
    run = start_run("ui-test", params={"C": 0.5, "model": "logreg"},
                    tags={"note": "<b>not bold</b><script>window.pwned=1</script>"},
                    name="ui <run>", store=store)
    for step in range(1, 6):
        run.log_metric("train_loss", 1.0 / step, step=step)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(
        train[FEATURES], train["approved"])
    run.log_metrics({"accuracy": float(model.score(test[FEATURES], test["approved"]))})
    run.log_dataset(train, context="train", name="loans-train")
    run.log_bytes("notes.txt", b"trained for the dashboard test")
    run.end()
    version = registry.register("loan", model, run=run.id, input_example=train[FEATURES],
                                description="from the ui test run", store=store)
    result = evaluate(model, test, label="approved", features=FEATURES, bootstrap=20)
    blessing = gate(result, {"name": "ui-gate", "conditions": [
        {"metric": "accuracy", "min": 0.5}]})
    registry.attach_evaluation(version.ref, result, blessing, name="holdout", store=store)
    reports.mkdir(parents=True, exist_ok=True)
    shifted = test.assign(salary=test["salary"] * 1.5)
    (reports / "loan-drift.html").write_text(
        drift(train[FEATURES], shifted[FEATURES]).to_html())
    return run.id


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Any:
    need_chromium()
    from prodml.monitoring.runner import run_monitor
    from prodml.serving import endpoints as eps
    from prodml.store import now_ms

    home = tmp_path_factory.mktemp("ui")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store, reason="first release", actor="dana")
    # a canary that stays at its first step: the controller neither steps nor rolls it back
    eps.deploy("loan", "loan/2", strategy="canary", steps=[30, 60, 100], store=store,
               step_every_requests=100_000,
               guards={"max_latency_p99_ms": 60_000.0, "max_error_rate": 1.0},
               reason="try the boosted trees", actor="dana")
    eps.deploy("loan-review", "loan/1", mode="partial", threshold=0.9, store=store,
               reason="people decide the unsure cases", actor="dana")
    run_id = _populate_tracking(store, data, Path(store.artifacts.location).parent / "reports")
    port = free_port()
    process, _ = start_server(home, port, env_extra={"PRODML_ADMIN_TOKEN": TOKEN})
    site = Site(f"http://127.0.0.1:{port}", store, home, run_id, data)
    try:
        with site.client() as client:
            reference_since = now_ms()
            reference = site.data.iloc[:100]
            answers = _predict(client, "loan", reference[FEATURES].to_dict("records"))
            reference_until = now_ms() + 1
            time.sleep(0.05)
            drifted = site.data.iloc[100:].query("age >= 55").head(120)  # older applicants
            answers += _predict(client, "loan", drifted[FEATURES].to_dict("records"))
            truth = list(reference["approved"]) + list(drifted["approved"])
            labels = [{"prediction_id": a["prediction_id"], "label": int(y)}
                      for a, y in zip(answers, truth)]
            assert client.post("/feedback", json=labels).status_code == 200
            _predict(client, "loan-review", site.data[FEATURES].iloc[300:330].to_dict("records"))
        run_monitor({"endpoint": "loan", "name": "loan-watch", "window": {"predictions": 40},
                     "reference": {"since": reference_since, "until": reference_until},
                     "checks": {"drift": {"threshold": 0.1, "thresholds": {"age": 0.05}},
                                "performance": {"positive": 1, "min_coverage": 0.5},
                                "estimated_performance": {"probability": "proba_1"}},
                     "alerts": [{"series": "mean_confidence", "lower": 0.99,
                                 "severity": "critical", "name": "unsure answers"}]},
                    store=store, now=now_ms() + 10_000, lag_ms=0)
        yield site
    finally:
        stop_server(process)




class Page:
    """A browser tab that keeps every console error and uncaught exception."""

    def __init__(self, browser: Any, url: str) -> None:
        self.url = url
        self.tab = browser.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(f"console: {m.text}")
                    if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, path: str) -> Any:
        response = self.tab.goto(self.url + path)
        assert response is not None and response.status == 200, (path, response)
        self.tab.wait_for_load_state("networkidle")
        if self.tab.locator("#chart-data").count():
            self.tab.wait_for_function("document.body.dataset.charts === 'drawn'",
                                       timeout=15_000)
        shots = os.environ.get("PRODML_UI_SCREENSHOTS")  # a folder: to look at the pages
        if shots:
            name = path.strip("/").replace("/", "_") or "root"
            self.tab.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
        return response

    def chart_sizes(self) -> dict[str, int]:
        """Traces per drawn chart (Plotly keeps them on the chart's element)."""
        return self.tab.evaluate("""() => Object.fromEntries(
            Array.from(document.querySelectorAll('.chart')).map(
                el => [el.id, Array.isArray(el.data) ? el.data.length : -1]))""")

    def points(self, chart: str) -> int:
        return self.tab.evaluate(f"""() => document.getElementById({chart!r}).data.reduce(
            (n, trace) => n + (trace.y || trace.x || []).filter(v => v !== null).length, 0)""")

    def no_errors(self) -> None:
        assert self.errors == [], self.errors

    def close(self) -> None:
        self.tab.close()


@pytest.fixture
def page(browser, site) -> Any:
    tab = Page(browser, site.url)
    try:
        yield tab
    finally:
        tab.close()


def test_root_leads_to_the_overview(site):
    response = httpx.get(site.url + "/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"] == "/ui"
    paths = httpx.get(site.url + "/openapi.json").json()["paths"]
    assert paths and not any(path == "/" or path.startswith("/ui") for path in paths)


def test_overview_lists_endpoints_strategies_and_open_alerts(page):
    page.open("/ui")
    loan = page.tab.locator("#endpoints tr[data-endpoint='loan']")
    assert loan.locator(".strategy").inner_text().startswith("canary")
    assert "step 1/3 at 30%" in loan.inner_text()
    assert "loan/2" in loan.inner_text() and "70%" in loan.inner_text()
    review = page.tab.locator("#endpoints tr[data-endpoint='loan-review']")
    assert "partial automation" in review.locator(".strategy").inner_text()
    alerts = page.tab.locator("#alerts").inner_text()
    assert "loan-watch" in alerts and "mean_confidence" in alerts and "critical" in alerts
    page.no_errors()


def test_endpoint_page_charts_hold_data(page):
    page.open("/ui/endpoints/loan")
    sizes = page.chart_sizes()
    for chart in ("latency", "throughput", "errors", "confidence", "outputs",
                  "outputs-by-version", "drift", "performance", "monitor-outputs",
                  "monitor-confidence"):
        assert sizes.get(chart, 0) > 0, (chart, sizes)
        assert page.points(chart) > 0, chart
    # drift per feature with its threshold, and realised next to estimated performance
    names = page.tab.evaluate("document.getElementById('drift').data.map(t => t.name)")
    assert {"age", "salary", "threshold", "age threshold"} <= set(names)
    performance = page.tab.evaluate(
        "document.getElementById('performance').data.map(t => t.name)")
    assert "accuracy (realised)" in performance and "accuracy (estimated)" in performance
    assert page.tab.locator("#strategy").inner_text() == "canary"
    summary = page.tab.locator("#series-summary").inner_text()
    assert "loan/1 · primary" in summary
    assert "No monitor yet" not in page.tab.inner_text("#monitoring")
    assert page.tab.locator("#timeline li").count() == 2
    page.no_errors()


def test_an_endpoint_without_monitor_says_so(page):
    page.open("/ui/endpoints/loan-review")
    assert page.tab.locator("#no-monitor").is_visible()
    assert page.chart_sizes()["latency"] > 0
    page.no_errors()


def test_review_queue_resolves_through_the_page(page, site):
    page.open("/ui/endpoints/loan-review")
    rows = page.tab.locator("#review-queue tbody tr")
    assert rows.count() > 0
    first = rows.first
    item = first.get_attribute("data-review")
    sign_in(page.tab, site.token("rita", "labeler"))
    first = page.tab.locator("#review-queue tbody tr").first
    assert first.get_attribute("data-review") == item
    first.locator("input[name=label]").fill("1")
    first.locator("button").click()
    page.tab.wait_for_selector(f"tr[data-review='{item}'][data-resolved='true']")
    with site.client() as client:
        done = client.get("/reviews", params={"endpoint": "loan-review",
                                              "status": "resolved"}).json()
    assert [(str(r["id"]), r["resolver"], r["label"]) for r in done] == [(item, "rita", 1)]
    page.no_errors()


def test_runs_and_run_page(page, site):
    page.open("/ui/runs")
    assert page.tab.locator(f"#runs a[href='/ui/runs/{site.run_id}']").count() == 1
    page.no_errors()
    page.open(f"/ui/runs/{site.run_id}")
    text = page.tab.inner_text("main")
    assert "loans-train" in text and "notes.txt" in text and "logreg" in text
    # the hostile tag is shown as text, never run or parsed as markup
    assert "<b>not bold</b><script>window.pwned=1</script>" in text
    assert page.tab.evaluate("window.pwned") is None
    assert page.tab.locator("main b").count() == 0
    sizes = page.chart_sizes()
    assert sizes and all(n > 0 for n in sizes.values()), sizes
    assert page.tab.locator("a[href='/ui/models/loan/3']").count() == 1
    page.no_errors()


def test_models_and_version_pages(page, site):
    page.open("/ui/models")
    assert page.tab.locator("a[href='/ui/models/loan/3']").count() == 1
    assert "blessed" in page.tab.inner_text("section[data-model='loan']")
    page.no_errors()
    page.open("/ui/models/loan/3")
    text = page.tab.inner_text("main")
    assert "holdout" in text and "ui-gate: blessed" in text and "accuracy" in text
    assert page.tab.locator("#run-link").get_attribute("href") == f"/ui/runs/{site.run_id}"
    assert page.tab.locator("#signature tr").count() == len(FEATURES) + 1
    page.no_errors()
    page.open("/ui/models/loan/2")
    assert "loan" in page.tab.inner_text("#serving") and "canary" in page.tab.inner_text(
        "#serving")
    page.no_errors()


def test_reports_are_listed_and_served_safely(page, site):
    page.open("/ui/reports")
    link = page.tab.locator("#reports a")
    assert link.inner_text() == "loan-drift.html"
    page.no_errors()
    page.open("/ui/reports/loan-drift.html")
    page.no_errors()
    for name in ("..%2Fprodml.db", "%2E%2E%2Fprodml.db", "prodml.db", ".%2E", "x.html"):
        response = httpx.get(f"{site.url}/ui/reports/{name}")
        assert response.status_code == 404, name
        assert b"SQLite" not in response.content
    assert httpx.get(site.url + "/ui/static/..%2F..%2Fstore%2Ftables.py").status_code == 404


def test_unknown_things_are_404_pages(page, site):
    for path in ("/ui/endpoints/nope", "/ui/runs/ffffffff", "/ui/models/loan/99",
                 "/ui/models/nope/1"):
        response = page.tab.goto(site.url + path)
        assert response.status == 404, path
        assert "not found" in page.tab.inner_text("main")


def test_rollback_through_the_page(page, site):
    with site.client() as client:
        before = client.get("/endpoints/loan").json()
    assert before["spec"]["kind"] == "canary"
    page.tab.on("dialog", lambda dialog: dialog.accept())
    page.open("/ui/endpoints/loan")
    # not signed in, or signed in as a viewer: the button is off and the page says why
    assert page.tab.locator("#rollback").is_disabled()
    assert "deployer" in page.tab.inner_text("#rollback-needs")
    sign_in(page.tab, site.token("vic", "viewer"))
    assert page.tab.locator("#rollback").is_disabled()
    with site.client() as client:
        assert client.get("/endpoints/loan").json()["revision"] == before["revision"]
    # a deployer rolls back; the endpoint goes back to loan/1 and the page reloads
    page.tab.click("#sign-out")
    page.tab.locator("#sign-in").wait_for(state="attached")
    token = site.token("ui-tester", "deployer")
    sign_in(page.tab, token)
    assert page.tab.locator("meta[name=prodml-csrf]").count() == 1
    assert token not in page.tab.content()
    assert token not in page.tab.evaluate("() => document.cookie")  # HttpOnly
    page.tab.fill("#rollback-reason", "canary looked worse")
    with page.tab.expect_navigation():
        page.tab.click("#rollback")
    page.tab.wait_for_load_state("networkidle")
    assert token not in page.tab.url
    with site.client() as client:
        after = client.get("/endpoints/loan").json()
        last = client.get("/endpoints/loan/history").json()[0]
    assert after["spec"] == {"kind": "direct", "model": "loan/1"}
    assert (last["action"], last["actor"], last["reason"]) == (
        "rollback", "ui-tester", "canary looked worse")
    first = page.tab.locator("#timeline li").first
    assert "rollback" in first.inner_text() and "ui-tester" in first.inner_text()
    assert page.tab.locator("#strategy").inner_text() == "direct"
    page.no_errors()


def test_prodml_ui_serves_the_dashboard(tmp_path):
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "PRODML_HOME": str(tmp_path)}
    env.pop("PRODML_DATABASE_URL", None)
    env.pop("PRODML_ARTIFACTS", None)
    process = subprocess.Popen([sys.executable, "-m", "prodml", "ui", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/ui", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "prodml ui did not start in 60 s"
                time.sleep(0.2)
        assert response.status_code == 200 and "No endpoints yet" in response.text
    finally:
        stop_server(process)
    assert f"dashboard at http://127.0.0.1:{port}/ui" in process.stdout.read().decode()


# -- speed ------------------------------------------------------------------------------------
ROWS = 1_000_000


def _bulk_log(store: Any, endpoint: str, rows: int, now: int) -> None:
    """``rows`` predictions over the last 23 h, straight into the table (driver executemany
    in one transaction): a canary at 20%, 1% errors, two classes."""
    rng = np.random.default_rng(0)
    times = np.sort(now - rng.integers(1, 23 * 3_600_000, rows))
    canary = rng.random(rows) < 0.2
    status = np.where(rng.random(rows) < 0.01, "error", "ok")
    latency = rng.lognormal(2, 0.5, rows)
    confidence = rng.uniform(0.5, 1.0, rows)
    answer = np.where(rng.random(rows) < 0.4, "1", "0")
    ids = [f"{t:012x}{i:020x}" for i, t in enumerate(times.tolist())]
    columns = zip(ids, times.tolist(), [endpoint] * rows, ["loan"] * rows,
                  np.where(canary, 2, 1).tolist(), np.where(canary, "canary", "primary").tolist(),
                  [2] * rows, answer.tolist(), confidence.tolist(), latency.tolist(),
                  status.tolist())
    with store.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO predictions (id, time, endpoint, model_name, model_version, route, "
            "revision, prediction, confidence, latency_ms, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(columns))


@pytest.mark.slow
def test_endpoint_page_over_a_million_predictions(tmp_path):
    import pandas as pd
    from fastapi.testclient import TestClient
    from sklearn.dummy import DummyClassifier

    from prodml.serving import endpoints as eps
    from prodml.serving.app import create_app
    from prodml.store import now_ms, open_store
    from prodml.tracking import registry
    from prodml.ui import queries

    store = open_store(f"sqlite:///{tmp_path / 'prodml.db'}", str(tmp_path / "artifacts"))
    X = pd.DataFrame({"x": [0.0, 1.0]})
    for _ in range(2):
        registry.register("loan", DummyClassifier().fit(X, [0, 1]), input_example=X,
                          store=store)
    eps.deploy("big", "loan/1", store=store)
    eps.deploy("big", "loan/2", strategy="canary", steps=[20, 100], store=store)
    now = now_ms()
    _bulk_log(store, "big", ROWS, now)

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        window = queries.choose_window(store, "big", "24h")
        traffic = queries.traffic(store, "big", window)
        timings.append(time.perf_counter() - started)
    assert traffic.total == ROWS
    assert not traffic.exact and traffic.sampled <= 1.2 * queries.SAMPLE_ROWS
    shares = {row["key"]: row["rows"] / ROWS for row in traffic.summary}
    assert shares["loan/2 · canary"] == pytest.approx(0.2, abs=0.02)
    errors = {row["key"]: row["error_rate"] for row in traffic.summary}
    assert errors["loan/1 · primary"] == pytest.approx(0.01, abs=0.005)
    print(f"\nendpoint page queries over {ROWS:,} predictions: "
          + ", ".join(f"{t:.3f} s" for t in timings))
    assert min(timings) < 2.0, timings

    from prodml.serving.gate import AccessPolicy

    # TestClient sends Host: testserver, which a real server would refuse
    with TestClient(create_app(store, access=AccessPolicy(frozenset({"testserver"})))) \
            as client:
        client.get("/ui/endpoints/big")  # templates and first imports
        started = time.perf_counter()
        response = client.get("/ui/endpoints/big")
        page_s = time.perf_counter() - started
        overview = time.perf_counter()
        assert client.get("/ui").status_code == 200
        overview_s = time.perf_counter() - overview
    assert response.status_code == 200 and "1,000,000 predictions" in response.text
    print(f"whole endpoint page: {page_s:.3f} s; overview: {overview_s:.3f} s")
    assert page_s < 4.0 and overview_s < 2.0
