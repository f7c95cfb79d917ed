"""The dashboard in real Chromium: sign up, a key shown once, its calls charted, revocation, the
limits' two windows (with scripts off too), and every page at a phone's width.

Drives Debian's `chromium` through Playwright against the app under gunicorn (the Procfile's web
line) with a real Celery worker ingesting the calls, so what is checked is what a customer sees:
the pages, their CSP, `dashboard.js` and the vendored uPlot. Every page must keep to its own
origin (no request leaves it) and log no error, CSP violations included. Without Chromium these
tests skip, unless `TIMO_REQUIRE_BROWSER` is set (CI), when they fail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from tests.support.browser import chromium
from tests.support.dashboard import PASSWORD, new_email
from tests.support.web import procfile_web_process
from tests.support.worker import worker_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
        ViewportSize,
    )

KEY_NAME = "browser"
# The worker counts a call within seconds; this bounds the wait when something is wrong.
INGEST_SECONDS = 30
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PAGES = [
    "/dashboard",
    "/dashboard/usage",
    "/dashboard/keys",
    "/dashboard/alerts",
    "/dashboard/plans",
]


@dataclass
class Watch:
    """What a browser context did besides rendering: its requests and its complaints."""

    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        """Record every request, console error, `dashboard.js` warning and page error."""
        context.on("request", self._request)
        context.on("console", self._console)
        context.on("weberror", lambda error: self.errors.append(f"page error: {error.error}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        if message.type == "error":
            self.errors.append(f"console error at {where}: {message.text}")
        elif message.type == "warning" and message.text.startswith("dashboard:"):
            # dashboard.js warns (not errors) when an enhancement fails, e.g. a chart not drawn.
            self.warnings.append(message.text)

    def assert_clean(self) -> None:
        """No error, no failed enhancement, and not one request that left the origin."""
        assert not self.errors, "\n".join(self.errors)
        assert not self.warnings, "\n".join(self.warnings)
        assert self.requests, "no request recorded"
        elsewhere = [url for url in self.requests if not url.startswith(self.origin + "/")]
        assert not elsewhere, f"requests that left {self.origin}: {elsewhere}"


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    """The Procfile's web line (two gunicorn workers) on the test servers."""
    with procfile_web_process(settings) as base:
        yield base


@pytest.fixture
def browser(runtime: Runtime) -> Iterator[Browser]:
    """Headless Chromium (after `runtime` has emptied the database and Redis)."""
    with chromium() as launched:
        yield launched


def _sign_up(page: Page, server: str) -> str:
    """Create an account through the sign-up form; its email."""
    from playwright.sync_api import expect

    email = new_email()
    page.goto(f"{server}/signup")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Create account").click()
    # A new account has no key yet: signing up lands on the Settings page to make one.
    expect(page).to_have_url(f"{server}/dashboard/keys")
    expect(page.locator("nav.top .who")).to_have_text(email)
    return email


def _account_status(server: str, secret: str) -> int:
    return requests.get(
        f"{server}/api/v1/account", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    ).status_code


def _expect_chart_drawn(page: Page) -> None:
    from playwright.sync_api import expect

    figure = page.locator("figure.chart")
    expect(figure).to_have_count(1)
    expect(figure).to_have_class(re.compile(r"\bchart-drawn\b"))
    canvas = figure.locator(".chart-plot canvas")
    expect(canvas).to_have_count(1)
    expect(canvas).to_be_visible()
    width = canvas.evaluate("c => c.width")
    assert width > 0, "the chart's canvas has no width"


@pytest.mark.slow
def test_a_key_made_in_the_browser_is_shown_once_charted_and_revoked(
    browser: Browser, server: str, settings: Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    watch = Watch(server)
    # A viewer away from UTC: the reset time is shown in UTC and in the viewer's own zone.
    context = browser.new_context(viewport=DESKTOP, timezone_id="America/New_York")
    watch.attach(context)
    page = context.new_page()
    with worker_process(settings, tmp_path / "worker.log"):
        _sign_up(page, server)

        # A new key: the page it is shown on is the only place its secret ever appears.
        page.fill("#name", KEY_NAME)
        page.get_by_role("button", name="Generate new key").click()
        expect(page).to_have_url(f"{server}/dashboard/keys")
        shown = page.locator("code#new-key-secret")
        expect(shown).to_have_text(re.compile(r"^timo_live_[0-9A-Za-z]{38}$"))
        secret = shown.inner_text()
        # The copy button is hidden in the HTML (it needs JavaScript); dashboard.js shows it.
        expect(page.locator("button.copy[data-copy-target='new-key-secret']")).to_be_visible()
        expect(page.locator("#keys-table")).to_contain_text(KEY_NAME)

        page.reload()
        expect(page.locator("#keys-table")).to_contain_text(KEY_NAME)
        expect(page.locator("#new-key-secret")).to_have_count(0)
        assert secret not in page.content()

        assert _account_status(server, secret) == 200

        # The call reaches the usage page once the worker has counted it.
        deadline = time.monotonic() + INGEST_SECONDS
        while True:
            page.goto(f"{server}/dashboard/usage")
            if page.locator("#key-table", has_text=KEY_NAME).count():
                break
            assert time.monotonic() < deadline, (
                f"the call was not on /dashboard/usage within {INGEST_SECONDS} s; worker log:\n"
                + (tmp_path / "worker.log").read_text()[-4000:]
            )
            page.wait_for_timeout(250)
        total = page.locator("#total-calls").inner_text()
        assert int(total.replace(",", "")) >= 1, total
        expect(page.locator("#endpoint-table")).to_contain_text("/api/v1/account")
        _expect_chart_drawn(page)

        page.goto(f"{server}/dashboard")
        # The gauge counts at the gate, not after ingestion: the one call, on the free plan.
        expect(page.locator("#quota-text")).to_have_text(re.compile(r"^1 of 1,000 calls used"))
        resets = page.locator("p", has_text="Resets at")
        expect(resets).to_contain_text(re.compile(r"00:00 UTC"))
        expect(resets.locator(".local-time")).to_contain_text(
            re.compile(r"(19|20):00 in America/New_York")
        )
        # The burst window beside the month (the call above may be in a minute gone by now).
        expect(page.locator("#burst-limit")).to_have_text(
            "60 calls per minute, besides the month's quota."
        )
        expect(page.locator("#burst-gauge")).to_be_visible()
        expect(page.locator("#burst-text")).to_have_text(
            re.compile(r"^[01] of 60 calls used\s+in the current minute, (60|59) left\.$")
        )
        expect(page.locator("#burst-reset time")).to_have_text(re.compile(r"^\d\d:\d\d:00 UTC$"))
        _expect_chart_drawn(page)

    # Revocation goes through its confirmation page.
    page.goto(f"{server}/dashboard/keys")
    row = page.locator("#keys-table tr", has_text=KEY_NAME)
    row.locator("a.revoke-link").click()
    expect(page).to_have_url(re.compile(r"/dashboard/keys/[^/]+/revoke$"))
    expect(page.locator("h1")).to_contain_text(KEY_NAME)
    page.click("button#confirm-revoke")
    expect(page).to_have_url(f"{server}/dashboard/keys")
    expect(page.locator(".flash")).to_contain_text("is revoked")
    expect(row).to_contain_text("revoked")
    expect(row.locator("a.revoke-link")).to_have_count(0)
    # Another gunicorn worker may answer: each drops the key within a second (README).
    deadline = time.monotonic() + 5
    while (status := _account_status(server, secret)) != 401:
        assert time.monotonic() < deadline, f"the revoked key still gets {status}"
        time.sleep(0.1)

    context.close()
    watch.assert_clean()


def _expect_within_the_screen(page: Page, *selectors: str) -> None:
    """Each element visible and inside the viewport's width (nothing to scroll sideways to)."""
    from playwright.sync_api import expect

    viewport = page.viewport_size
    assert viewport is not None
    for selector in selectors:
        element = page.locator(selector)
        expect(element).to_be_visible()
        box = element.bounding_box()
        assert box is not None, selector
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 1, (selector, box)


@pytest.mark.slow
def test_pages_fit_a_phone_screen(browser: Browser, server: str) -> None:
    from playwright.sync_api import expect

    watch = Watch(server)
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    watch.attach(context)
    page = context.new_page()
    _sign_up(page, server)
    overflowing = []

    def measure(what: str) -> None:
        expect(page.locator("body")).to_be_visible()
        width = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        if width[0] > width[1] + 1:
            overflowing.append(f"{what}: scrollWidth {width[0]} > clientWidth {width[1]}")

    for path in PAGES:
        page.goto(f"{server}{path}")
        if path == "/dashboard":
            _expect_chart_drawn(page)
            _expect_within_the_screen(page, "#quota-gauge", "#burst-gauge", "#burst-reset")
        measure(path)
    # The Alerts page with a webhook endpoint (a long URL, its secret shown once), and the
    # endpoint's delivery log with a delivery in it.
    page.goto(f"{server}/dashboard/alerts")
    page.fill("#url", "http://127.0.0.1:9/" + "a-rather-long-path-segment/" * 8)
    page.check("input[name=events][value='key.created']")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("code#new-webhook-secret")).to_have_text(re.compile(r"^whsec_"))
    measure("/dashboard/alerts with an endpoint")
    page.locator("#webhooks-table a.log-link").first.click()
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("section.delivery")).to_have_count(1)
    measure("a delivery log")
    context.close()
    assert not overflowing, "pages wider than the phone:\n" + "\n".join(overflowing)
    watch.assert_clean()


@pytest.mark.slow
def test_both_windows_show_without_javascript_on_a_phone(browser: Browser, server: str) -> None:
    """The gauges are the server's: with scripts off, the overview still shows the month and the
    burst window, and fits the phone."""
    from playwright.sync_api import expect

    watch = Watch(server)
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, java_script_enabled=False
    )
    watch.attach(context)
    page = context.new_page()
    _sign_up(page, server)
    page.goto(f"{server}/dashboard")
    expect(page.locator("#quota-text")).to_have_text(re.compile(r"^0 of 1,000 calls used"))
    expect(page.locator("#burst-text")).to_have_text(
        "0 of 60 calls used in the current minute, 60 left."
    )
    _expect_within_the_screen(page, "#quota-gauge", "#burst-gauge", "#burst-reset")
    width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1] + 1, f"the overview is wider than the phone: {width}"
    page.goto(f"{server}/dashboard/plans")
    expect(page.locator("#plans-table")).to_contain_text("60 / minute")
    context.close()
    watch.assert_clean()
