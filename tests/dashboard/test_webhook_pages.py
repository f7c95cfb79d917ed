"""The Alerts page's webhooks: endpoints added, tested, rotated, enabled and deleted from the
dashboard, their delivery logs and replays, the disabled-endpoint alert, the alert thresholds.

Deliveries are sent by the real delivery engine (`attempt_delivery`) to a real receiver on
127.0.0.1; the pages are driven as a browser would, with each form's CSRF token.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import close_app, create_app
from tests.support import dashboard as ui
from tests.support.webhook_receiver import PlannedAnswer, WebhookReceiver
from timo_hub.accounts import service as accounts
from timo_hub.people import store as people_store
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks import endpoints
from timo_hub.webhooks.delivery import attempt_delivery

ALERTS = "/dashboard/alerts"
_SECRET = re.compile(r'id="new-webhook-secret">(whsec_[^<]+)<')


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _account_id(runtime: Runtime, email: str) -> uuid.UUID:
    with runtime.database.connection() as conn:
        user = people_store.find_user_by_email(conn, email)
    assert user is not None
    return user.account_id


def _add(
    client: FlaskClient,
    url: str,
    events: tuple[str, ...] = ("quota.threshold_reached", "key.created"),
    description: str = "",
) -> TestResponse:
    """Submit the new-endpoint form (its checkboxes as a browser sends them)."""
    token = ui.csrf_token(client, ALERTS)
    data = {"url": url, "events": list(events), "description": description, "csrf_token": token}
    return client.post(f"{ALERTS}/webhooks", data=data)


def _add_endpoint(client: FlaskClient, url: str) -> tuple[str, str]:
    """Add an endpoint; its id and the secret the page shows once."""
    answer = _add(client, url)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    page = client.get(ALERTS).get_data(as_text=True)
    secret = _SECRET.search(page)
    assert secret, "the signing secret is not on the page"
    ids = re.findall(r'<tr data-endpoint-id="([0-9a-f-]+)"', page)
    return ids[-1], secret.group(1)


def _post(client: FlaskClient, path: str, page: str = ALERTS) -> TestResponse:
    return ui.post_form(client, path, {}, page=page)


def _deliveries(runtime: Runtime, endpoint_id: str) -> list[tuple[str, str, str]]:
    """(id, type, state) of the endpoint's deliveries, oldest first."""
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT id, type, state FROM webhook_deliveries WHERE endpoint_id = %s "
            "ORDER BY created_at",
            (endpoint_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _send_test(client: FlaskClient, runtime: Runtime, endpoint_id: str) -> str:
    """Press "Send test"; the id of the delivery it queued."""
    answer = _post(client, f"{ALERTS}/webhooks/{endpoint_id}/test")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{ALERTS}/webhooks/{endpoint_id}"
    return _deliveries(runtime, endpoint_id)[-1][0]


def _later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _squeezed(answer: TestResponse) -> str:
    return " ".join(answer.get_data(as_text=True).split())


def test_an_endpoint_is_added_and_its_secret_shown_once(
    client: FlaskClient, runtime: Runtime
) -> None:
    email = ui.sign_up(client)
    answer = _add(client, "http://127.0.0.1:9/hooks/timo", description="Billing alerts")
    assert answer.status_code == 303 and answer.headers["Location"] == ALERTS
    # A HEAD (a prefetch) and the keys page leave the secret for the Alerts page.
    assert client.head(ALERTS).status_code == 200
    assert "whsec_" not in client.get("/dashboard/keys").get_data(as_text=True)
    page = client.get(ALERTS)
    assert page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    shown = _SECRET.search(text)
    assert shown
    assert 'class="copy" data-copy-target="new-webhook-secret" hidden' in text
    assert "It will only be shown once." in text
    (endpoint,) = endpoints.list_all(runtime.database, _account_id(runtime, email))
    assert endpoint.secret == shown.group(1)
    table = text[text.index('id="webhooks-table"') :]
    for words in ("http://127.0.0.1:9/hooks/timo", "Billing alerts", "quota.threshold_reached"):
        assert words in table
    assert "key.created" in table and "enabled" in table
    assert f'href="{ALERTS}/webhooks/{endpoint.id}"' in table  # its delivery log
    again = client.get(ALERTS).get_data(as_text=True)
    assert shown.group(1) not in again and "new-webhook-secret" not in again
    assert "http://127.0.0.1:9/hooks/timo" in again


@pytest.mark.parametrize(
    ("url", "events", "description", "message"),
    [
        ("", ("key.created",), "", "Enter the URL events are to be sent to."),
        ("not a url", ("key.created",), "", ""),
        ("ftp://example.com/hook", ("key.created",), "", ""),
        ("http://127.0.0.1:9/h", ("quota.nope",), "", "Unknown event type &#39;quota.nope&#39;"),
        ("http://127.0.0.1:9/h", (), "", "Subscribe to at least one event type."),
        ("http://127.0.0.1:9/h", ("key.created",), "x" * 201, "A description is at most 200"),
    ],
)
def test_a_refused_endpoint_is_a_form_error(
    client: FlaskClient,
    runtime: Runtime,
    url: str,
    events: tuple[str, ...],
    description: str,
    message: str,
) -> None:
    ui.sign_up(client)
    answer = _add(client, url, events, description)
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert 'class="field-error"' in text and message in text
    assert "new-webhook-secret" not in text
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM webhook_endpoints").fetchone() == (0,)


def test_private_addresses_are_refused_unless_allowed(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    """As in production: the SSRF check's refusal is the URL field's error, not a 500."""
    strict = settings.model_copy(update={"webhooks_allow_private": False, "home": tmp_path / "h"})
    app = create_app({"SETTINGS": strict, "TESTING": True})
    try:
        client = app.test_client()
        ui.sign_up(client)
        for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest", "http://[::1]/h"):
            answer = _add(client, url)
            assert answer.status_code == 422, url
            assert "public addresses" in answer.get_data(as_text=True), url
    finally:
        close_app(app)


def test_the_eleventh_endpoint_is_refused_on_the_form(
    client: FlaskClient, runtime: Runtime
) -> None:
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    for n in range(endpoints.MAX_ENDPOINTS):
        endpoints.create(
            runtime.database,
            runtime.settings,
            account_id,
            url=f"http://127.0.0.1:9/{n}",
            events=["key.created"],
            description="",
            now=datetime.now(UTC),
        )
    assert "the most it may have" in client.get(ALERTS).get_data(as_text=True)
    answer = _add(client, "http://127.0.0.1:9/eleventh")
    assert answer.status_code == 422
    assert "at most 10 webhook endpoints" in answer.get_data(as_text=True)


def test_a_test_message_is_queued_and_its_attempts_logged_then_replayed(
    client: FlaskClient, runtime: Runtime, receiver: WebhookReceiver
) -> None:
    ui.sign_up(client)
    endpoint_id, _ = _add_endpoint(client, receiver.url_for("/hook"))
    log_path = f"{ALERTS}/webhooks/{endpoint_id}"
    assert "Nothing sent to this endpoint yet" in client.get(log_path).get_data(as_text=True)

    delivery_id = _send_test(client, runtime, endpoint_id)
    assert _deliveries(runtime, endpoint_id) == [(delivery_id, "webhook.test", "pending")]
    page = client.get(log_path).get_data(as_text=True)
    assert "A test event is queued" in page and delivery_id in page
    assert "No attempt yet" in page

    # The first attempt fails (500): logged with its status and latency, a retry scheduled.
    receiver.plan(PlannedAnswer(500, body=b"oops"))
    first = attempt_delivery(runtime.database, runtime.settings, delivery_id)
    assert first is not None and first.state == "pending"
    page = _squeezed(client.get(log_path))
    assert "HTTP 500" in page and "oops" in page and re.search(r"\d+ ms", page)
    assert 'class="next-retry">next attempt' in page
    assert "replay-button" not in page  # still being tried

    # The retry succeeds: both attempts listed, in order; the delivery may be replayed.
    second = attempt_delivery(
        runtime.database, runtime.settings, delivery_id, clock=lambda: _later(60)
    )
    assert second is not None and second.state == "succeeded"
    page = _squeezed(client.get(log_path))
    assert page.index("HTTP 500") < page.index("HTTP 200")
    assert re.findall(r'<td data-label="Attempt" class="num">(\d+)</td>', page) == ["1", "2"]
    assert "state-succeeded" in page and "next-retry" not in page
    replay_path = f"{log_path}/deliveries/{delivery_id}/replay"
    assert f'action="{replay_path}"' in page

    answer = _post(client, replay_path, page=log_path)
    assert answer.status_code == 303 and answer.headers["Location"] == log_path
    assert _deliveries(runtime, endpoint_id) == [(delivery_id, "webhook.test", "pending")]
    assert "is queued again" in client.get(log_path).get_data(as_text=True)
    # Replaying what is pending changes nothing (idempotent), and is no error.
    assert _post(client, replay_path, page=log_path).status_code == 303
    third = attempt_delivery(
        runtime.database, runtime.settings, delivery_id, clock=lambda: _later(120)
    )
    assert third is not None and third.state == "succeeded"
    received = receiver.wait_for(3)
    assert {r.headers["webhook-id"] for r in received} == {delivery_id}
    assert len(receiver.requests) == 3
    page = _squeezed(client.get(log_path))
    assert re.findall(r'<td data-label="Attempt" class="num">(\d+)</td>', page) == ["1", "2", "3"]


def test_unknown_or_malformed_deliveries_are_not_found(
    client: FlaskClient, runtime: Runtime
) -> None:
    ui.sign_up(client)
    endpoint_id, _ = _add_endpoint(client, "http://127.0.0.1:9/hook")
    log_path = f"{ALERTS}/webhooks/{endpoint_id}"
    for delivery_id in ("msg_" + "0" * 32, "not-a-delivery", "msg_" + "A" * 32):
        answer = _post(client, f"{log_path}/deliveries/{delivery_id}/replay", page=log_path)
        assert answer.status_code == 404, delivery_id
        assert "No such delivery" in answer.get_data(as_text=True)


def test_rotating_shows_the_new_secret_once_and_keeps_the_old_for_a_day(
    client: FlaskClient, runtime: Runtime
) -> None:
    email = ui.sign_up(client)
    endpoint_id, old_secret = _add_endpoint(client, "http://127.0.0.1:9/hook")
    rotate_path = f"{ALERTS}/webhooks/{endpoint_id}/rotate"
    assert f'href="{rotate_path}"' in client.get(ALERTS).get_data(as_text=True)
    confirm = client.get(rotate_path)
    assert confirm.status_code == 200
    assert "24 hours" in confirm.get_data(as_text=True)
    # Asking is not rotating.
    (unchanged,) = endpoints.list_all(runtime.database, _account_id(runtime, email))
    assert unchanged.secret == old_secret and unchanged.previous_secret is None

    answer = _post(client, rotate_path, page=rotate_path)
    assert answer.status_code == 303 and answer.headers["Location"] == ALERTS
    page = client.get(ALERTS).get_data(as_text=True)
    shown = _SECRET.search(page)
    assert shown and shown.group(1) != old_secret
    assert "New signing secret" in page
    assert "keeps signing every delivery beside the new one for 24 hours more" in " ".join(
        page.split()
    )
    (rotated,) = endpoints.list_all(runtime.database, _account_id(runtime, email))
    assert rotated.secret == shown.group(1) and rotated.previous_secret == old_secret
    assert rotated.previous_secret_expires_at is not None
    assert rotated.previous_secret_expires_at - datetime.now(UTC) > timedelta(hours=23)
    again = client.get(ALERTS).get_data(as_text=True)
    assert shown.group(1) not in again and old_secret not in again


def test_deleting_asks_first(client: FlaskClient, runtime: Runtime) -> None:
    email = ui.sign_up(client)
    endpoint_id, _ = _add_endpoint(client, "http://127.0.0.1:9/doomed")
    _send_test(client, runtime, endpoint_id)
    delete_path = f"{ALERTS}/webhooks/{endpoint_id}/delete"
    confirm = client.get(delete_path)
    assert confirm.status_code == 200
    text = confirm.get_data(as_text=True)
    assert "Delete this webhook endpoint?" in text and "http://127.0.0.1:9/doomed" in text
    assert len(endpoints.list_all(runtime.database, _account_id(runtime, email))) == 1

    answer = _post(client, delete_path, page=delete_path)
    assert answer.status_code == 303 and answer.headers["Location"] == ALERTS
    page = client.get(ALERTS).get_data(as_text=True)
    assert "is deleted; nothing more is sent to it" in page
    assert 'id="webhooks-table"' not in page
    assert endpoints.list_all(runtime.database, _account_id(runtime, email)) == []
    assert _deliveries(runtime, endpoint_id) == []
    assert client.get(delete_path).status_code == 404
    assert client.get(f"{ALERTS}/webhooks/{endpoint_id}").status_code == 404


def test_a_disabled_endpoint_is_an_alert_until_enabled(
    client: FlaskClient, runtime: Runtime, receiver: WebhookReceiver
) -> None:
    ui.sign_up(client)
    url = receiver.url_for("/gone")
    endpoint_id, _ = _add_endpoint(client, url)
    log_path = f"{ALERTS}/webhooks/{endpoint_id}"
    assert "Webhook endpoint disabled" not in client.get("/dashboard").get_data(as_text=True)
    delivery_id = _send_test(client, runtime, endpoint_id)
    receiver.plan(PlannedAnswer(410))
    outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id)
    assert outcome is not None and outcome.state == "failed"

    for path in ("/dashboard", ALERTS):
        page = _squeezed(client.get(path))
        warning = re.search(r'<div class="warning webhook-disabled".*?</div>', page)
        assert warning, path
        assert url in warning.group(0) and "410 Gone" in warning.group(0), path
        assert f'href="{log_path}" class="fix-webhook"' in warning.group(0), path
    alerts = _squeezed(client.get(ALERTS))
    assert f'action="{log_path}/enable"' in alerts
    assert f'action="{log_path}/test"' not in alerts  # nothing can be sent to it now
    log = _squeezed(client.get(log_path))
    assert "This endpoint is disabled" in log and "Enable the endpoint to replay" in log

    # Sending to it anyway (a page left open) says why, and queues nothing.
    assert _post(client, f"{log_path}/test", page=log_path).status_code == 303
    assert "Enable it first" in client.get(log_path).get_data(as_text=True)
    assert len(_deliveries(runtime, endpoint_id)) == 1

    answer = _post(client, f"{log_path}/enable")
    assert answer.status_code == 303 and answer.headers["Location"] == log_path
    assert "is enabled" in client.get(log_path).get_data(as_text=True)
    for path in ("/dashboard", ALERTS):
        assert "webhook-disabled" not in client.get(path).get_data(as_text=True), path
    # What failed while it was disabled can be replayed now.
    replay = f"{log_path}/deliveries/{delivery_id}/replay"
    assert f'action="{replay}"' in client.get(log_path).get_data(as_text=True)
    assert _post(client, replay, page=log_path).status_code == 303
    assert _deliveries(runtime, endpoint_id)[0][2] == "pending"


def test_alert_thresholds_are_saved_and_checked(client: FlaskClient, runtime: Runtime) -> None:
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    page = client.get(ALERTS).get_data(as_text=True)
    assert 'name="thresholds" type="text" value="50, 80, 100"' in page

    path = f"{ALERTS}/thresholds"
    answer = ui.post_form(client, path, {"thresholds": "90, 25%, 75, 25"}, page=ALERTS)
    assert answer.status_code == 303 and answer.headers["Location"] == ALERTS
    assert accounts.alert_thresholds(runtime, account_id) == [25, 75, 90]
    page = client.get(ALERTS).get_data(as_text=True)
    assert "Alert thresholds saved: 25%, 75%, 90%." in page
    assert 'value="25, 75, 90"' in page

    eleven = ", ".join(str(n) for n in range(1, 12))
    for refused in ("0", "101", "50, 101", "-5", "fifty", "12.5", eleven):
        answer = ui.post_form(client, path, {"thresholds": refused}, page=ALERTS)
        assert answer.status_code == 422, refused
        text = answer.get_data(as_text=True)
        assert 'class="field-error"' in text, refused
    assert accounts.alert_thresholds(runtime, account_id) == [25, 75, 90]

    assert ui.post_form(client, path, {"thresholds": ""}, page=ALERTS).status_code == 303
    assert accounts.alert_thresholds(runtime, account_id) == []
    assert "Alert thresholds saved: none." in client.get(ALERTS).get_data(as_text=True)


def test_another_accounts_endpoints_and_deliveries_are_not_found(
    app: Flask, runtime: Runtime
) -> None:
    """BOLA: every path that takes an endpoint or delivery id, from another account's session."""
    alice, mallory = app.test_client(), app.test_client()
    alice_email = ui.sign_up(alice)
    alice_id, alice_secret = _add_endpoint(alice, "http://127.0.0.1:9/alice-private")
    alice_delivery = _send_test(alice, runtime, alice_id)
    ui.sign_up(mallory)
    mallory_id, _ = _add_endpoint(mallory, "http://127.0.0.1:9/mallory")

    base = f"{ALERTS}/webhooks/{alice_id}"
    for path in (base, f"{base}/rotate", f"{base}/delete"):
        answer = mallory.get(path)
        assert answer.status_code == 404, path
        assert "alice-private" not in answer.get_data(as_text=True)
    for path in (
        f"{base}/test",
        f"{base}/rotate",
        f"{base}/enable",
        f"{base}/delete",
        f"{base}/deliveries/{alice_delivery}/replay",
        # Alice's delivery under Mallory's own endpoint.
        f"{ALERTS}/webhooks/{mallory_id}/deliveries/{alice_delivery}/replay",
    ):
        answer = _post(mallory, path)
        assert answer.status_code == 404, path
        assert "alice-private" not in answer.get_data(as_text=True)
    for path in ("/dashboard", ALERTS, f"{ALERTS}/webhooks/{mallory_id}"):
        assert "alice-private" not in mallory.get(path).get_data(as_text=True), path

    (alice_endpoint,) = endpoints.list_all(runtime.database, _account_id(runtime, alice_email))
    assert alice_endpoint.secret == alice_secret and alice_endpoint.previous_secret is None
    assert _deliveries(runtime, alice_id) == [(alice_delivery, "webhook.test", "pending")]


@pytest.mark.parametrize(
    "endpoint_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"]
)
def test_malformed_endpoint_ids_are_not_found(client: FlaskClient, endpoint_id: str) -> None:
    ui.sign_up(client)
    for suffix in ("", "/rotate", "/delete"):
        answer = client.get(f"{ALERTS}/webhooks/{endpoint_id}{suffix}")
        assert answer.status_code == 404, suffix
        assert "No such webhook endpoint" in answer.get_data(as_text=True)
    assert _post(client, f"{ALERTS}/webhooks/{endpoint_id}/test").status_code == 404


def test_every_webhook_form_needs_the_token(client: FlaskClient, runtime: Runtime) -> None:
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    endpoint_id, secret = _add_endpoint(client, "http://127.0.0.1:9/hook")
    delivery_id = _send_test(client, runtime, endpoint_id)
    base = f"{ALERTS}/webhooks/{endpoint_id}"
    forms = {
        f"{ALERTS}/webhooks": {"url": "http://127.0.0.1:9/sneaky", "events": "key.created"},
        f"{ALERTS}/thresholds": {"thresholds": "5"},
        f"{base}/test": {},
        f"{base}/rotate": {},
        f"{base}/enable": {},
        f"{base}/delete": {},
        f"{base}/deliveries/{delivery_id}/replay": {},
    }
    other_token = ui.csrf_token(client.application.test_client(), "/login")
    for token in (None, "forged", other_token):
        for path, data in forms.items():
            sent = dict(data) if token is None else {**data, "csrf_token": token}
            answer = client.post(path, data=sent)
            assert answer.status_code == 400, (path, token)
            assert "Form refused" in answer.get_data(as_text=True)
    (endpoint,) = endpoints.list_all(runtime.database, account_id)
    assert endpoint.secret == secret and endpoint.previous_secret is None
    assert accounts.alert_thresholds(runtime, account_id) == [50, 80, 100]
    assert _deliveries(runtime, endpoint_id) == [(delivery_id, "webhook.test", "pending")]


def test_the_webhooks_table_stacks_as_cards_on_a_phone(client: FlaskClient) -> None:
    ui.sign_up(client)
    _add_endpoint(client, "http://127.0.0.1:9/" + "long-path/" * 20)
    page = client.get(ALERTS).get_data(as_text=True)
    assert 'class="data stack-on-phone" id="webhooks-table"' in page
    for label in ("URL", "Events", "Status", "Created"):
        assert f'data-label="{label}"' in page
