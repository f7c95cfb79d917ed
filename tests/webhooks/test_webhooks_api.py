"""`/api/v1/webhooks` end to end: the app, a real Celery worker, a receiver on 127.0.0.1.

The issue's scenario: a customer registers an endpoint, burns through 80% of a free plan and
receives one signed `quota.threshold_reached` per threshold within seconds, which the reference
library verifies; key events, tests, replays and the delivery log work through the API.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook

from api.gate import DELIVERIES_EXTENSION
from tests.support.accounts import Customer, new_customer
from tests.support.webhook_receiver import WebhookReceiver
from timo_hub.platform.runtime import Runtime
from timo_hub.webhooks import delivery


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def register(
    client: FlaskClient, customer: Customer, url: str, events: list[str]
) -> dict[str, object]:
    response = client.post(
        "/api/v1/webhooks",
        json={"url": url, "events": events, "description": "ops"},
        headers=customer.auth,
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def notifications_of(runtime: Runtime, customer: Customer) -> list[tuple[str, str]]:
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT type, dedupe_key FROM account_notifications WHERE account_id = %s "
            "ORDER BY occurred_at, dedupe_key",
            (customer.account.id,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_burning_80_percent_of_a_free_plan_sends_one_signed_alert_per_threshold(
    runtime: Runtime, client: FlaskClient, celery_worker: object, receiver: WebhookReceiver
) -> None:
    customer = new_customer(runtime, "free", burst="unlimited")
    created = register(client, customer, receiver.url, ["quota.threshold_reached"])
    secret = str(created["secret"])
    assert secret.startswith("whsec_")

    crossed_at: dict[int, float] = {}
    for n in range(1, 801):
        response = client.get("/api/v1/account/quota", headers=customer.auth)
        assert response.status_code == 200
        if n in (500, 800):
            crossed_at[n // 10] = time.time()

    requests = receiver.wait_for(2, timeout=15)
    time.sleep(1.0)  # anything extra would have arrived by now
    assert len(receiver.requests) == 2
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in requests]
    assert sorted(p["data"]["threshold"] for p in payloads) == [50, 80]
    for request, payload in zip(requests, payloads, strict=True):
        threshold = payload["data"]["threshold"]
        assert payload["type"] == "quota.threshold_reached"
        assert payload["data"]["limit"] == 1000
        assert payload["data"]["used"] == threshold * 10
        # The first attempt reaches the receiver within seconds of the crossing call.
        assert request.arrived_wall - crossed_at[threshold] < 10
    assert notifications_of(runtime, customer) == [
        ("quota.threshold_reached", time.strftime("%Y-%m", time.gmtime()) + ":50"),
        ("quota.threshold_reached", time.strftime("%Y-%m", time.gmtime()) + ":80"),
    ]


def test_the_first_refusal_sends_quota_exhausted_once(
    runtime: Runtime, client: FlaskClient, celery_worker: object, receiver: WebhookReceiver
) -> None:
    customer = new_customer(runtime, "free", burst="unlimited")
    created = register(client, customer, receiver.url, ["quota.exhausted"])
    for _ in range(999):  # registering the endpoint was the month's first call
        assert client.get("/api/v1/account/quota", headers=customer.auth).status_code == 200
    for _ in range(3):
        assert client.get("/api/v1/account/quota", headers=customer.auth).status_code == 429
    (request,) = receiver.wait_for(1, timeout=15)
    payload = Webhook(str(created["secret"])).verify(request.body, request.headers)
    assert payload["type"] == "quota.exhausted"
    assert payload["data"]["used"] == 1000 and payload["data"]["remaining"] == 0
    time.sleep(1.0)
    assert len(receiver.requests) == 1


def settled_deliveries(
    client: FlaskClient, customer: Customer, webhook_id: str, count: int
) -> list[dict[str, object]]:
    """The delivery log once `count` deliveries are no longer pending (the worker records an
    attempt's outcome just after the receiver has answered it)."""
    deadline = time.monotonic() + 10
    while True:
        log = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=customer.auth)
        assert log.status_code == 200
        deliveries: list[dict[str, object]] = log.get_json()["deliveries"]
        settled = [d for d in deliveries if d["state"] != "pending"]
        if len(settled) >= count or time.monotonic() > deadline:
            return deliveries
        time.sleep(0.05)


def test_key_events_and_the_delivery_log(
    runtime: Runtime, client: FlaskClient, celery_worker: object, receiver: WebhookReceiver
) -> None:
    customer = new_customer(runtime, "developer")
    created = register(client, customer, receiver.url, ["key.created", "key.revoked"])
    webhook_id = created["id"]
    made = client.post("/api/v1/auth/keys", json={"name": "ci"}, headers=customer.auth)
    assert made.status_code == 201
    key = made.get_json()
    assert client.delete(f"/api/v1/auth/keys/{key['id']}", headers=customer.auth).status_code == 204
    # Revoking again changes nothing and tells nobody twice.
    assert client.delete(f"/api/v1/auth/keys/{key['id']}", headers=customer.auth).status_code == 204

    requests = receiver.wait_for(2, timeout=15)
    payloads = [Webhook(str(created["secret"])).verify(r.body, r.headers) for r in requests]
    assert sorted(p["type"] for p in payloads) == ["key.created", "key.revoked"]
    for payload in payloads:
        assert payload["data"]["id"] == key["id"] and payload["data"]["name"] == "ci"
        assert "secret" not in str(payload) and key["key"] not in str(payload)

    deliveries = settled_deliveries(client, customer, str(webhook_id), 2)
    assert {d["type"] for d in deliveries} == {"key.created", "key.revoked"}
    for d in deliveries:
        assert d["state"] == "succeeded" and d["next_attempt_at"] is None
        (attempt,) = d["attempts"]
        assert attempt["status_code"] == 200 and attempt["latency_ms"] is not None
    time.sleep(0.5)
    assert len(receiver.requests) == 2


def test_test_messages_rotation_and_replay_through_the_api(
    runtime: Runtime, client: FlaskClient, celery_worker: object, receiver: WebhookReceiver
) -> None:
    customer = new_customer(runtime, "developer")
    created = register(client, customer, receiver.url, ["quota.exhausted"])
    webhook_id = created["id"]
    sent = client.post(f"/api/v1/webhooks/{webhook_id}/test", headers=customer.auth)
    assert sent.status_code == 202
    delivery_id = sent.get_json()["id"]
    (first,) = receiver.wait_for(1, timeout=15)
    assert first.headers["webhook-id"] == delivery_id
    assert Webhook(str(created["secret"])).verify(first.body, first.headers)["type"] == (
        "webhook.test"
    )

    rotated = client.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret", headers=customer.auth)
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    new_secret = rotated.get_json()["secret"]
    assert new_secret != created["secret"]
    assert rotated.get_json()["previous_secret_expires_at"] is not None

    assert settled_deliveries(client, customer, str(webhook_id), 1)[0]["state"] == "succeeded"
    replayed = client.post(
        f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", headers=customer.auth
    )
    assert replayed.status_code == 202
    _, second = receiver.wait_for(2, timeout=15)
    assert second.headers["webhook-id"] == delivery_id  # same id: the receiver can deduplicate
    # Both the old and the new secret sign during the overlap.
    Webhook(str(created["secret"])).verify(second.body, second.headers)
    Webhook(new_secret).verify(second.body, second.headers)

    listed = client.get("/api/v1/webhooks", headers=customer.auth).get_json()["webhooks"]
    assert [w["id"] for w in listed] == [webhook_id]
    assert "secret" not in listed[0]
    deleted = client.delete(f"/api/v1/webhooks/{webhook_id}", headers=customer.auth)
    assert deleted.status_code == 204, deleted.get_json()
    assert client.get(f"/api/v1/webhooks/{webhook_id}", headers=customer.auth).status_code == 404


def test_another_accounts_webhooks_are_not_found(
    runtime: Runtime, client: FlaskClient, receiver: WebhookReceiver
) -> None:
    """Guards against BOLA: every route with an id answers 404 for another account's."""
    owner = new_customer(runtime, "developer")
    other = new_customer(runtime, "developer")
    webhook_id = register(client, owner, receiver.url, ["key.created"])["id"]
    sent = client.post(f"/api/v1/webhooks/{webhook_id}/test", headers=owner.auth)
    delivery_id = sent.get_json()["id"]
    for method, path in [
        ("GET", f"/api/v1/webhooks/{webhook_id}"),
        ("DELETE", f"/api/v1/webhooks/{webhook_id}"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/rotate-secret"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/enable"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/test"),
        ("GET", f"/api/v1/webhooks/{webhook_id}/deliveries"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"),
    ]:
        response = client.open(path, method=method, headers=other.auth)
        assert response.status_code == 404, (method, path)
        assert response.content_type == "application/problem+json"
    assert client.get("/api/v1/webhooks", headers=other.auth).get_json() == {"webhooks": []}
    assert client.get(f"/api/v1/webhooks/{webhook_id}", headers=owner.auth).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.com/h", "events": ["quota.nope"]}, "events"),
        ({"url": "https://example.com/h", "events": []}, "events"),
        ({"url": "ftp://example.com/h", "events": ["key.created"]}, None),
        ({"url": "https://user:pw@example.com/h", "events": ["key.created"]}, None),
        ({"url": "https://example.com/h", "events": ["key.created"], "x": 1}, None),
        (
            {"url": "https://example.com/h", "events": ["key.created"], "description": "d" * 201},
            None,
        ),
    ],
)
def test_bad_registrations_are_422_problems(
    runtime: Runtime, client: FlaskClient, body: dict[str, object], field: str | None
) -> None:
    customer = new_customer(runtime, "developer")
    response = client.post("/api/v1/webhooks", json=body, headers=customer.auth)
    assert response.status_code == 422, response.get_json()
    assert response.content_type == "application/problem+json"


def test_private_addresses_are_refused_unless_the_operator_allows_them(
    runtime: Runtime, settings: object, tmp_path: object
) -> None:
    """Guards against SSRF: a customer pointing a webhook at the metadata service or at a
    private network would have our workers fetch it for them."""
    from api import close_app, create_app

    strict = runtime.settings.model_copy(
        update={"webhooks_allow_private": False, "home": tmp_path}  # type: ignore[dict-item]
    )
    app = create_app({"SETTINGS": strict, "TESTING": True})
    try:
        client = app.test_client()
        customer = new_customer(runtime, "developer")
        for url in [
            "http://127.0.0.1:8000/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
        ]:
            response = client.post(
                "/api/v1/webhooks",
                json={"url": url, "events": ["key.created"]},
                headers=customer.auth,
            )
            assert response.status_code == 422, url
            assert "public" in response.get_json()["detail"], url
    finally:
        close_app(app)


def test_thresholds_are_configurable(runtime: Runtime, client: FlaskClient) -> None:
    customer = new_customer(runtime, "developer")
    got = client.get("/api/v1/account/alert-thresholds", headers=customer.auth)
    assert got.get_json() == {"thresholds": [50, 80, 100]}
    put = client.put(
        "/api/v1/account/alert-thresholds", json={"thresholds": [90, 25, 25]}, headers=customer.auth
    )
    assert put.status_code == 200 and put.get_json() == {"thresholds": [25, 90]}
    for bad in ([0], [101], list(range(1, 13)), ["50"]):
        response = client.put(
            "/api/v1/account/alert-thresholds", json={"thresholds": bad}, headers=customer.auth
        )
        assert response.status_code == 422, bad


def test_a_broker_that_never_answers_does_not_hold_key_creation(
    runtime: Runtime, app: Flask, client: FlaskClient
) -> None:
    """Guards against a request hanging on the broker: a broker that accepts connections and
    never answers held key creation (its secret's one showing) and test sends for minutes."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        queue = app.extensions[DELIVERIES_EXTENSION]
        queue._broker_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        customer = new_customer(runtime, "developer")
        webhook_id = register(client, customer, "http://127.0.0.1:9/hook", ["key.created"])["id"]
        started = time.monotonic()
        made = client.post("/api/v1/auth/keys", json={"name": "ci"}, headers=customer.auth)
        sent = client.post(f"/api/v1/webhooks/{webhook_id}/test", headers=customer.auth)
        elapsed = time.monotonic() - started
        assert (made.status_code, sent.status_code) == (201, 202)
        assert elapsed < 1.0
        # Nothing is lost: both deliveries are due, for the dispatch run to queue.
        due = delivery.due(runtime.database, datetime.now(UTC))
        assert len(due) == 2
    finally:
        stop.set()
        for connection in accepted:
            connection.close()
        silent.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Percent-encoded, this is over 2,000 characters (the stored URL's limit).
        ({"url": "https://example.com/" + "€" * 1900, "events": ["key.created"]}, "url"),
        (
            {"url": "https://example.com/h", "events": ["key.created"], "description": "a\u0000b"},
            "description",
        ),
        (
            {
                "url": "https://example.com/h",
                "events": ["key.created"],
                "description": "a\u202eb\u0007",
            },
            "description",
        ),
    ],
)
def test_inputs_postgresql_would_refuse_are_422_not_500(
    runtime: Runtime, client: FlaskClient, body: dict[str, object], field: str
) -> None:
    """Guards against 500s: a URL that outgrows its limit once percent-encoded, and a NUL (which
    PostgreSQL text refuses) in a description."""
    customer = new_customer(runtime, "developer")
    response = client.post("/api/v1/webhooks", json=body, headers=customer.auth)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["field"] == field


def test_key_events_say_what_the_key_listing_says(runtime: Runtime, client: FlaskClient) -> None:
    """Guards against key payloads whose times differ from `GET /auth/keys` (milliseconds
    against microseconds)."""
    customer = new_customer(runtime, "developer")
    register(client, customer, "http://127.0.0.1:9/hook", ["key.created"])
    made = client.post("/api/v1/auth/keys", json={"name": "ci"}, headers=customer.auth)
    listed = client.get("/api/v1/auth/keys", headers=customer.auth).get_json()["keys"]
    (key,) = [k for k in listed if k["id"] == made.get_json()["id"]]
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT payload FROM account_notifications WHERE type = 'key.created' "
            "AND dedupe_key = %s",
            (key["id"],),
        ).fetchone()
    assert row is not None
    data = row[0]["data"]
    for field in ("id", "name", "prefix", "created_at", "last_used_at", "revoked_at"):
        assert data[field] == key[field], field
