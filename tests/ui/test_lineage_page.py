"""The lineage graph on the model and run pages, in Debian's Chromium (Playwright) against a
real ``prodml serve``: the graph is drawn, its nodes include the run and the exact dataset
version, the records table links to their pages, and no console error occurs.

The store is written through the public APIs: a run that logs its training file, a version
registered from it, labels on the file's rows, the version deployed and predictions logged.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from tests.serving.conftest import free_port, start_server, stop_server
from tests.ui.conftest import need_chromium


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Any:
    need_chromium()
    from sklearn.linear_model import LogisticRegression

    import prodml as pm
    from prodml.serving.prediction_log import PredictionLog, PredictionRecord, new_prediction_id
    from prodml.store import now_ms, open_store

    home = tmp_path_factory.mktemp("lineage-ui")
    store = open_store(f"sqlite:///{home / 'prodml.db'}", str(home / "artifacts"))
    data = pd.DataFrame({"x": [float(i) for i in range(40)], "y": [i % 2 for i in range(40)]})
    path = home / "loans <v1>.csv"  # a name the page must show as text
    data.to_csv(path, index=False)
    with pm.start_run(experiment="lineage-ui", store=store) as run:
        dataset = run.log_dataset(path, context="train")
    pm.models.register("loan", LogisticRegression().fit(data[["x"]], data["y"]), run=run.id,
                       input_example=data[["x"]], store=store)
    pm.labels.import_annotations({"item": list(range(40)), "labeler": ["ann"] * 40,
                                  "label": data["y"].tolist()}, dataset=path, store=store)
    pm.endpoints.deploy("loan", "loan/1", reason="first", store=store)
    log = PredictionLog(store)
    log.write_sync([PredictionRecord(new_prediction_id(), now_ms(), "loan", "loan", 1,
                                     "primary", 1, None, {"x": 1.0}, 1, None, 0.8, 1.0, "ok")
                    for _ in range(7)])
    log.close()
    port = free_port()
    process, _ = start_server(home, port)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "run": run.id, "digest": dataset.digest}
    finally:
        stop_server(process)




def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    response = tab.goto(url)
    assert response is not None and response.status == 200, url
    tab.wait_for_function("document.body.dataset.charts === 'drawn'", timeout=15_000)
    return tab, errors


def _graph_keys(tab: Any) -> set[str]:
    """The node keys the drawn lineage figure holds (Plotly keeps traces on the element)."""
    return set(tab.evaluate("""() => document.getElementById('lineage').data
        .flatMap(trace => trace.customdata || [])"""))


def test_model_page_draws_the_lineage_graph_with_its_run_and_dataset(browser, site):
    tab, errors = _open(browser, f"{site['url']}/ui/models/loan/1")
    try:
        keys = _graph_keys(tab)
        assert {"model_version:loan/1", f"run:{site['run']}", f"dataset:{site['digest']}",
                "labeler:ann", "endpoint:loan", "predictions:loan/1@loan"} <= keys
        assert tab.locator("#lineage .scatterlayer .point").count() >= len(keys)
        rows = tab.locator("#lineage-records")
        assert rows.locator(f"a[href='/ui/runs/{site['run']}#lineage-section']").count() == 1
        text = tab.inner_text("#lineage-section")
        assert "7 predictions" in tab.locator("#lineage-records").inner_text() or \
            "7 predictions" in text
        assert "loans <v1>" in tab.locator("#lineage-records").text_content()
        assert errors == []
    finally:
        tab.close()


def test_run_page_draws_the_same_lineage_from_the_run(browser, site):
    tab, errors = _open(browser, f"{site['url']}/ui/runs/{site['run']}")
    try:
        keys = _graph_keys(tab)
        assert {f"run:{site['run']}", f"dataset:{site['digest']}", "model_version:loan/1",
                "endpoint:loan"} <= keys
        assert tab.locator("#lineage-records a[href='/ui/models/loan/1#lineage-section']").count() == 1
        assert errors == []
    finally:
        tab.close()
