"""``/docs`` in a real browser with no way out: Swagger UI comes from this server, lists every
operation of ``/openapi.json``, and "Try it out" reaches the server, with no console error.

Chromium loads the page from a real ``prodml serve``; every request to another host is aborted
(and recorded: there must be none). Issue 14, finding 11: the page was blank offline.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from prodml.serving import endpoints as eps
from tests.serving.conftest import build_store, free_port, start_server, stop_server


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Any:
    home = tmp_path_factory.mktemp("api-docs")
    store, _ = build_store(home)
    eps.deploy("loan", "loan/1", store=store, reason="first release")
    port = free_port()
    process, _ = start_server(home, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


def test_docs_page_names_only_this_server(site):
    page = httpx.get(f"{site}/docs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text and "<script>" not in page.text  # no CDN, no inline script
    for name, kind in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css"),
                       ("start.js", "text/javascript")):
        asset = httpx.get(f"{site}/docs/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    assert httpx.get(f"{site}/docs/static/redoc.standalone.js").status_code == 404
    assert httpx.get(f"{site}/redoc").status_code == 404


def test_docs_work_offline_in_chromium(site, browser):
    operations = sum(len(ops) for ops in httpx.get(f"{site}/openapi.json").json()["paths"]
                     .values())
    context = browser.new_context()
    tab = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))

    def local_only(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    tab.route("**/*", local_only)
    try:
        tab.goto(f"{site}/docs")
        tab.locator(".opblock").first.wait_for(timeout=30_000)
        assert tab.locator(".opblock").count() == operations
        assert tab.locator(".opblock-tag").count() >= 5  # predict, deployments, admin, OIP...
        # "Try it out" calls the server from the page (the policy lets it reach this origin)
        version = tab.locator(".opblock-get:has(.opblock-summary-path[data-path='/version'])")
        version.locator(".opblock-summary").click()
        version.locator("button.try-out__btn").click()
        version.locator("button.execute").click()
        status = version.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for(timeout=30_000)
        assert status.inner_text().strip() == "200"
        tab.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert not outside, outside
    assert not errors, errors
