"""Concurrent calls through several web processes: 1,100 against a 1,000-call month, 200 in a
second against a 60-call burst window."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import http_sfv
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
    # The month is what is raced here: no burst window in the way.
    customer = new_customer(runtime, plan="free", burst="unlimited")
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


BURST_CALLS = 200
BURST_LIMIT = 60


def test_a_burst_window_admits_exactly_its_limit_and_the_month_is_charged_for_those_alone(
    settings: Settings, runtime: Runtime
) -> None:
    """200 calls in about a second over two gunicorn servers of two processes each, on a free
    plan (60 a minute): exactly 60 admitted, each with its own remaining count, and the month
    (counter, ledger, window ledger) charged exactly 60."""
    customer = new_customer(runtime, plan="free")
    local = threading.local()

    with web_process(settings, workers=2) as first, web_process(settings, workers=2) as second:
        bases = [first, second]
        for base in bases:  # warm: both servers up and answering before the burst
            requests.get(f"{base}/api/v1/health", timeout=30)
        seconds, _ = runtime.redis.time()
        if 60 - seconds % 60 < 15:  # all of it inside one window
            time.sleep(60 - seconds % 60 + 0.1)

        def call(i: int) -> tuple[int, int, int]:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            response = session.get(
                f"{bases[i % 2]}/api/v1/account/quota", headers=customer.auth, timeout=30
            )
            burst = http_sfv.List()
            burst.parse(response.headers["RateLimit"].encode())
            remaining = {item.value: item.params["r"] for item in burst}
            return (
                response.status_code,
                remaining["burst"],
                int(response.headers["X-RateLimit-Remaining"]),
            )

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(call, range(BURST_CALLS)))
        took = time.monotonic() - started

    print(f"{BURST_CALLS} calls in {took:.2f} s")
    assert took < 5
    statuses = Counter(status for status, _, _ in results)
    assert statuses == {200: BURST_LIMIT, 429: BURST_CALLS - BURST_LIMIT}
    remaining = sorted((r for status, r, _ in results if status == 200), reverse=True)
    assert remaining == list(range(BURST_LIMIT - 1, -1, -1))  # 59 … 0, each exactly once
    # Refused by the burst window, the month was not charged: 940 left, whoever answered.
    assert {month for status, _, month in results if status == 429} == {1000 - BURST_LIMIT}

    period = period_containing(datetime.now(UTC))
    assert int(runtime.redis.get(counter_key(customer.account.id, period))) == BURST_LIMIT
    with runtime.database.connection() as conn:
        ledger = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s", (customer.account.id,)
        ).fetchone()
        windows = conn.execute(
            "SELECT sum(used) FROM quota_window_usage WHERE account_id = %s",
            (customer.account.id,),
        ).fetchone()
    assert ledger == (BURST_LIMIT,)
    assert windows == (BURST_LIMIT,)
