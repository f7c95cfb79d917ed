"""`timo-hub quota reconcile`: drift is reported, and repair only ever raises a counter."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Flask

from api.gate import QUOTA_EXTENSION
from tests.support.accounts import new_customer
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import counter_key
from timo_hub.quota.period import period_containing


def _ledger(runtime: Runtime, account_id: object, period_day: object) -> int | None:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s AND period = %s",
            (account_id, period_day),
        ).fetchone()
    return row[0] if row else None


def test_reconcile_reports_and_repairs_both_directions(run, app: Flask, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    period = period_containing(datetime.now(UTC))
    lost_redis, lagging_ledger, in_sync = (new_customer(runtime) for _ in range(3))
    client = app.test_client()
    for customer, calls in ((lost_redis, 4), (lagging_ledger, 3), (in_sync, 2)):
        for _ in range(calls):
            assert client.get("/api/v1/account/quota", headers=customer.auth).status_code == 200
    app.extensions[QUOTA_EXTENSION].ledger.flush()

    runtime.redis.delete(counter_key(lost_redis.account.id, period))  # Redis lost this one
    runtime.redis.incrby(counter_key(lagging_ledger.account.id, period), 5)  # ledger trails

    dry = json.loads(run("quota", "reconcile", "--dry-run", "--json").output)
    assert dry["period"] == period.label
    assert dry["repaired"] is False
    drifted = {d["account_id"]: d for d in dry["drifted"]}
    assert set(drifted) == {str(lost_redis.account.id), str(lagging_ledger.account.id)}
    assert drifted[str(lost_redis.account.id)]["redis"] is None
    assert drifted[str(lost_redis.account.id)]["ledger"] == 4
    assert drifted[str(lagging_ledger.account.id)]["difference"] == 5
    assert runtime.redis.get(counter_key(lost_redis.account.id, period)) is None

    fixed = run("quota", "reconcile")
    assert fixed.exit_code == 0
    assert "2 drifted" in fixed.output
    assert int(runtime.redis.get(counter_key(lost_redis.account.id, period))) == 4
    assert runtime.redis.ttl(counter_key(lost_redis.account.id, period)) > 0
    assert _ledger(runtime, lagging_ledger.account.id, period.first_day) == 8

    again = json.loads(run("quota", "reconcile", "--json").output)
    assert again["drifted"] == []


def test_reconcile_rejects_a_malformed_month(run) -> None:  # type: ignore[no-untyped-def]
    result = run("quota", "reconcile", "--month", "2026-13")
    assert result.exit_code == 2
    assert "YYYY-MM" in result.output


def test_a_counter_lost_with_its_ledger_is_rebuilt_from_the_event_log(
    app: Flask, runtime: Runtime, celery_worker: object
) -> None:
    """The ledger row is gone too (say, restored from an old backup): the log still knows."""
    from api.metering import EXTENSION as EVENTS

    customer = new_customer(runtime, plan="free")
    client = app.test_client()
    for _ in range(6):
        client.get("/api/v1/account/quota", headers=customer.auth)
    assert app.extensions[EVENTS].drain(timeout=15, verified=True)  # all six are in the log
    app.extensions[QUOTA_EXTENSION].ledger.flush()
    period = period_containing(datetime.now(UTC))
    with runtime.database.connection() as conn:
        conn.execute("DELETE FROM quota_usage WHERE account_id = %s", (customer.account.id,))
    runtime.redis.delete(counter_key(customer.account.id, period))
    assert client.get("/api/v1/account/quota", headers=customer.auth).get_json()["used"] == 7
