"""End to end: API calls -> spool -> broker -> a real worker -> the log and `usage_daily`."""

from __future__ import annotations

from collections import Counter

from flask import Flask

from api.metering import EXTENSION
from tests.support.accounts import Customer, new_customer
from tests.support.events import log_counts, projection_counts
from tests.support.waiting import eventually
from timo_hub.platform.runtime import Runtime
from workers.celery_app import TimoCelery


def _statuses(runtime: Runtime, customer: Customer) -> Counter[tuple[str, int]]:
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT endpoint, status, calls FROM usage_daily WHERE account_id = %s",
            (customer.account.id,),
        ).fetchall()
    return Counter({(e, s): n for e, s, n in rows})


def test_every_authenticated_call_is_counted_once_by_a_real_worker(
    app: Flask, runtime: Runtime, celery_app: TimoCelery, celery_worker: object
) -> None:
    client = app.test_client()
    customer = new_customer(runtime, plan="free")
    auth = customer.auth
    for _ in range(3):
        assert client.get("/api/v1/account", headers=auth).status_code == 200
    created = client.post("/api/v1/auth/keys", headers=auth, json={"name": "ci"}).get_json()
    assert client.delete(f"/api/v1/auth/keys/{created['id']}", headers=auth).status_code == 204
    assert client.post("/api/v1/auth/keys", headers=auth, json={}).status_code == 422
    assert client.get("/api/v1/account").status_code == 401  # no event
    assert client.get("/api/v1/health").status_code == 200  # no event

    publisher = app.extensions[EXTENSION]
    assert publisher.drain(timeout=10)

    expected = Counter(
        {
            ("/api/v1/account", 200): 3,
            ("/api/v1/auth/keys", 201): 1,
            ("/api/v1/auth/keys/{keyId}", 204): 1,
            ("/api/v1/auth/keys", 422): 1,
        }
    )
    eventually(lambda: _statuses(runtime, customer) == expected, timeout=15)
    assert log_counts(runtime) == projection_counts(runtime)
    assert sum(log_counts(runtime).values()) == 6
