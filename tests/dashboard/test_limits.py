"""Both windows of the limits on the dashboard (issue 17): the month's quota and the burst window,
with the counts the admission script keeps, and the pages that explain them."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.dashboard import display
from api.gate import QUOTA_EXTENSION
from tests.support import dashboard as ui
from tests.support.waiting import eventually
from timo_hub.accounts import service
from timo_hub.people import store as people_store
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admission, BurstWindow
from timo_hub.quota.enforcer import QuotaEnforcer
from timo_hub.quota.period import period_containing

CALL = "/api/v1/account"
QUOTA = "/api/v1/account/quota"


def _account_id(runtime: Runtime, email: str) -> uuid.UUID:
    with runtime.database.connection() as conn:
        user = people_store.find_user_by_email(conn, email)
    assert user is not None
    return user.account_id


def _fresh_minute(runtime: Runtime, needed: float) -> None:
    """Wait, if need be, for a minute (Redis's clock: the burst window's) with `needed` seconds
    left, so that the calls of a test all land in one window."""
    seconds, micros = runtime.redis.time()
    left = 60 - (seconds + micros / 1_000_000) % 60
    if left < needed:
        time.sleep(left + 0.05)


def _text(client: FlaskClient, path: str) -> str:
    """The page at `path`, its whitespace runs made single spaces."""
    answer = client.get(path)
    assert answer.status_code == 200, path
    return " ".join(answer.get_data(as_text=True).split())


def _free_account_with_key(client: FlaskClient) -> dict[str, str]:
    """Sign up (the Free plan: 1,000 calls a month, 60 a minute); the auth header of a key."""
    ui.sign_up(client)
    return {"Authorization": f"Bearer {ui.create_key(client)}"}


def test_the_overview_shows_the_burst_window_as_the_api_counts_it(
    client: FlaskClient, runtime: Runtime
) -> None:
    auth = _free_account_with_key(client)
    _fresh_minute(runtime, needed=15)
    for _ in range(3):
        assert client.get(CALL, headers=auth).status_code == 200
    page = _text(client, "/dashboard")
    assert 'id="burst-heading">Burst limit<' in page
    assert "<strong>60</strong> calls per minute" in page
    assert '<meter class="gauge" id="burst-gauge" min="0" max="60" value="3"' in page
    used = "<strong>3</strong> of 60 calls used in the current minute, <strong>57</strong> left."
    assert used in page
    # The month counted the same three calls.
    assert "<strong>3</strong> of 1,000 calls used" in page
    # The window ends on the next whole minute, and the page says when.
    shown = re.search(r'id="burst-reset">.*?<time datetime="([^"]+)">([\d:]+ UTC)</time>', page)
    assert shown, page
    reset = datetime.strptime(shown.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert reset.second == 0 and 0 < (reset - datetime.now(UTC)).total_seconds() <= 60
    assert shown.group(2) == reset.strftime("%H:%M:%S UTC")
    in_seconds = re.search(r"\((\d+) s after this page was made\)", page)
    assert in_seconds and 1 <= int(in_seconds.group(1)) <= 60

    # The API's own account of the window (this call included) agrees with the page's.
    body = client.get(QUOTA, headers=auth).get_json()
    assert body["burst"]["used"] == 4 and body["burst"]["limit"] == 60
    assert body["burst"]["reset"] == int(reset.timestamp())
    assert "<strong>4</strong> of 60 calls used in the current minute" in _text(
        client, "/dashboard"
    )


def test_a_spent_burst_window_says_so_and_costs_the_month_nothing(
    client: FlaskClient, runtime: Runtime
) -> None:
    auth = _free_account_with_key(client)
    _fresh_minute(runtime, needed=30)
    statuses = [client.get(CALL, headers=auth).status_code for _ in range(63)]
    assert statuses == [200] * 60 + [429] * 3
    page = _text(client, "/dashboard")
    used = "<strong>60</strong> of 60 calls used in the current minute, <strong>0</strong> left."
    assert used in page
    assert "Calls are refused until the next minute starts, at <time" in page
    assert "<strong>60</strong> of 1,000 calls used" in page  # the three refusals are not charged


def test_calls_we_answer_with_a_server_error_are_not_charged(
    app: Flask, client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = _free_account_with_key(client)
    _fresh_minute(runtime, needed=20)
    for _ in range(2):
        assert client.get(CALL, headers=auth).status_code == 200

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(service, "list_keys", broken)
    assert client.get("/api/v1/auth/keys", headers=auth).status_code == 500
    monkeypatch.undo()
    # The refund reaches Redis once the ledger has recorded it.
    enforcer: QuotaEnforcer = app.extensions[QUOTA_EXTENSION]
    enforcer.ledger.flush()

    def both_windows_say_two() -> bool:
        page = _text(client, "/dashboard")
        return (
            "<strong>2</strong> of 60 calls used in the current minute" in page
            and "<strong>2</strong> of 1,000 calls used" in page
        )

    eventually(both_windows_say_two, timeout=5)


def test_no_burst_limit_and_an_accounts_own_limits(client: FlaskClient, runtime: Runtime) -> None:
    account_id = _account_id(runtime, ui.sign_up(client))
    with runtime.database.connection() as conn:
        conn.execute("UPDATE accounts SET plan = 'enterprise' WHERE id = %s", (account_id,))
    page = _text(client, "/dashboard")
    assert '<p id="burst-text"><strong>No burst limit</strong>' in page
    assert 'id="burst-gauge"' not in page
    assert "no burst limit" in _text(client, "/dashboard/keys")

    # An operator's limits for the account: the pages show those in force, not the plan's.
    service.set_limits(runtime, account_id, {"month": 2_000_000, "burst": 120})
    page = _text(client, "/dashboard")
    assert "<strong>120</strong> calls per minute" in page
    assert "<strong>0</strong> of 120 calls used in the current minute" in page
    assert "0</strong> of 2,000,000 calls used" in page
    keys = _text(client, "/dashboard/keys")
    assert "<strong>2,000,000</strong> calls a month and <strong>120</strong> calls per minute" in (
        keys
    )
    plans = _text(client, "/dashboard/plans")
    assert (
        'id="own-limits">Your account has its own limits, set by our operators: 2,000,000 calls '
        "a month and 120 calls per minute." in plans
    )

    with runtime.database.connection() as conn:
        conn.execute("UPDATE accounts SET plan = 'free' WHERE id = %s", (account_id,))
    service.set_limits(runtime, account_id, {"month": "plan", "burst": "unlimited"})
    page = _text(client, "/dashboard")
    assert "<strong>No burst limit</strong>: your calls are not limited per minute, only by" in page
    assert "of 1,000 calls used" in page


def test_the_plans_and_settings_pages_explain_both_limits(client: FlaskClient) -> None:
    ui.sign_up(client)
    plans = _text(client, "/dashboard/plans")
    assert '<th class="num">Burst limit</th>' in plans
    for limit in ("60 / minute", "300 / minute", "1,000 / minute", "5,000 / minute"):
        assert f'<td class="num" data-label="Burst limit">{limit}</td>' in plans, limit
    enterprise = re.search(r'<td data-label="Plan">Enterprise</td>(.*?)</tr>', plans)
    assert enterprise and 'data-label="Burst limit">None</td>' in enterprise.group(1)
    # On a phone each plan is a card of its own (the stylesheet stacks the cells by their labels).
    assert 'class="data plans stack-on-phone" id="plans-table"' in plans
    assert 'id="own-limits"' not in plans  # the Free plan's own limits
    assert "server error (<code>5xx</code>) are not charged" in plans
    keys = _text(client, "/dashboard/keys")
    assert "<strong>1,000</strong> calls a month and <strong>60</strong> calls per minute" in keys
    assert "server error (5xx) are not charged" in keys
    overview = _text(client, "/dashboard")
    assert "calls we answer with a server error (5xx): those are not charged" in overview
    usage = _text(client, "/dashboard/usage")
    assert "5xx, not charged" in usage


def test_the_burst_gauge_in_words() -> None:
    period = period_containing(datetime.now(UTC))
    window = BurstWindow(limit=60, used=60, seconds=60, number=29_000_000, ends_in=0.2)
    full = display.burst_gauge(Admission(False, 5, 1_000, period, burst=window))
    assert full is not None
    assert (full.used_up, full.remaining, full.percent, full.resets_in) == (True, 0, 100.0, 1)
    assert full.resets_at == datetime.fromtimestamp(29_000_001 * 60, UTC)
    assert display.burst_gauge(Admission(False, 5, 1_000, period)) is None
    closed = BurstWindow(limit=0, used=0, seconds=60, number=1, ends_in=30)
    gauge = display.burst_gauge(Admission(False, 0, 1_000, period, burst=closed))
    assert gauge is not None and gauge.percent == 100.0 and gauge.used_up
    words = [display.window_name(s) for s in (1, 10, 60, 300, 3600)]
    assert words == ["second", "10-second window", "minute", "5-minute window", "hour"]
