"""Pipeline runs on the dashboard, in Debian's Chromium (Playwright) against a real
``prodml serve`` with an admin token: the runs list and a run's page show the steps and their
statuses; Approve on a waiting step (token typed in the page) records the decision and the
server resumes the run in the background until it succeeds and registers a model version,
which then links back to its pipeline run. The queries behind the pages run on SQLite and
PostgreSQL (the ``store`` fixture).

The pipeline is a real file (so the server loads it again to resume); the alert that
starts a run is recorded through the monitoring store's own writer.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.conftest import free_port, start_server, stop_server
from tests.ui.conftest import need_chromium, sign_in, sign_out

TOKEN = "pipeline-ui-token"
FLOW = textwrap.dedent('''
    import prodml as pm
    from sklearn.linear_model import LogisticRegression

    @pm.step
    def load(n: int) -> dict:
        print("loading", n, "rows")
        return {"x": [[float(i)] for i in range(n)], "y": [i % 2 for i in range(n)]}

    @pm.step
    def fit(data: dict) -> LogisticRegression:
        return LogisticRegression().fit(data["x"], data["y"])

    @pm.step(approval=True)
    def release(model: LogisticRegression) -> LogisticRegression:
        return model

    @pm.pipeline
    def gated(n: int = 20, model_name: str = "pipe-loan"):
        return pm.steps.register(release(fit(load(n))), model_name)

    @pm.step
    def fails(data: dict) -> int:
        raise ValueError(f"refused {len(data['y'])} rows on purpose")

    @pm.pipeline
    def broken(n: int = 3, alert_id: int = 0):
        return fails(load(n))
''')




def _flow(folder: Path) -> Any:
    from prodml.pipelines import load_pipeline

    path = folder / "gated_flow.py"
    path.write_text(FLOW)
    return load_pipeline(f"{path}:gated"), load_pipeline(f"{path}:broken")


def _fire_alert(store: Any, endpoint: str = "loan") -> Any:
    """A firing alert written by the monitoring store's own writer."""
    from prodml.monitoring.alerts import AlertRule, AlertState
    from prodml.monitoring.store import get_alert, store_alert_event
    from prodml.monitoring.thresholds import StaticThreshold
    from prodml.store import now_ms

    state = AlertState(AlertRule("drifted[x]", StaticThreshold(upper=0.5), severity="critical"))
    event = state.update(0.9, at=1)
    assert event is not None and event.status == "firing"
    now = now_ms()
    with store.write() as conn:
        alert_id = store_alert_event(conn, event, monitor="watch", endpoint=endpoint,
                                     key=event.rule, window={"start": now - 60_000, "end": now},
                                     first_window={}, finding=None, pending=[], now=now)
    return get_alert(alert_id, store=store)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Any:
    need_chromium()
    from prodml.pipelines.triggers import PipelineRunFailedError, start_from_alert
    from prodml.store import open_store

    home = tmp_path_factory.mktemp("pipeline-ui")
    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    gated, broken = _flow(home)
    waiting = gated.run(params={"n": 30}, store=store)
    assert waiting.status == "waiting" and waiting.waiting_for == ["release"]
    alert = _fire_alert(store)
    with pytest.raises(PipelineRunFailedError):
        start_from_alert(broken, alert, store=store)
    port = free_port()
    process, _ = start_server(home, port, env_extra={"PRODML_ADMIN_TOKEN": TOKEN})
    try:
        yield {"url": f"http://127.0.0.1:{port}", "store": store, "run": waiting.id,
               "alert": alert.id}
    finally:
        stop_server(process)




def _open(browser: Any, url: str, status: int = 200) -> tuple[Any, list[str]]:
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    response = tab.goto(url)
    assert response is not None and response.status == status, url
    return tab, errors


def _token(site: Any, name: str, role: str) -> str:
    from prodml.access import create_token

    return create_token(name, role, created_by="tests", store=site["store"]).token


def test_runs_list_shows_statuses_counts_the_alert_and_filters(browser, site):
    tab, errors = _open(browser, f"{site['url']}/ui/pipelines")
    try:
        assert tab.locator("header nav a[href='/ui/pipelines']").count() == 1
        rows = tab.locator("#pipeline-runs tbody tr")
        assert rows.count() == 2
        waiting = tab.locator(f"tr[data-run='{site['run']}']")
        assert "gated" in waiting.inner_text()
        assert waiting.locator(".badge.status-waiting").count() == 1
        cells = waiting.locator("td").all_inner_texts()
        assert cells[6] == "2 / 3" and cells[9] == "1"  # load and fit done, release waits
        failed = rows.filter(has_text="broken")
        assert failed.locator(".badge.status-failed").count() == 1
        link = failed.locator("a.alert-link")
        assert link.inner_text() == f"alert:{site['alert']}"
        assert link.get_attribute("href") == f"/ui/endpoints/loan#alert-{site['alert']}"
        tab.select_option("select[name=status]", "waiting")
        tab.click("form.search button")
        tab.wait_for_url("**status=waiting**")
        assert tab.locator("#pipeline-runs tbody tr").count() == 1
        tab.select_option("select[name=pipeline]", "broken")
        tab.click("form.search button")
        tab.wait_for_url("**pipeline=broken**")
        assert tab.locator("#pipeline-runs").count() == 0  # broken + waiting: none
        assert "No pipeline runs match" in tab.inner_text("main")
        assert errors == []
    finally:
        tab.close()


def test_failed_run_page_shows_the_error_logs_and_the_alert(browser, site):
    from prodml.pipelines import runs

    [failed] = runs(pipeline="broken", store=site["store"])
    tab, errors = _open(browser, f"{site['url']}/ui/pipelines/{failed.id[:8]}")
    try:
        assert tab.locator("[data-step='fails'] .badge.status-failed").count() == 1
        assert "refused 3 rows on purpose" in tab.inner_text("#executions")
        logs = tab.locator("#executions details").first
        assert not logs.locator("pre").is_visible()  # logs collapsed
        logs.locator("summary").click()
        assert "loading 3 rows" in logs.locator("pre").inner_text()
        trigger = tab.locator("#triggered-by a")
        assert trigger.get_attribute("href") == f"/ui/endpoints/loan#alert-{site['alert']}"
        assert "drifted[x]" in tab.inner_text("#triggered-by")
        assert tab.locator("button.pipeline-action").count() == 0
        assert errors == []
    finally:
        tab.close()


def test_approve_in_the_page_resumes_the_run_to_success(browser, site):
    from playwright.sync_api import expect

    from prodml.pipelines import get_run

    url = f"{site['url']}/ui/pipelines/{site['run']}"
    tab, errors = _open(browser, url)
    try:
        tab.locator("body[data-charts='drawn']").wait_for(state="attached", timeout=15_000)
        statuses = {row.get_attribute("data-step"): row.get_attribute("data-status")
                    for row in tab.locator("#executions tr[data-step]").all()}
        assert statuses == {"load": "succeeded", "fit": "succeeded", "release": "waiting"}
        assert "loading 30 rows" in tab.locator("[data-step='load'] + tr").text_content()
        assert tab.locator("#lineage").count() == 1  # the run's lineage graph
        # a viewer's approval is refused by the API and the page says so
        assert "deployer" in tab.inner_text("#approval-needs")
        sign_in(tab, _token(site, "vera", "viewer"))
        tab.click("button[data-action='approve'][data-step='release']")
        expect(tab.locator("#approval-message.error")).to_contain_text("may not do this")
        assert get_run(site["run"], store=site["store"]).status == "waiting"
        sign_out(tab)
        sign_in(tab, _token(site, "ann", "deployer"))
        tab.fill("#approval-reason", "looks good")
        tab.click("button[data-action='approve'][data-step='release']")
        # (the page's CSP forbids eval: wait on elements, not on script expressions)
        tab.locator(f"body[data-resumed='{site['run']}']").wait_for(state="attached")
        deadline = time.monotonic() + 20
        run = get_run(site["run"], store=site["store"])
        while run.status in ("waiting", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            run = get_run(site["run"], store=site["store"])
        assert run.status == "succeeded", run.error
        release = run.step("release")
        assert release.approval["decision"] == "approved"
        assert release.approval["by"] == "ann" and release.approval["reason"] == "looks good"
        assert run.step("register").status == "succeeded"
        tab.wait_for_load_state()
        tab.goto(url)
        assert tab.locator("#run-status .badge.status-succeeded").count() == 1
        assert "approved by ann: looks good" in tab.inner_text("[data-step='release']")
        assert tab.locator("button.pipeline-action").count() == 0
        assert tab.locator("[data-step='register'] a[href='/ui/models/pipe-loan/1']").count() == 1
        # the browser logs the refused request (403) and nothing else
        assert [e for e in errors if "403" not in e] == [] and len(errors) == 1
    finally:
        tab.close()
    # the version the pipeline registered links back to its run
    tab, errors = _open(browser, f"{site['url']}/ui/models/pipe-loan/1")
    try:
        link = tab.locator("#pipeline-runs a.pipeline-link")
        assert link.get_attribute("href") == f"/ui/pipelines/{site['run']}"
        assert "register" in tab.inner_text("#pipeline-runs")
        assert errors == []
    finally:
        tab.close()


def test_bad_run_ids_give_the_error_page_and_the_api_refuses(browser, site):
    for ref in ("nope", "0123456789abcdef0123456789abcdef"):
        tab, _ = _open(browser, f"{site['url']}/ui/pipelines/{ref}", status=404)
        try:
            assert tab.locator(".notice.bad").count() == 1
            assert ref in tab.inner_text(".notice.bad")
        finally:
            tab.close()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=site["url"], timeout=10) as client:
        refused = client.post(f"/admin/pipelines/{site['run']}/steps/load/approve",
                              headers=auth)
        assert refused.status_code == 400 and refused.json()["field"] in ("step", "run_id")
        assert client.post("/admin/pipelines/abcd1234/resume", headers=auth).status_code == 404
        assert client.post(f"/admin/pipelines/{site['run']}/resume").status_code == 401


def test_reject_through_the_api_fails_the_run_when_it_resumes(site, tmp_path):
    from prodml.pipelines import get_run

    gated, _ = _flow(tmp_path)
    run = gated.run(params={"n": 8, "model_name": "never"}, store=site["store"])
    auth = {"Authorization": f"Bearer {_token(site, 'bob', 'deployer')}"}
    with httpx.Client(base_url=site["url"], timeout=10) as client:
        answer = client.post(f"/admin/pipelines/{run.id[:8]}/steps/release/reject",
                             headers=auth, json={"reason": "not today"})
        assert answer.status_code == 200 and answer.json()["undecided"] == []
        assert client.post(f"/admin/pipelines/{run.id}/resume",
                           headers=auth).status_code == 202
    deadline = time.monotonic() + 20
    while get_run(run.id, store=site["store"]).status in ("waiting", "running") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    done = get_run(run.id, store=site["store"])
    assert done.status == "failed" and done.step("release").status == "failed"
    assert done.step("release").approval == {**done.step("release").approval,
                                             "decision": "rejected", "by": "bob",
                                             "reason": "not today"}
    assert all(e.step != "register" or e.status == "skipped" for e in done.executions)


FLAKY = textwrap.dedent('''
    import os
    import prodml as pm

    @pm.step(approval=True)
    def ship(n: int) -> int:
        return n

    @pm.pipeline
    def flaky(n: int = 1):
        if os.path.exists(os.path.join(os.path.dirname(__file__), "BREAK")):
            raise RuntimeError("the pipeline file changed under the run")
        return ship(n)
''')


def test_a_resume_that_fails_in_the_background_says_why_on_the_run(site, tmp_path):
    from prodml.pipelines import get_run, load_pipeline

    path = tmp_path / "flaky_flow.py"
    path.write_text(FLAKY)
    run = load_pipeline(f"{path}:flaky").run(store=site["store"])
    assert run.status == "waiting"
    auth = {"Authorization": f"Bearer {_token(site, 'ana', 'deployer')}"}
    with httpx.Client(base_url=site["url"], timeout=10) as client:
        assert client.post(f"/admin/pipelines/{run.id}/steps/ship/approve",
                           headers=auth).status_code == 200
        (tmp_path / "BREAK").write_text("")  # tracing it again now fails, after the checks
        assert client.post(f"/admin/pipelines/{run.id}/resume",
                           headers=auth).status_code == 202
        deadline = time.monotonic() + 20
        while not get_run(run.id, store=site["store"]).error and time.monotonic() < deadline:
            time.sleep(0.1)
        noted = get_run(run.id, store=site["store"])
        assert noted.status == "waiting"  # nothing ran; it can be resumed once mended
        assert noted.error.startswith("resume failed: ")
        assert "the pipeline file changed under the run" in noted.error
        page = client.get(f"/ui/pipelines/{run.id}")
        assert page.status_code == 200 and "resume failed: " in page.text

        (tmp_path / "BREAK").unlink()  # mended: the next resume runs and clears the note
        assert client.post(f"/admin/pipelines/{run.id}/resume",
                           headers=auth).status_code == 202
        deadline = time.monotonic() + 20
        while get_run(run.id, store=site["store"]).status != "succeeded" \
                and time.monotonic() < deadline:
            time.sleep(0.1)
    done = get_run(run.id, store=site["store"])
    assert done.status == "succeeded" and done.error is None and done.output("ship") == 1


def test_pipeline_queries_count_steps_and_link_records(store, tmp_path):
    """The pages' queries on SQLite and PostgreSQL: counts per status in one grouped query,
    the run an alert started, the run that registered a version."""
    from prodml.pipelines.triggers import PipelineRunFailedError, start_from_alert
    from prodml.ui import pipeline_queries as q

    gated, broken = _flow(tmp_path)
    waiting = gated.run(params={"n": 12, "model_name": "q-loan"}, store=store)
    alert = _fire_alert(store)
    with pytest.raises(PipelineRunFailedError):
        start_from_alert(broken, alert, store=store)
    rows = q.pipeline_runs(store)
    assert [r["name"] for r in rows] == ["broken", "gated"]  # newest first
    assert rows[1]["steps"] == {"succeeded": 2, "waiting": 1}
    assert rows[0]["steps"]["failed"] == 1 and rows[0]["triggered_by"] == f"alert:{alert.id}"
    assert [r["id"] for r in q.pipeline_runs(store, status="waiting")] == [waiting.id]
    assert q.pipeline_runs(store, pipeline="gated", status="failed") == []
    assert q.pipeline_names(store) == ["broken", "gated"]
    assert [r["name"] for r in q.runs_for_alerts(store, [alert.id])[alert.id]] == ["broken"]
    assert q.alerts_by_id(store, {alert.id})[alert.id]["endpoint"] == "loan"
    assert q.runs_of_model_version(store, "q-loan/1") == []
    import prodml as pm

    pm.pipelines.approve(waiting.id, "release", by="test", store=store)
    assert pm.pipelines.resume(waiting.id, store=store).status == "succeeded"
    [made] = q.runs_of_model_version(store, "q-loan/1")
    assert made["id"] == waiting.id and made["step"] == "register"
