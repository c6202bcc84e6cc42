"""The drive-by attack, in a real browser: a page on another local server, open in the same
Chromium that is signed in to the dashboard, tries to take the server over.

The attacker's page (served by a second HTTP server on 127.0.0.1, another port: the same
*site* as the dashboard, so Chromium does send the SameSite=Strict session cookie) fires
the requests issue 14 found working: a deploy whose fallback is ``subprocess:run``, a pause,
wrong labels, and a classic auto-submitting form. Every one reaches the server (the refusal
counter grows) and is refused there; nothing changes in the store. Then DNS rebinding: a name
that resolves to 127.0.0.1 (Chromium's host resolver rules) gets no page and no answer.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from prodml.serving import endpoints as eps
from prodml.store import tables as t
from tests.serving.conftest import (FEATURES, build_store, free_port, start_server,
                                    stop_server)
from tests.ui.conftest import CHROMIUM, need_chromium, sign_in

EVIL = """<!DOCTYPE html><html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="classic" method="post" enctype="text/plain" target="sink"
      action="TARGET/endpoints/loan/pause"><input name='{"reason":"' value='x"}'></form>
<script>
(async function () {
  var target = 'TARGET';
  function send(path, body, type) {
    var headers = type ? {'Content-Type': type} : {};
    return fetch(target + path, {method: 'POST', mode: 'no-cors', credentials: 'include',
                                 headers: headers, body: body}).catch(function () {});
  }
  var deploy = JSON.stringify({model: 'loan/2', fallback: 'subprocess:run', reason: 'pwned'});
  await send('/endpoints/loan/deploy', deploy, 'text/plain');
  await send('/endpoints/loan/deploy', new Blob([deploy]), null);  // no Content-Type at all
  await send('/endpoints/loan/pause', '{}', 'text/plain');
  await send('/feedback', JSON.stringify({prediction_id: 'PID', label: 0}), 'text/plain');
  await send('/endpoints/loan/predict', JSON.stringify({record: {salary: 1}}), 'text/plain');
  document.getElementById('classic').submit();
  setTimeout(function () { document.body.setAttribute('data-done', 'yes'); }, 500);
})();
</script></body></html>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Any:
    need_chromium()
    home = tmp_path_factory.mktemp("drive-by")
    store, data = build_store(home)
    eps.deploy("loan", "loan/1", store=store, reason="first release")
    port = free_port()
    process, _ = start_server(home, port)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=30) as client:
        pid = client.post("/endpoints/loan/predict",
                          json=data[FEATURES].iloc[0].to_dict()).json()["prediction_id"]
    evil_dir = tmp_path_factory.mktemp("evil")
    (evil_dir / "evil.html").write_text(EVIL.replace("TARGET", url).replace("PID", pid))
    evil_port = free_port()
    handler = functools.partial(_Quiet, directory=str(evil_dir))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", evil_port), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        yield {"url": url, "port": port, "store": store, "home": home, "pid": pid,
               "evil": f"http://127.0.0.1:{evil_port}/evil.html"}
    finally:
        evil.shutdown()
        stop_server(process)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser(site: Any) -> Any:
    """Chromium that resolves ``rebound.test`` to 127.0.0.1, as a rebinding attacker's DNS
    would."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--host-resolver-rules=MAP rebound.test 127.0.0.1"])
        try:
            yield chromium
        finally:
            chromium.close()


def _refused(url: str, status: int) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(
        rf'prodml_http_errors_total\{{[^}}]*code="{status}"[^}}]*\}} ([0-9.e+]+)', text))


def test_a_page_in_the_signed_in_browser_cannot_take_the_server_over(browser, site):
    from prodml.access import create_token

    before = eps.get_endpoint("loan", store=site["store"])
    refused_before = _refused(site["url"], 403)
    context = browser.new_context()
    try:
        dashboard = context.new_page()
        dashboard.goto(site["url"] + "/ui/endpoints/loan")
        admin = create_token("dev", "admin", created_by="tests", store=site["store"]).token
        sign_in(dashboard, admin)  # the developer is signed in, the cookie is there
        assert any(c["name"] == "prodml_session" for c in context.cookies())
        attacker = context.new_page()
        attacker.goto(site["evil"])
        attacker.locator("body[data-done='yes']").wait_for(state="attached", timeout=15_000)
    finally:
        context.close()
    after = eps.get_endpoint("loan", store=site["store"])
    assert (after.revision, after.paused, after.fallback) == (before.revision, False, None)
    with site["store"].read() as conn:
        labels = conn.execute(select(func.count()).select_from(t.feedback).where(
            t.feedback.c.prediction_id == site["pid"])).scalar_one()
    assert labels == 0
    # the requests did arrive, and the server refused them: 2 deploys, pause, feedback,
    # predict and the form (the browser sent every one; the gate said no to each)
    assert _refused(site["url"], 403) - refused_before >= 6


def test_a_rebound_name_gets_nothing(browser, site):
    page = browser.new_page()
    try:
        for path in ("/endpoints", "/ui", "/ui/endpoints/loan"):
            response = page.goto(f"http://rebound.test:{site['port']}{path}")
            assert response is not None and response.status == 400, path
            assert "loan/1" not in page.content()
        ok = page.goto(f"http://localhost:{site['port']}/endpoints")
        assert ok is not None and ok.status == 200 and "loan/1" in page.content()
    finally:
        page.close()
