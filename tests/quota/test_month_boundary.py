"""A call that straddles 00:00 UTC on the 1st belongs to one month everywhere it is counted."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import time_machine
from flask import Flask

from api.gate import QUOTA_EXTENSION
from events.ingest import ingest
from events.partitions import PartitionRegistry
from events.spool import written_lines
from tests.support.accounts import new_customer
from tests.support.events import projection_counts
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import counter_key
from timo_hub.quota.period import period_containing

QUOTA = "/api/v1/account/quota"
# The real current month (Redis expires counters by its own clock, so a month long past would
# lose its counter at once) and the midnight that ends it.
THIS_MONTH = period_containing(datetime.now(UTC))
NEXT_MONTH = period_containing(THIS_MONTH.end)
MIDNIGHT = THIS_MONTH.end


def _spooled_lines(home: Path) -> list[str]:
    lines = []
    for segment in sorted((home / "spool" / "events").glob("*.jsonl")):
        lines += written_lines(segment)
    return lines


def _ledger(runtime: Runtime, account_id: uuid.UUID) -> dict[date, int]:
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT period, used FROM quota_usage WHERE account_id = %s", (account_id,)
        ).fetchall()
    return {period: int(used) for period, used in rows}


def test_a_call_straddling_midnight_on_the_first_counts_in_the_month_it_began(
    app: Flask, runtime: Runtime
) -> None:
    """Guards against the split month: the event's `occurred_at` was taken when the request
    began but the quota period was read later, at admission, so a call that began at 23:59:59.9
    on the last day and was admitted after 00:00 counted in month N+1 for the quota and in
    month N in the log and `usage_daily`."""
    customer = new_customer(runtime, plan="free")
    began = MIDNIGHT - timedelta(milliseconds=100)
    with time_machine.travel(began, tick=False) as clock:

        @app.before_request
        def _cross_midnight() -> None:
            # Runs after the gate has opened the request (its clock read 23:59:59.9) and before
            # it authenticates and admits the call: everything from here on reads 00:00:00.4.
            clock.move_to(MIDNIGHT + timedelta(milliseconds=400))

        straddling = app.test_client().get(QUOTA, headers=customer.auth)
        # A call that begins after midnight belongs to the new month.
        after_midnight = app.test_client().get(QUOTA, headers=customer.auth)

    assert straddling.status_code == after_midnight.status_code == 200
    body = straddling.get_json()
    assert (body["used"], body["period_start"], body["reset"]) == (
        1,
        THIS_MONTH.start.isoformat().replace("+00:00", "Z"),
        THIS_MONTH.reset_epoch,
    )
    assert straddling.headers["X-RateLimit-Reset"] == str(THIS_MONTH.reset_epoch)
    assert after_midnight.get_json()["period_start"] == NEXT_MONTH.start.isoformat().replace(
        "+00:00", "Z"
    )
    # The Redis counters: one call in each month, the straddling one in the month it began.
    account = customer.account.id
    assert int(runtime.redis.get(counter_key(account, THIS_MONTH))) == 1
    assert int(runtime.redis.get(counter_key(account, NEXT_MONTH))) == 1

    # The durable ledger agrees.
    app.extensions[QUOTA_EXTENSION].ledger.flush()
    assert _ledger(runtime, account) == {THIS_MONTH.first_day: 1, NEXT_MONTH.first_day: 1}

    # And so do the event's `occurred_at` and its day in `usage_daily`.
    lines = _spooled_lines(app.extensions["timo"].settings.home)
    request_id = straddling.headers["X-Request-ID"]
    (event,) = [json.loads(line) for line in lines if json.loads(line)["request_id"] == request_id]
    assert event["occurred_at"] == began.isoformat(timespec="microseconds").replace("+00:00", "Z")
    ingest(runtime.database, PartitionRegistry(), lines)
    last_day = (MIDNIGHT - timedelta(days=1)).date().isoformat()
    assert projection_counts(runtime) == {
        (str(account), last_day): 1,
        (str(account), NEXT_MONTH.first_day.isoformat()): 1,
    }
