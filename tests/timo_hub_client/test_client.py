"""`timo_hub_client` against the real app under gunicorn: every method, errors, retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub_client import (
    AuthenticationError,
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
    assert error.limit == 1000 and error.used == 1000
    assert error.reset is not None and error.reset > datetime.now(UTC).timestamp()
    assert error.retry_after is not None and 0 < error.retry_after <= 31 * 86400
    assert client.rate_limit is not None and client.rate_limit.remaining == 0


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
