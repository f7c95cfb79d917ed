"""`timo-hub quota reconcile`: drift is reported, and repair only ever raises a counter."""

from __future__ import annotations

import json
import time
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


def test_reconcile_raises_only_counters_behind_and_never_the_ledger(
    run, app: Flask, runtime: Runtime
) -> None:  # type: ignore[no-untyped-def]
    """Guards against reconcile copying Redis into the additive ledger (which web processes
    then add their own tallies on top of: usage inflated) and against it seeding a missing
    counter without the tallies still held in memory."""
    period = period_containing(datetime.now(UTC))
    lowered, ahead, lost, in_step = (new_customer(runtime) for _ in range(4))
    client = app.test_client()
    for customer, calls in ((lowered, 5), (ahead, 3), (lost, 4), (in_step, 2)):
        for _ in range(calls):
            assert client.get("/api/v1/account/quota", headers=customer.auth).status_code == 200
    app.extensions[QUOTA_EXTENSION].ledger.flush()
    # As the sync thread does once they expire: the counters hold the calls made, nothing ahead.
    app.extensions[QUOTA_EXTENSION].leases.end_due(time.monotonic(), every=True)

    runtime.redis.set(counter_key(lowered.account.id, period), 1, keepttl=True)  # an operator's SET
    runtime.redis.incrby(counter_key(ahead.account.id, period), 5)  # as if 5 tallies were in flight
    runtime.redis.delete(counter_key(lost.account.id, period))

    dry = json.loads(run("quota", "reconcile", "--dry-run", "--json").output)
    assert dry["period"] == period.label
    assert dry["dry_run"] is True
    assert dry["repaired"] == 0
    drifted = {d["account_id"]: d for d in dry["drifted"]}
    assert set(drifted) == {str(lowered.account.id), str(lost.account.id)}
    assert drifted[str(lowered.account.id)]["state"] == "behind"
    assert drifted[str(lowered.account.id)]["redis"] == 1
    assert drifted[str(lost.account.id)] | {"account_id": None} == {
        "account_id": None,
        "state": "missing",
        "redis": None,
        "ledger": 4,
        "log": 0,
        "repaired_to": None,
    }
    assert int(runtime.redis.get(counter_key(lowered.account.id, period))) == 1

    fixed = run("quota", "reconcile")
    assert fixed.exit_code == 0
    assert "2 drifted, 1 repaired" in fixed.output
    assert int(runtime.redis.get(counter_key(lowered.account.id, period))) == 5
    assert runtime.redis.ttl(counter_key(lowered.account.id, period)) > 0
    # Ahead is left alone, and the ledger is never raised to Redis.
    assert int(runtime.redis.get(counter_key(ahead.account.id, period))) == 8
    assert _ledger(runtime, ahead.account.id, period.first_day) == 3
    # Missing is left to the rebuild of the next call, which counts exactly.
    assert runtime.redis.get(counter_key(lost.account.id, period)) is None
    assert client.get("/api/v1/account/quota", headers=lost.auth).get_json()["used"] == 5

    again = json.loads(run("quota", "reconcile", "--json").output)
    assert again["drifted"] == []
    assert again["repaired"] == 0


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
