"""`timo_hub_client` against the real app under gunicorn: every method, errors, retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from tests.support.web import web_process
from tests.support.webhook_receiver import WebhookReceiver
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks.delivery import attempt_delivery
from timo_hub_client import (
    AuthenticationError,
    BurstLimitExceededError,
    ConflictError,
    NotFoundError,
    QuotaExceededError,
    RequestRejectedError,
    ServiceUnavailableError,
    TimoHubClient,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    with web_process(settings) as base:
        yield base


class CountingSession(requests.Session):
    """A real session that counts the requests it sends (to see retries happen, or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.sent += 1
        return super().send(request, **kwargs)


def test_every_operation_returns_typed_models(
    server: str, runtime: Runtime, customer: Customer
) -> None:
    with TimoHubClient(server, customer.secret) as client:
        assert client.health().status == "ok"
        account = client.account()
        assert account.id == customer.account.id and account.plan.name == "developer"
        quota = client.quota()
        assert quota.limit == 50000 and quota.used == 2
        assert client.rate_limit is not None and client.rate_limit.remaining == 50000 - 2
        stats = client.usage_stats("7d")
        assert stats.period == "7d" and len(stats.daily) == 7
        forecast = client.usage_forecast(days=7)
        assert len(forecast.daily) == 7 and forecast.current_month["limit"] == 50000
        assert client.usage_alerts() == []
        created = client.create_key("from the client")
        assert created.key.startswith("timo_live_")
        keys = client.list_keys()
        assert keys[0].id == created.id
        client.revoke_key(created.id)
        revoked = next(k for k in client.list_keys() if k.id == created.id)
        assert revoked.revoked_at is not None
        assert client.openapi()["openapi"] == "3.1.0"


def test_base_url_and_key_from_the_environment(
    server: str, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMO_API_URL", server)
    monkeypatch.setenv("TIMO_API_KEY", customer.secret)
    assert TimoHubClient().account().email == customer.account.email


def test_problems_become_typed_errors(server: str, customer: Customer) -> None:
    with pytest.raises(AuthenticationError) as refused:
        TimoHubClient(server, "timo_live_not-a-key").account()
    assert refused.value.status == 401 and refused.value.request_id
    client = TimoHubClient(server, customer.secret)
    with pytest.raises(RequestRejectedError) as bad:
        client.usage_forecast(days=5)
    assert bad.value.errors[0]["field"] == "days"
    with pytest.raises(NotFoundError):
        client.revoke_key(uuid.uuid4())


def test_quota_exceeded_raises_with_reset_and_is_not_retried(server: str, runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="free")
    today = datetime.now(UTC).date()
    seed_calls(runtime, customer.account.id, {today: 1000})  # the month's quota, already used
    session = CountingSession()
    client = TimoHubClient(server, customer.secret, session=session, max_retries=3)
    with pytest.raises(QuotaExceededError) as exceeded:
        client.quota()
    error = exceeded.value
    assert session.sent == 1
    # The month's refusal keeps its own class: not the burst window's.
    assert type(error) is QuotaExceededError
    assert error.limit == 1000 and error.used == 1000
    assert error.policy == "month" and error.violated_policies == ["month"]
    assert error.reset is not None and error.reset > datetime.now(UTC).timestamp()
    # Until the month ends, plus up to a minute's spread (so that refused clients do not all
    # come back in its first second).
    assert error.retry_after is not None and 0 < error.retry_after <= 31 * 86400 + 60
    assert error.retry_after >= error.reset - datetime.now(UTC).timestamp() - 1
    assert client.rate_limit is not None and client.rate_limit.remaining == 0
    month = client.rate_limit.month
    assert month is not None and (month.limit, month.remaining) == (1000, 0)


def test_rate_limit_holds_both_windows_as_the_quota_body_gives_them(
    server: str, customer: Customer
) -> None:
    client = TimoHubClient(server, customer.secret)
    plan = client.account().plan
    assert (plan.burst_limit, plan.burst_window_seconds) == (1000, 60)
    quota = client.quota()
    limits = client.rate_limit
    assert limits is not None
    # The month, as X-RateLimit-* always gave it, and as RateLimit-Policy/RateLimit give it.
    assert (limits.limit, limits.remaining, limits.reset) == (50000, quota.remaining, quota.reset)
    month = limits.month
    assert month is not None and month.policy == "month"
    assert (month.limit, month.remaining) == (quota.limit, quota.remaining) == (50000, 50000 - 2)
    assert month.window_seconds == (quota.period_end - quota.period_start).total_seconds()
    assert month.reset is not None and abs(month.reset - quota.reset) <= 1
    # The burst window: this call and the account call before it, in the same minute unless the
    # minute turned between them.
    burst, body = limits.burst, quota.burst
    assert burst is not None and body is not None and burst.policy == "burst"
    assert (burst.limit, burst.window_seconds) == (body.limit, body.window_seconds) == (1000, 60)
    assert burst.remaining == body.remaining == 1000 - body.used and body.used in (1, 2)
    assert burst.reset_after is not None and 1 <= burst.reset_after <= 60
    assert burst.reset is not None and abs(burst.reset - body.reset) <= 1
    assert list(limits.windows) == ["month", "burst"]


def test_burst_refusal_raises_its_own_error_and_costs_nothing_from_the_month(
    server: str, runtime: Runtime
) -> None:
    # 60 calls a minute on the free plan. Fixed windows on the server's clock: should the minute
    # turn during the 61 calls (under a second), the 61st is admitted, and a new account starts
    # again after the turn, with the whole next minute ahead of it.
    for _ in range(3):
        customer = new_customer(runtime, plan="free")
        session = CountingSession()
        client = TimoHubClient(server, customer.secret, session=session, max_retries=3)
        windows = set()
        for _ in range(60):
            client.account()
            assert client.rate_limit is not None and client.rate_limit.burst is not None
            windows.add(client.rate_limit.burst.reset)
        try:
            client.account()
        except QuotaExceededError as refusal:
            error = refusal
            break
    else:
        pytest.fail("the 61st call of a minute was admitted, three times")
    refused = client.rate_limit
    assert refused is not None and refused.burst is not None
    windows.add(refused.burst.reset)
    assert max(windows) - min(windows) <= 1  # one window (`reset` is to the second)
    assert isinstance(error, BurstLimitExceededError)
    assert session.sent == 61  # a 429 is never retried
    assert error.status == 429 and error.type == "/problems/burst-limit-exceeded"
    assert error.policy == "burst" and error.violated_policies == ["burst"]
    assert (error.limit, error.used, error.window_seconds) == (60, 60, 60)
    assert error.retry_after is not None and 1 <= error.retry_after <= 60
    now = datetime.now(UTC).timestamp()
    assert error.reset is not None and 0 < error.reset - now <= 61
    assert abs(error.reset - (now + error.retry_after)) <= 2
    # The refused call cost nothing from the month: 60 calls counted, not 61.
    assert (refused.limit, refused.remaining) == (1000, 1000 - 60)
    assert refused.month is not None and refused.month.remaining == 1000 - 60
    assert (refused.burst.limit, refused.burst.remaining) == (60, 0)
    assert refused.burst.reset_after == error.retry_after


def test_unlimited_windows_are_not_described(server: str, runtime: Runtime) -> None:
    unlimited = TimoHubClient(server, new_customer(runtime, plan="enterprise").secret)
    quota = unlimited.quota()
    assert quota.limit is None and quota.burst is None
    limits = unlimited.rate_limit
    assert limits is not None and (limits.limit, limits.remaining) == (None, None)
    assert limits.windows == {} and limits.month is None and limits.burst is None
    # An enterprise contract with a burst limit of its own: the burst window alone.
    contract = new_customer(runtime, plan="enterprise", burst=100)
    client = TimoHubClient(server, contract.secret)
    assert client.account().plan.burst_limit == 100
    limits = client.rate_limit
    assert limits is not None and limits.limit is None and limits.month is None
    assert limits.burst is not None and (limits.burst.limit, limits.burst.remaining) == (100, 99)


def test_service_unavailable_is_retried_with_backoff(settings: Settings, runtime: Runtime) -> None:
    customer = new_customer(runtime)
    # The same database, but a Redis nobody listens on: every authenticated call answers 503.
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with web_process(broken, healthy=False) as base:
        session = CountingSession()
        waits: list[float] = []
        client = TimoHubClient(
            base,
            customer.secret,
            session=session,
            max_retries=2,
            backoff=0.01,
            sleep=waits.append,
        )
        with pytest.raises(ServiceUnavailableError) as unavailable:
            client.account()
    assert unavailable.value.status == 503
    assert session.sent == 3
    # The server says Retry-After: 1, which is longer than the client's own backoff.
    assert waits == [1.0, 1.0]


def test_webhook_endpoints_deliveries_and_replays(
    server: str, runtime: Runtime, settings: Settings, customer: Customer
) -> None:
    client = TimoHubClient(server, customer.secret)
    with WebhookReceiver() as receiver:
        url = receiver.url_for("/hooks/timo")
        created = client.create_webhook(url, ["quota.threshold_reached", "key.created"], "ops")
        assert created.secret.startswith("whsec_") and created.enabled
        assert created.events == ["quota.threshold_reached", "key.created"]
        assert created.url == url and created.description == "ops"
        (listed,) = client.list_webhooks()
        assert listed.id == created.id and "secret" not in listed.model_dump()
        assert client.get_webhook(created.id).url == url

        queued = client.test_webhook(created.id)
        assert queued.id.startswith("msg_") and queued.type == "webhook.test"
        assert queued.state == "pending" and queued.attempts == []
        # No worker runs here: make the attempt the worker would (a no-op if one got it first).
        attempt_delivery(runtime.database, settings, queued.id)
        (request,) = receiver.wait_for(1)
        verified = Webhook(created.secret).verify(request.body, request.headers)
        assert verified["type"] == "webhook.test"
        assert request.headers["webhook-id"] == queued.id

        (logged,) = client.webhook_deliveries(created.id, limit=10)
        assert logged.id == queued.id and logged.state == "succeeded"
        (attempt,) = logged.attempts
        assert attempt.attempt == 1 and attempt.status_code == 200
        assert attempt.latency_ms is not None and logged.next_attempt_at is None
        assert logged.payload["data"]["endpoint_id"] == str(created.id)

        rotated = client.rotate_webhook_secret(created.id)
        assert rotated.secret.startswith("whsec_") and rotated.secret != created.secret
        overlap = rotated.previous_secret_expires_at
        assert overlap is not None
        assert abs(overlap - datetime.now(UTC) - timedelta(hours=24)) < timedelta(minutes=1)

        replayed = client.replay_webhook_delivery(created.id, queued.id)
        assert replayed.id == queued.id and replayed.state == "pending"
        assert len(replayed.attempts) == 1  # the first round's attempt stays in the log
        attempt_delivery(runtime.database, settings, queued.id)
        _, again = receiver.wait_for(2)
        # The same webhook-id, signed by both secrets during the overlap: either verifies.
        assert again.headers["webhook-id"] == queued.id
        for secret in (created.secret, rotated.secret):
            assert Webhook(secret).verify(again.body, again.headers)["type"] == "webhook.test"

    assert client.enable_webhook(created.id).enabled  # already enabled: unchanged
    client.delete_webhook(created.id)
    assert client.list_webhooks() == []
    with pytest.raises(NotFoundError):
        client.get_webhook(created.id)


def test_webhook_errors(server: str, runtime: Runtime, customer: Customer) -> None:
    client = TimoHubClient(server, customer.secret)
    for url in ("ftp://x", "ftp://example.com/hooks"):
        with pytest.raises(RequestRejectedError) as refused:
            client.create_webhook(url, ["key.created"])
        assert refused.value.status == 422 and refused.value.errors[0]["field"] == "url"
    with pytest.raises(RequestRejectedError) as unknown:
        client.create_webhook("https://example.com/hooks", ["quota.nonsense"])
    assert unknown.value.status == 422 and unknown.value.errors[0]["field"] == "events.0"
    # Another account's endpoint does not exist for this one, whatever the operation.
    other = TimoHubClient(server, new_customer(runtime).secret)
    theirs = other.create_webhook("http://127.0.0.1:9/hook", ["key.created"]).id
    delivery = other.test_webhook(theirs).id
    for call in (
        lambda: client.get_webhook(theirs),
        lambda: client.delete_webhook(theirs),
        lambda: client.rotate_webhook_secret(theirs),
        lambda: client.enable_webhook(theirs),
        lambda: client.test_webhook(theirs),
        lambda: client.webhook_deliveries(theirs),
        lambda: client.replay_webhook_delivery(theirs, delivery),
    ):
        with pytest.raises(NotFoundError) as missing:
            call()
        assert missing.value.status == 404
    assert other.get_webhook(theirs).enabled
    with pytest.raises(NotFoundError):
        other.replay_webhook_delivery(theirs, "msg_" + "0" * 32)
    with pytest.raises(RequestRejectedError):
        other.webhook_deliveries(theirs, limit=0)


def test_too_many_endpoints_is_a_conflict(server: str, customer: Customer) -> None:
    client = TimoHubClient(server, customer.secret)
    for n in range(10):
        client.create_webhook(f"http://127.0.0.1:9/hook/{n}", ["key.revoked"])
    with pytest.raises(ConflictError) as full:
        client.create_webhook("http://127.0.0.1:9/hook/10", ["key.revoked"])
    assert full.value.status == 409


def test_private_addresses_are_refused_unless_the_operator_allows_them(
    settings: Settings, customer: Customer
) -> None:
    strict = settings.model_copy(update={"webhooks_allow_private": False})
    with web_process(strict) as base:
        client = TimoHubClient(base, customer.secret)
        for url in ("http://127.0.0.1:8080/hook", "https://169.254.169.254/latest"):
            with pytest.raises(RequestRejectedError) as refused:
                client.create_webhook(url, ["key.created"])
            assert refused.value.status == 422 and refused.value.errors[0]["field"] == "url"
        assert client.list_webhooks() == []


def test_alert_thresholds(server: str, customer: Customer) -> None:
    client = TimoHubClient(server, customer.secret)
    assert client.alert_thresholds() == [50, 80, 100]
    assert client.set_alert_thresholds([90, 25, 90]) == [25, 90]
    assert client.alert_thresholds() == [25, 90]
    assert client.set_alert_thresholds([]) == []
    with pytest.raises(RequestRejectedError) as refused:
        client.set_alert_thresholds([0, 101])
    assert refused.value.status == 422
    assert [e["field"] for e in refused.value.errors] == ["thresholds.0", "thresholds.1"]
    assert client.alert_thresholds() == []
