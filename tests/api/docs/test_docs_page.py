"""`/docs`: the API page and its console, served offline by the app, driven in real Chromium."""

from __future__ import annotations

import html
import json
import re
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from standardwebhooks.webhooks import Webhook

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


def _webhooks_section(client: FlaskClient) -> str:
    page = client.get("/docs").get_data(as_text=True)
    found = re.search(r'<section id="webhooks">(.*?)</section>', page, re.S)
    assert found, "no Webhooks section"
    return found.group(1)


def test_webhooks_section_covers_every_operation_event_and_rule(client: FlaskClient) -> None:
    section = _webhooks_section(client)
    text = html.unescape(re.sub(r"<[^>]+>", "", section))
    document = client.get("/api/v1/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation["tags"] == ["webhooks"]:
                assert f"/api/v1{path}" in text, (method, path)
    for kind in document["webhooks"]:
        assert kind in text, kind
    for phrase in (
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "whsec_",
        "standardwebhooks",
        "At least once",
        "5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h",
        "±20%",
        "about 3 days",
        "10 seconds",
        "Redirects are not followed",
        "410 Gone",
        "5 days",
        "24 hours",
        "https",
        "public addresses only",
        "50, 80 and 100",
        "once per account, kind and UTC month",
    ):
        assert phrase in text, phrase


def test_webhook_payload_examples_match_the_document(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    examples = re.findall(
        r'<code class="webhook-example" data-event="([^"]+)">(.*?)</code>',
        _webhooks_section(client),
        re.S,
    )
    assert len(examples) == 4
    for kind, text in examples:
        payload = json.loads(html.unescape(text))
        assert payload["type"] == kind
        schema = document["webhooks"][kind]["post"]["requestBody"]["content"]["application/json"]
        root = {"$ref": schema["schema"]["$ref"], "components": document["components"]}
        Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
            payload
        )


def test_the_python_receiver_example_verifies_and_deduplicates(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = re.search(
        r'<code id="webhook-receiver-example">(.*?)</code>', _webhooks_section(client), re.S
    )
    assert found
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    monkeypatch.setenv("TIMO_WEBHOOK_SECRET", secret)
    receiver = types.ModuleType("receiver")
    exec(compile(html.unescape(found.group(1)), "receiver.py", "exec"), receiver.__dict__)
    hooks = receiver.app.test_client()
    body = json.dumps(
        {
            "type": "quota.threshold_reached",
            "timestamp": "2026-12-14T09:21:07.482Z",
            "data": {"threshold": 80, "used": 800, "limit": 1000},
        }
    )
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_" + "ab" * 16,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_" + "ab" * 16, now, body),
        "Content-Type": "application/json",
    }
    assert hooks.post("/hooks/timo", data=body, headers=headers).status_code == 204
    assert capsys.readouterr().out == "80% of the quota used: 800 of 1000\n"
    # The same delivery again (a retry): acknowledged, not handled twice.
    assert hooks.post("/hooks/timo", data=body, headers=headers).status_code == 204
    assert capsys.readouterr().out == ""
    forged = {**headers, "webhook-id": "msg_" + "cd" * 16}
    assert hooks.post("/hooks/timo", data=body, headers=forged).status_code == 400


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
        expect(page.locator("#op-create_webhook")).to_contain_text("/api/v1/webhooks")
        expect(page.locator("#webhook-register + pre")).to_contain_text(f"{server}/api/v1/webhooks")
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
