"""Bearer-key authentication: every way to fail, suspension, throttling, last use."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import close_app, create_app
from api.authentication import FAILURE_LIMIT
from tests.support.accounts import Customer, new_customer
from timo_hub.accounts import key_format, service
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

PROTECTED = ["/api/v1/account", "/api/v1/auth/keys"]


def _assert_401(response, error: str | None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if error:
        assert f'error="{error}"' in challenge
    body = response.get_json()
    assert body["type"] == "/problems/unauthorized"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "X-RateLimit-Limit" not in response.headers


@pytest.mark.parametrize("path", PROTECTED)
def test_missing_credentials_are_401(client: FlaskClient, path: str) -> None:
    _assert_401(client.get(path), None)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "timo_live_x"])
def test_other_schemes_and_empty_tokens_are_401(client: FlaskClient, header: str) -> None:
    _assert_401(client.get("/api/v1/account", headers={"Authorization": header}), None)


def test_a_key_with_a_bad_checksum_is_401(client: FlaskClient, customer: Customer) -> None:
    broken = customer.secret[:-1] + ("A" if customer.secret[-1] != "A" else "B")
    response = client.get("/api/v1/account", headers={"Authorization": f"Bearer {broken}"})
    _assert_401(response, "invalid_token")
    assert broken not in response.get_data(as_text=True)


def test_an_unknown_well_formed_key_is_401(client: FlaskClient, runtime: Runtime) -> None:
    stranger = key_format.generate("another-pepper").secret
    _assert_401(
        client.get("/api/v1/account", headers={"Authorization": f"Bearer {stranger}"}),
        "invalid_token",
    )


def test_the_scheme_is_case_insensitive(client: FlaskClient, customer: Customer) -> None:
    response = client.get("/api/v1/account", headers={"Authorization": f"bearer {customer.secret}"})
    assert response.status_code == 200


def test_a_key_revoked_elsewhere_is_refused_within_a_second(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    assert client.get("/api/v1/account", headers=customer.auth).status_code == 200  # now cached
    service.revoke_key(runtime, service.parse_id(customer.key_id, service.KeyNotFoundError, "key"))
    deadline = time.monotonic() + 1.0
    while client.get("/api/v1/account", headers=customer.auth).status_code == 200:
        assert time.monotonic() < deadline, "revoked key still accepted after 1 s"
        time.sleep(0.01)
    _assert_401(client.get("/api/v1/account", headers=customer.auth), "invalid_token")


def test_suspended_is_403_and_reactivated_is_200(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    assert client.get("/api/v1/account", headers=customer.auth).status_code == 200
    service.set_status(runtime, customer.account.id, "suspended")
    deadline = time.monotonic() + 1.0
    while (response := client.get("/api/v1/account", headers=customer.auth)).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/forbidden"

    service.set_status(runtime, customer.account.id, "active")
    deadline = time.monotonic() + 1.0
    while client.get("/api/v1/account", headers=customer.auth).status_code == 403:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_repeated_bad_keys_from_one_address_are_throttled(app: Flask, customer: Customer) -> None:
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    bad = {"Authorization": f"Bearer {key_format.generate('x').secret}"}
    for _ in range(FAILURE_LIMIT):
        assert attacker.get("/api/v1/account", headers=bad).status_code == 401
    throttled = attacker.get("/api/v1/account", headers=bad)
    assert throttled.status_code == 429
    assert throttled.get_json()["type"] == "/problems/too-many-failed-authentications"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert "X-RateLimit-Limit" not in throttled.headers  # counted against no account

    # Other addresses are unaffected.
    neighbour = app.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    assert neighbour.get("/api/v1/account", headers=customer.auth).status_code == 200


def test_a_failure_count_without_an_expiry_still_ends_with_its_window(
    app: Flask, runtime: Runtime
) -> None:
    """Guards against an address throttled for good: on Redis 6 the window's `SET NX` and the
    `INCR` in one MULTI could straddle the window's end, and the `INCR` recreated the count
    without an expiry, so that address's every bad key was a 429 forever."""
    address = "203.0.113.11"
    count_key = f"timo:authfail:{address}"
    runtime.redis.set(count_key, FAILURE_LIMIT + 5)  # what the straddling MULTI left behind
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    bad = {"Authorization": f"Bearer {key_format.generate('x').secret}"}
    throttled = client.get("/api/v1/account", headers=bad)
    assert throttled.status_code == 429
    assert 0 < runtime.redis.ttl(count_key) <= 60
    assert throttled.headers["Retry-After"] == str(runtime.redis.ttl(count_key))


def test_a_valid_key_never_seen_before_authenticates_after_bad_keys_from_its_address(
    app: Flask, runtime: Runtime
) -> None:
    """Guards against the throttle refusing lookups rather than failures: after 20 bad keys
    from an address, a valid key not in this process's cache (a new key, another worker, past
    the cache TTL) got 429 for a minute, so one bad client behind a NAT locked out everyone."""
    shared_address = app.test_client()
    shared_address.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    bad = {"Authorization": f"Bearer {key_format.generate('x').secret}"}
    statuses = [shared_address.get("/api/v1/account", headers=bad).status_code for _ in range(25)]
    assert statuses == [401] * FAILURE_LIMIT + [429] * (25 - FAILURE_LIMIT)

    newcomer = new_customer(runtime)  # created now: no process has ever cached its key
    assert shared_address.get("/api/v1/account", headers=newcomer.auth).status_code == 200
    assert shared_address.get("/api/v1/account", headers=bad).status_code == 429


def test_behind_a_trusted_proxy_the_throttle_tells_clients_apart(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    """Without a trusted-proxy setting every caller behind a proxy shares its address."""
    app = create_app(
        {"SETTINGS": settings.model_copy(update={"home": tmp_path, "trusted_proxies": 1})}
    )
    try:
        proxy = app.test_client()
        proxy.environ_base["REMOTE_ADDR"] = "10.0.0.2"
        bad = {"Authorization": f"Bearer {key_format.generate('x').secret}"}
        for _ in range(FAILURE_LIMIT + 1):
            proxy.get("/api/v1/account", headers={**bad, "X-Forwarded-For": "203.0.113.20"})
        attacker = proxy.get("/api/v1/account", headers={**bad, "X-Forwarded-For": "203.0.113.20"})
        assert attacker.status_code == 429
        other = proxy.get("/api/v1/account", headers={**bad, "X-Forwarded-For": "198.51.100.4"})
        assert other.status_code == 401
    finally:
        close_app(app)


def test_last_used_is_recorded_at_most_once_a_minute(
    client: FlaskClient, customer: Customer
) -> None:
    def last_used() -> str | None:
        # Closing the response is what the WSGI server does once it is sent; the write follows.
        with client.get("/api/v1/auth/keys", headers=customer.auth) as response:
            listing = response.get_json()
        return next(k["last_used_at"] for k in listing["keys"] if k["id"] == customer.key_id)

    assert last_used() is None  # recorded after the response, so not visible in that response
    first = last_used()
    assert first is not None
    time.sleep(0.05)
    assert last_used() == first  # throttled: no write on every request
