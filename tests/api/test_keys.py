"""`/api/v1/auth/keys`: create once, list without secrets, revoke, limits, isolation."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.accounts import Customer, new_customer
from timo_hub.accounts import key_format as key_format
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime

KEYS = "/api/v1/auth/keys"


def _create(client: FlaskClient, customer: Customer, body: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
    if body is None:
        body = {"name": "CI deploys"}
    return client.post(KEYS, headers=customer.auth, json=body, **kwargs)


def test_a_new_key_is_shown_once_and_works(client: FlaskClient, customer: Customer) -> None:
    response = _create(client, customer, {"name": "CI deploys"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    created = response.get_json()
    assert set(created) == {
        "id",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
        "key",
    }
    assert created["name"] == "CI deploys"
    assert key_format.is_well_formed(created["key"])
    assert created["prefix"] == created["key"][:14]
    assert (created["last_used_at"], created["revoked_at"]) == (None, None)

    new_auth = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/api/v1/account", headers=new_auth).status_code == 200

    listing = client.get(KEYS, headers=customer.auth)
    assert created["key"] not in listing.get_data(as_text=True)
    listed = listing.get_json()["keys"]
    assert [k["id"] for k in listed] == [created["id"], customer.key_id]  # newest first
    for key in listed:
        assert set(key) == {"id", "name", "prefix", "created_at", "last_used_at", "revoked_at"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "  padded  "}, "name"),
        ({"name": "x" * 99 + " "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 42}, "name"),
        ({"name": None}, "name"),
        ({"name": ["a"]}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": "nul\u0000"}, "name"),
        ({"name": "ok", "scopes": ["all"]}, "scopes"),
        (["name"], "body"),
        ("name", "body"),
    ],
)
def test_bad_values_are_422_naming_the_field(
    client: FlaskClient, customer: Customer, body: object, field: str
) -> None:
    response = _create(client, customer, body)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert problem["type"] == "/problems/validation-failed"
    assert field in [e["field"] for e in problem["errors"]]


def test_lone_surrogates_are_422_not_500(client: FlaskClient, customer: Customer) -> None:
    response = client.post(
        KEYS,
        headers={**customer.auth, "Content-Type": "application/json"},
        data=b'{"name": "\\ud800"}',
    )
    assert response.status_code == 422


@pytest.mark.parametrize("name", ["é" * 100, "Clé de l'équipe ✨", "鍵", "ключ API"])
def test_unicode_names_up_to_100_characters(
    client: FlaskClient, customer: Customer, name: str
) -> None:
    response = _create(client, customer, {"name": name})
    assert response.status_code == 201
    assert response.get_json()["name"] == name


@pytest.mark.parametrize(
    ("content_type", "data", "status", "slug"),
    [
        ("text/plain", b'{"name": "x"}', 415, "unsupported-media-type"),
        (None, b'{"name": "x"}', 415, "unsupported-media-type"),
        ("application/json", b'{"name": ', 400, "bad-request"),
        ("application/json", b"", 400, "bad-request"),
        ("application/json", b'{"name": NaN}', 400, "bad-request"),
        ("application/json", b"\xff\xfe", 400, "bad-request"),
        ("application/json", json.dumps({"name": "x" * 20000}).encode(), 413, "payload-too-large"),
    ],
)
def test_body_problems(
    client: FlaskClient,
    customer: Customer,
    content_type: str | None,
    data: bytes,
    status: int,
    slug: str,
) -> None:
    headers = dict(customer.auth)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(KEYS, headers=headers, data=data)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == f"/problems/{slug}"


def test_at_most_25_active_keys(client: FlaskClient, customer: Customer) -> None:
    created = [_create(client, customer, {"name": f"k{i}"}) for i in range(24)]
    assert all(r.status_code == 201 for r in created)
    refused = _create(client, customer)
    assert refused.status_code == 409
    assert refused.get_json()["max_active_keys"] == 25
    client.delete(f"{KEYS}/{created[0].get_json()['id']}", headers=customer.auth)
    assert _create(client, customer).status_code == 201


def test_the_limit_holds_under_concurrent_creation(
    app: Flask, runtime: Runtime, customer: Customer
) -> None:
    for i in range(19):
        service.issue_key(runtime, customer.account.id, f"pre{i}")

    def create(i: int) -> int:
        return _create(app.test_client(), customer, {"name": f"race{i}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(12)))
    assert sorted(statuses) == [201] * 5 + [409] * 7
    active = [k for k in service.list_keys(runtime, customer.account.id) if k.revoked_at is None]
    assert len(active) == 25


def test_revoke_is_idempotent_and_the_key_stops_working(
    client: FlaskClient, customer: Customer
) -> None:
    other = _create(client, customer).get_json()
    other_auth = {"Authorization": f"Bearer {other['key']}"}
    assert client.get("/api/v1/account", headers=other_auth).status_code == 200

    first = client.delete(f"{KEYS}/{other['id']}", headers=customer.auth)
    assert first.status_code == 204
    assert first.get_data() == b""
    assert client.delete(f"{KEYS}/{other['id']}", headers=customer.auth).status_code == 204
    assert client.get("/api/v1/account", headers=other_auth).status_code == 401

    listed = {k["id"]: k for k in client.get(KEYS, headers=customer.auth).get_json()["keys"]}
    assert listed[other["id"]]["revoked_at"] is not None
    assert listed[customer.key_id]["revoked_at"] is None


def test_a_key_may_revoke_itself(client: FlaskClient, customer: Customer) -> None:
    assert client.delete(f"{KEYS}/{customer.key_id}", headers=customer.auth).status_code == 204
    assert client.get("/api/v1/account", headers=customer.auth).status_code == 401


@pytest.mark.parametrize("key_id", [str(uuid.uuid4()), "not-a-uuid", "1", "%00", "x" * 300])
def test_unknown_or_malformed_ids_are_404(
    client: FlaskClient, customer: Customer, key_id: str
) -> None:
    response = client.delete(f"{KEYS}/{key_id}", headers=customer.auth)
    assert response.status_code == 404
    assert response.get_json()["type"] == "/problems/not-found"


def test_another_accounts_key_is_404_and_keeps_working(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    bob = new_customer(runtime)
    response = client.delete(f"{KEYS}/{bob.key_id}", headers=customer.auth)
    assert response.status_code == 404
    assert client.get("/api/v1/account", headers=bob.auth).status_code == 200
    alice_sees = client.get(KEYS, headers=customer.auth).get_data(as_text=True)
    assert bob.key_id not in alice_sees


def test_listing_is_only_your_own(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    bob = new_customer(runtime)
    ids = [k["id"] for k in client.get(KEYS, headers=bob.auth).get_json()["keys"]]
    assert ids == [bob.key_id]


def test_listing_is_limited_newest_first(client: FlaskClient, customer: Customer) -> None:
    for n in range(3):
        assert _create(client, customer, {"name": f"key {n}"}).status_code == 201
    listing = client.get(f"{KEYS}?limit=2", headers=customer.auth).get_json()
    assert [k["name"] for k in listing["keys"]] == ["key 2", "key 1"]
    assert listing["has_more"] is True
    everything = client.get(KEYS, headers=customer.auth).get_json()
    assert len(everything["keys"]) == 4 and everything["has_more"] is False
    for bad in ("0", "101", "-1", "ten", "2&limit=3"):
        assert client.get(f"{KEYS}?limit={bad}", headers=customer.auth).status_code == 400


def test_active_keys_come_before_newer_revoked_ones(
    client: FlaskClient, customer: Customer
) -> None:
    for n in range(3):
        created = _create(client, customer, {"name": f"rotated {n}"}).get_json()
        assert client.delete(f"{KEYS}/{created['id']}", headers=customer.auth).status_code == 204
    listing = client.get(f"{KEYS}?limit=1", headers=customer.auth).get_json()
    assert [k["id"] for k in listing["keys"]] == [customer.key_id]
    assert listing["has_more"] is True
