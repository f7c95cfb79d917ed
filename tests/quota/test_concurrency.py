"""1,100 concurrent calls through several web processes against a 1,000-call plan."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests

from tests.support.accounts import new_customer
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota.admission import counter_key
from timo_hub.quota.period import period_containing

pytestmark = pytest.mark.slow

CALLS = 1100
LIMIT = 1000


def test_exactly_the_limit_is_admitted_with_unique_remaining_values(
    settings: Settings, runtime: Runtime
) -> None:
    customer = new_customer(runtime, plan="free")
    local = threading.local()

    with web_process(settings, workers=2) as first, web_process(settings, workers=2) as second:
        bases = [first, second]

        def call(i: int) -> tuple[int, int]:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            response = session.get(
                f"{bases[i % 2]}/api/v1/account/quota", headers=customer.auth, timeout=30
            )
            return response.status_code, int(response.headers["X-RateLimit-Remaining"])

        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(call, range(CALLS)))

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: LIMIT, 429: CALLS - LIMIT}
    remaining = sorted((r for status, r in results if status == 200), reverse=True)
    assert remaining == list(range(LIMIT - 1, -1, -1))  # 999 … 0, each exactly once
    assert all(r == 0 for status, r in results if status == 429)

    period = period_containing(datetime.now(UTC))
    assert int(runtime.redis.get(counter_key(customer.account.id, period))) == LIMIT
    # Every web process wrote its tally to the ledger before it exited.
    with runtime.database.connection() as conn:
        ledger = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s", (customer.account.id,)
        ).fetchone()
    assert ledger == (LIMIT,)
