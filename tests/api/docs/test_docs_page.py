"""`/docs`: the API page and its console, served offline by the app, driven in real Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.docs import STATIC
from tests.support.accounts import Customer
from tests.support.browser import chromium
from tests.support.web import web_process
from timo_hub.platform.settings import Settings


def test_page_and_assets_are_served_by_the_app(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    for asset in re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
    assert "Try it out" in html and "X-RateLimit-Remaining" in html


def test_nothing_is_loaded_from_elsewhere() -> None:
    for path in Path(STATIC).iterdir():
        text = path.read_text()
        # Every URL the page loads or calls is relative to this server.
        assert not re.search(r'(?:src|href)="(?:https?:)?//', text), path.name
        assert 'fetch("http' not in text and "fetch('http" not in text, path.name


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    with web_process(settings) as base:
        yield base


@pytest.mark.slow
def test_console_runs_the_quota_call_in_a_real_browser(server: str, customer: Customer) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{server}/docs")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        # The reference is built from the OpenAPI document.
        expect(page.locator("#op-get_quota")).to_contain_text("/api/v1/account/quota")
        page.fill("#api-key", customer.secret)
        page.select_option("#operation", label="GET /api/v1/account/quota")
        page.click("#send")
        expect(page.locator("#status")).to_have_text(re.compile(r"^200"))
        body = page.locator("#response-body")
        expect(body).to_contain_text('"limit": 50000')
        expect(body).to_contain_text('"used": 1')
        headers = page.locator("#response-headers")
        expect(headers).to_contain_text("X-RateLimit-Limit")
        expect(headers).to_contain_text("X-RateLimit-Remaining")
        expect(headers.locator("tr", has_text="X-RateLimit-Remaining")).to_contain_text("49999")
        # A bad parameter shows the problem the API answered.
        page.select_option("#operation", label="GET /api/v1/usage/forecast")
        page.fill("#param-days", "500")
        page.click("#send")
        expect(page.locator("#status")).to_have_text(re.compile(r"^400"))
        expect(body).to_contain_text("from 7 to 90")
