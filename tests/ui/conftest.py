"""What every browser test needs: Debian's Chromium (or a clear skip/failure) and a browser.

``PRODML_REQUIRE_CHROMIUM=1`` (CI) turns a missing Chromium into a failure instead of a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("PRODML_CHROMIUM", "/usr/bin/chromium")


def need_chromium() -> None:
    """Skip without Chromium, unless ``PRODML_REQUIRE_CHROMIUM=1`` (CI): then fail."""
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("PRODML_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"Chromium is required (PRODML_REQUIRE_CHROMIUM=1) but {CHROMIUM} is "
                        "missing: apt-get install chromium", pytrace=False)
        pytest.skip(f"no Chromium at {CHROMIUM} (set PRODML_REQUIRE_CHROMIUM=1 to fail "
                    "instead)")


def sign_in(tab: Any, token: str) -> None:
    """Sign the tab in with ``token`` through the page's own box (the page reloads)."""
    tab.fill("#sign-in-token", token)
    with tab.expect_navigation():
        tab.click("#sign-in button[type=submit]")
    tab.wait_for_load_state("networkidle")
    tab.locator("#identity").wait_for(state="attached")


def sign_out(tab: Any) -> None:
    with tab.expect_navigation():
        tab.click("#sign-out")
    tab.wait_for_load_state("networkidle")
    tab.locator("#sign-in").wait_for(state="attached")


@pytest.fixture(scope="module")
def browser(site: Any) -> Iterator[Any]:
    """Headless Chromium for one test module (after its ``site`` is up)."""
    from playwright.sync_api import sync_playwright

    need_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
