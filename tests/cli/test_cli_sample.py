"""`timo-hub events sample`: demo history that imports exactly once and feeds the analytics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from click.testing import Result
from flask.testing import FlaskClient

from tests.support.accounts import Customer
from timo_hub.platform.runtime import Runtime


def test_sample_history_imports_once_and_answers_stats_and_forecast(
    run: Callable[..., Result], runtime: Runtime, client: FlaskClient, customer: Customer
) -> None:
    sampled = run(
        "events", "sample", "--account", str(customer.account.id), "--days", "60", "--per-day", "40"
    )
    assert sampled.exit_code == 0, sampled.output
    lines = sampled.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert {e["account_id"] for e in events} == {str(customer.account.id)}
    assert {e["key_id"] for e in events} == {customer.key_id}
    first_day = datetime.now(UTC).date() - timedelta(days=59)
    assert min(e["occurred_at"][:10] for e in events) >= first_day.isoformat()
    # Same seed, same events: a second sample is identical.
    again = run(
        "events", "sample", "--account", str(customer.account.id), "--days", "60", "--per-day", "40"
    )
    assert again.stdout.splitlines()[:500] == lines[:500]

    imported = run("events", "import", "-", input=sampled.stdout)
    assert imported.exit_code == 0, imported.output
    assert f"appended {len(lines)}" in imported.output
    reimported = run("events", "import", "-", input=sampled.stdout)
    assert f"appended 0, duplicates {len(lines)}" in reimported.output

    stats = client.get("/api/v1/usage/stats?period=90d", headers=customer.auth).get_json()
    assert stats["total_calls"] == len(lines)
    assert stats["rejected"] == sum(e["status"] == 429 for e in events)
    assert stats["server_errors"] == sum(e["status"] >= 500 for e in events)
    forecast = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    assert forecast["model"] in ("linear", "seasonal")
    assert forecast["history_days"] >= 58
    assert forecast["accuracy"] is not None


def test_sample_needs_an_existing_account(run: Callable[..., Result], runtime: Runtime) -> None:
    result = run("events", "sample", "--account", str(uuid.uuid4()))
    assert result.exit_code == 2
    assert "no account" in result.output
    assert run("events", "sample").exit_code == 2  # no demo account in the test database
