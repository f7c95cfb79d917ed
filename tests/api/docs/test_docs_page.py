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
from http_sfv.list import List as StructuredList
from jsonschema import Draft202012Validator
from standardwebhooks.webhooks import Webhook

from api.docs import STATIC
from tests.support.accounts import Customer
from tests.support.browser import chromium
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime
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


def _section(client: FlaskClient, name: str) -> str:
    page = client.get("/docs").get_data(as_text=True)
    found = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert found, f"no {name} section"
    return found.group(1)


def _text(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", markup)).split())


def _code(section: str, code_id: str) -> str:
    found = re.search(rf'<code id="{code_id}">(.*?)</code>', section, re.S)
    assert found, code_id
    return html.unescape(found.group(1))


def test_limits_headers_and_refusals_are_documented(client: FlaskClient) -> None:
    text = _text(_section(client, "pricing")) + " " + _text(_section(client, "headers"))
    for phrase in (
        "burst window",
        "fixed windows of 60 seconds",
        "a call the burst window refuses costs nothing from the month",
        "No charge for our failures: a call answered with 5xx is refunded from every window; "
        "the event still records it and usage stats count it as a server error",
        "X-RateLimit-Limit",
        "RateLimit-Policy",
        "draft-ietf-httpapi-ratelimit-headers-10",
        "Structured Field",
        "/problems/burst-limit-exceeded",
        "/problems/quota-exceeded",
        "violated-policies",
        "window_seconds",
        "Seconds until the next window opens, never less than 1",
        "Seconds until the month ends, plus a random 0 to 60 s spread",
        "00:00 UTC",
    ):
        assert phrase in text, phrase


SEEDED_PLANS = ("free", "starter", "developer", "business", "enterprise")


def test_burst_limits_table_is_the_plans_table(client: FlaskClient, runtime: Runtime) -> None:
    """Every plan's limits as the page states them, per month and per burst window, are the
    ones in force (the seeded `plans` table)."""
    section = _section(client, "pricing")
    table = re.search(r'<table id="burst-limits">(.*?)</table>', section, re.S)
    assert table
    rows = [
        [_text(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    ]
    with runtime.database.connection() as conn:
        plans = conn.execute(
            "SELECT display_name, monthly_limit, burst_limit, burst_window_seconds FROM plans "
            "WHERE name = ANY(%s) ORDER BY sort_order",
            (list(SEEDED_PLANS),),  # other tests add plans of their own to the same database
        ).fetchall()

    def shown(limit: int | None) -> str:
        return "unlimited" if limit is None else f"{limit:,}"

    assert [row for row in rows if row] == [
        [name, shown(monthly), shown(burst)] for name, monthly, burst, _ in plans
    ]
    assert {seconds for *_, seconds in plans} == {60}
    assert "Calls per burst window (60 s)" in _text(table.group(1))
    text = _text(section)
    for _, _, burst, _ in plans:
        if burst is not None:
            assert f"{burst:,} calls/minute" in text


def test_header_and_refusal_examples_agree_with_the_document(client: FlaskClient) -> None:
    """The examples are what the API sends: each header matches the document's description of
    it, the structured ones parse, the numbers add up, and the refusal is a valid problem."""
    document = client.get("/api/v1/openapi.json").get_json()
    described = document["components"]["headers"]
    section = _section(client, "headers")
    headers = dict(line.split(": ", 1) for line in _code(section, "headers-example").splitlines())
    refusal, body = _code(section, "burst-refusal-example").split("\n\n", 1)
    refused = dict(line.split(": ", 1) for line in refusal.splitlines()[1:])
    for example in (headers, refused):
        for name, value in example.items():
            if name in described:
                assert re.fullmatch(described[name]["schema"]["pattern"], value), (name, value)

    def windows(value: str) -> dict[str, dict[str, int]]:
        parsed = StructuredList()
        parsed.parse(value.encode("ascii"))
        return {str(item.value): dict(item.params) for item in parsed}

    for example in (headers, refused):
        policy, state = windows(example["RateLimit-Policy"]), windows(example["RateLimit"])
        assert list(policy) == list(state) == ["month", "burst"]
        assert policy["month"]["w"] == 31 * 86400  # December's
        assert policy["burst"] == {"q": 60, "w": 60}
        # Both resets fall on the same moment: the burst window's end is a whole minute.
        now = 1798761600 - state["month"]["t"]
        assert (now + state["burst"]["t"]) % 60 == 0
    assert headers["X-RateLimit-Remaining"] == str(windows(headers["RateLimit"])["month"]["r"])
    problem = json.loads(body)
    schema = {
        "$ref": "#/components/schemas/BurstLimitExceededProblemOut",
        "components": document["components"],
    }
    Draft202012Validator(schema).validate(problem)
    burst = windows(refused["RateLimit"])["burst"]
    assert refused["Retry-After"] == str(burst["t"]) and burst["r"] == 0
    assert problem["reset"] == 1798761600 - windows(refused["RateLimit"])["month"]["t"] + burst["t"]
    assert problem["limit"] == problem["used"] == windows(refused["RateLimit-Policy"])["burst"]["q"]


def test_client_examples_are_python(client: FlaskClient) -> None:
    section = _section(client, "clients")
    examples = re.findall(r"<pre><code>(.*?)</code></pre>", section, re.S)
    assert len(examples) == 2
    for example in examples:
        compile(html.unescape(example), "example.py", "exec")
    assert "BurstLimitExceededError" in examples[0] and "retry_after" in examples[0]


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
        # Both header families: the burst window beside the month.
        policy = headers.locator("tr", has_text="RateLimit-Policy")
        expect(policy).to_contain_text('"month";q=50000;w=')
        expect(policy).to_contain_text('"burst";q=1000;w=60')
        expect(headers.locator("tr", has_text='"burst";r=')).to_contain_text('"month";r=49999;t=')
        # A bad parameter shows the problem the API answered.
        page.select_option("#operation", label="GET /api/v1/usage/forecast")
        page.fill("#param-days", "500")
        page.click("#send")
        expect(page.locator("#status")).to_have_text(re.compile(r"^400"))
        expect(body).to_contain_text("from 7 to 90")
