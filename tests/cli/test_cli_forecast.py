"""`timo-hub forecast run`: every active account or one, and failures that stop nothing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result

from tests.support.accounts import new_customer
from tests.support.events import seed_calls
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.usage import forecasts


def stored(runtime: Runtime) -> set[uuid.UUID]:
    with runtime.database.connection() as conn:
        return {row[0] for row in conn.execute("SELECT account_id FROM forecasts")}


def test_runs_every_active_account(run: Callable[..., Result], runtime: Runtime) -> None:
    active = [new_customer(runtime) for _ in range(3)]
    suspended = new_customer(runtime)
    service.set_status(runtime, suspended.account.id, "suspended")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    seed_calls(
        runtime, active[0].account.id, {yesterday - timedelta(days=n): 20 for n in range(30)}
    )

    result = run("forecast", "run")

    assert result.exit_code == 0, result.output
    assert "forecast 3 account(s), 0 failed" in result.output
    assert stored(runtime) == {c.account.id for c in active}


def test_runs_one_account(run: Callable[..., Result], runtime: Runtime) -> None:
    one, other = new_customer(runtime), new_customer(runtime)
    result = run("forecast", "run", "--account", str(one.account.id))
    assert result.exit_code == 0, result.output
    assert stored(runtime) == {one.account.id}
    assert other.account.id not in stored(runtime)


def test_unknown_account_fails_with_exit_code_1(
    run: Callable[..., Result], runtime: Runtime
) -> None:
    result = run("forecast", "run", "--account", str(uuid.uuid4()))
    assert result.exit_code == 1
    assert "0 account(s), 1 failed" in result.output


def test_one_failing_account_does_not_stop_the_others(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    good = new_customer(runtime)
    missing = uuid.uuid4()
    with caplog.at_level(logging.ERROR, logger="timo_hub.usage.forecasts"):
        succeeded, failed = forecasts.run_all(
            runtime.database, [missing, good.account.id], datetime.now(UTC)
        )
    assert (succeeded, failed) == (1, 1)
    assert stored(runtime) == {good.account.id}
    assert any(str(missing) in record.getMessage() for record in caplog.records)
