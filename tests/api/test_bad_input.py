"""Bad input of every kind gets a problem response (never a 500) and is never counted twice."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support.accounts import Customer

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/usage/forecast?days=99999999999999999999999999999999", 400),
        ("GET", "/api/v1/usage/forecast?days=%F0%9F%98%80", 400),
        ("GET", "/api/v1/usage/forecast?days=7&days=7", 400),
        ("GET", "/api/v1/usage/stats?period=%E2%80%AE7d", 400),
        ("GET", "/api/v1/usage/stats?period=%00", 400),
        ("GET", "/api/v1/auth/keys?limit=1e3", 400),
        ("GET", "/api/v1/nope", 404),
        ("GET", "/api/v1/auth/keys/%F0%9F%98%80", 405),
        ("DELETE", "/api/v1/auth/keys/%F0%9F%98%80", 404),
        ("PUT", "/api/v1/account", 405),
        ("PATCH", "/api/v1/auth/keys", 405),
        ("GET", "/" + "x" * 3000, 404),
    ],
)
def test_query_paths_and_methods(
    client: FlaskClient, customer: Customer, method: str, path: str, status: int
) -> None:
    response = client.open(path, method=method, headers=customer.auth)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    assert response.get_json()["status"] == status


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/json", 400),
        (b"{", "application/json", 400),
        (b'{"name": "x"}', "text/plain", 415),
        (b'{"name": 1e999}', "application/json", 422),
        (b'{"name": ' + b"9" * 5000 + b"}", "application/json", 400),
        (b'{"name": "\\ud800"}', "application/json", 422),
        (b'{"name": "ok", "name": "twice"}', "application/json", 201),
        (b"[" * 10000 + b"]" * 10000, "application/json", 413),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "application/json", 400),
        (b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}', "application/json", 413),
    ],
)
def test_bodies(
    client: FlaskClient, customer: Customer, body: bytes, content_type: str, status: int
) -> None:
    response = client.post(
        "/api/v1/auth/keys", data=body, headers={**customer.auth, "Content-Type": content_type}
    )
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if status >= 400:
        assert response.mimetype == PROBLEM
