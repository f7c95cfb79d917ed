"""A stored forecast is served only while the history it was computed from is unchanged, and
`/usage/forecast` keeps up with the quota counter that `/account/quota` reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from click.testing import Result
from flask.testing import FlaskClient

from events.ingest import ingest_message
from events.partitions import PartitionRegistry
from tests.support.accounts import Customer, new_customer
from tests.support.events import make_event, seed_calls
from timo_hub.platform.runtime import Runtime
from timo_hub.quota import reconcile
from timo_hub.quota.counting import COUNTED_STATUS
from timo_hub.quota.period import period_containing
from timo_hub.usage import forecast_body, forecast_store, forecasts


def forecast(client: FlaskClient, customer: Customer) -> dict:
    response = client.get("/api/v1/usage/forecast", headers=customer.auth)
    assert response.status_code == 200
    return response.get_json()


def stored_generated_at(runtime: Runtime, customer: Customer) -> list[datetime]:
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT generated_at FROM forecasts WHERE account_id = %s", (customer.account.id,)
        )
        return [row[0] for row in rows]


def counted_this_month(runtime: Runtime, customer: Customer) -> int:
    today = datetime.now(UTC).date()
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM usage_daily WHERE account_id = %s AND day >= %s "
            f"AND {COUNTED_STATUS}",
            (customer.account.id, today.replace(day=1)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def ingest_late(runtime: Runtime, customer: Customer, day: date, status: int) -> None:
    """One event of `day` through the workers' ingest, as a late-shipped batch arrives."""
    event = make_event(
        customer.account.id,
        occurred_at=datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
        status=status,
        key_id=uuid.UUID(customer.key_id),
    )
    result = ingest_message(runtime.database, PartitionRegistry(), [event.to_json()])
    assert result.appended == 1


def test_a_forecast_made_before_an_import_is_not_served_after_it(
    run: Callable[..., Result], client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    """The defect as a new user met it: `make demo-history` imported 120 days of events a minute
    after the first look at the forecast, and the stored "No calls yet" one (history_days 0) was
    served for the rest of the day."""
    empty = forecast(client, customer)
    assert empty["history_days"] == 0 and empty["model"] == "none"

    # What `make demo-history` runs: `timo-hub events sample --days 120 | timo-hub events import -`.
    sampled = run("events", "sample", "--account", str(customer.account.id), "--days", "120")
    assert sampled.exit_code == 0, sampled.output
    imported = run("events", "import", "-", input=sampled.stdout)
    assert imported.exit_code == 0, imported.output

    after = forecast(client, customer)
    assert after["generated_at"] != empty["generated_at"]
    assert after["history_days"] >= 118  # the creation day and the partial ones aside
    assert after["model"] in ("linear", "seasonal") and after["accuracy"] is not None
    assert after["current_month"]["used"] == counted_this_month(runtime, customer)
    made_at = datetime.fromisoformat(after["generated_at"])
    assert stored_generated_at(runtime, customer) == [made_at]

    # Unchanged history: served from storage, not recomputed.
    again = forecast(client, customer)
    assert again == after
    assert stored_generated_at(runtime, customer) == [made_at]


def test_a_late_event_for_a_past_day_makes_the_stored_forecast_stale(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    seed_calls(runtime, customer.account.id, {today - timedelta(days=n): 40 for n in range(1, 29)})
    first = forecast(client, customer)
    assert first["history_days"] == 28

    # A refusal is not a counted call: history unchanged, the stored body is served.
    ingest_late(runtime, customer, yesterday, status=429)
    assert forecast(client, customer) == first
    # Nor are today's calls history (they move the month's count, which has its own rule).
    seed_calls(runtime, customer.account.id, {today: 5})
    assert forecast(client, customer) == first

    ingest_late(runtime, customer, yesterday, status=200)
    late = forecast(client, customer)
    assert late["generated_at"] != first["generated_at"]
    assert late["current_month"]["used"] == counted_this_month(runtime, customer)

    # A backfill of a day long past, inside the history a forecast reads, too.
    ingest_late(runtime, customer, today - timedelta(days=200), status=200)
    backfilled = forecast(client, customer)
    assert backfilled["generated_at"] != late["generated_at"]
    assert forecast(client, customer) == backfilled


def test_the_digest_in_sql_matches_the_one_stored(runtime: Runtime) -> None:
    """`FRESH_FORECAST`'s SQL and `history_digest`'s Python must agree byte for byte, on an
    empty history too, or no stored forecast would ever be served again."""
    customer = new_customer(runtime)
    now = datetime(2026, 4, 20, 9, tzinfo=UTC)
    today = now.date()
    for history in ({}, {today - timedelta(days=3): 7, date(2025, 11, 2): 1234}):
        seed_calls(runtime, customer.account.id, history)
        seed_calls(runtime, customer.account.id, {today - timedelta(days=1): 2}, status=503)
        made = forecasts.get_forecast(
            runtime.database, customer.account.id, days=7, model="auto", now=now
        )
        with runtime.database.connection() as conn:
            stored = forecast_store.fresh_forecast(
                conn,
                customer.account.id,
                today,
                7,
                "auto",
                customer.account.monthly_limit,
                forecast_body.SCHEMA_VERSION,
                forecasts.history_first(today),
            )
        assert stored == made.model_dump(mode="json")


def test_the_forecast_keeps_up_with_the_quota_counter(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    """`/usage/forecast` passes the quota counter's count of the month: once `/account/quota`
    is ahead of the stored body by more than 2% of the limit, the body is recomputed."""
    today = datetime.now(UTC).date()
    first = forecast(client, customer)
    # Today's calls, ingested (an import, or events the pipeline caught up with); the counter
    # learns of them from the log (the reconcile task, every minute).
    seed_calls(runtime, customer.account.id, {today: 1500})
    reconcile.reconcile(runtime, period_containing(datetime.now(UTC)))
    quota = client.get("/api/v1/account/quota", headers=customer.auth).get_json()
    assert quota["used"] >= 1500

    after = forecast(client, customer)
    assert after["generated_at"] != first["generated_at"]
    # What the forecast counts trails the counter only by the calls of this test, whose events
    # no worker ships here.
    assert 0 <= quota["used"] - after["current_month"]["used"] <= 4
