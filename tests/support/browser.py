"""Debian's Chromium, driven by Playwright, for the tests of pages (the docs page, the dashboard).

Without Chromium a browser test skips, unless `TIMO_REQUIRE_BROWSER` is set (CI), when it fails:
there the browser must have been installed (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = os.environ.get("TIMO_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium for the block, or the test skipped (failed under CI) without one."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("TIMO_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}, and TIMO_REQUIRE_BROWSER is set")
        pytest.skip("no Chromium here (install Debian's chromium, or set TIMO_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
