"""`GET /api/v1/account`."""

from __future__ import annotations

from datetime import datetime

from flask.testing import FlaskClient

from tests.support.accounts import new_customer
from timo_hub.platform.runtime import Runtime


def test_account_describes_the_caller_and_plan(client: FlaskClient, runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="starter")
    response = client.get("/api/v1/account", headers=customer.auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "id": str(customer.account.id),
        "email": customer.account.email,
        "plan": {
            "name": "starter",
            "monthly_limit": 5000,
            "price_usd": 29.0,
            "burst_limit": 300,
            "burst_window_seconds": 60,
        },
        "status": "active",
        "created_at": body["created_at"],
    }
    assert body["created_at"].endswith("Z")
    datetime.fromisoformat(body["created_at"])


def test_enterprise_is_unlimited_with_custom_price(client: FlaskClient, runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="enterprise")
    plan = client.get("/api/v1/account", headers=customer.auth).get_json()["plan"]
    assert plan == {
        "name": "enterprise",
        "monthly_limit": None,
        "price_usd": None,
        "burst_limit": None,
        "burst_window_seconds": 60,
    }
