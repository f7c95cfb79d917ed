"""`quota.exhaustion_projected`: announced the day a projected exhaustion becomes likely.

The nightly forecast says the month will last; a surge today, ingested for real, makes the
intraday refresh project exhaustion; the webhook follows with the forecast's own figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from tests.support.accounts import new_customer
from tests.support.events import seed_calls
from tests.support.webhook_receiver import WebhookReceiver
from timo_hub.platform.runtime import Runtime
from timo_hub.usage import forecasts, projection_refresh
from timo_hub.webhooks import delivery, endpoints


def test_a_surge_today_is_announced_today_with_the_forecasts_figures(runtime: Runtime) -> None:
    customer = new_customer(runtime, "free")
    account_id = customer.account.id
    now = datetime.now(UTC)
    today = now.date()
    with WebhookReceiver() as receiver:
        endpoint = endpoints.create(
            runtime.database,
            runtime.settings,
            account_id,
            url=receiver.url,
            events=["quota.exhaustion_projected"],
            description="",
            now=now,
        )
        seed_calls(runtime, account_id, {today - timedelta(days=n): 10 for n in range(1, 31)})
        forecasts.run_nightly(runtime.database, account_id, now)
        assert delivery.due(runtime.database, now + timedelta(seconds=1)) == []  # it will last

        seed_calls(runtime, account_id, {today: 900})
        later = now + timedelta(minutes=10)
        projection_refresh.refresh(runtime.database, later)

        (due,) = delivery.due(runtime.database, datetime.now(UTC))
        outcome = delivery.attempt_delivery(runtime.database, runtime.settings, due)
        assert outcome is not None and outcome.state == "succeeded"
        (request,) = receiver.wait_for(1)
        payload = Webhook(endpoint.secret).verify(request.body, request.headers)

    body = forecasts.get_forecast(runtime.database, account_id, days=30, model="auto", now=later)
    data = payload["data"]
    assert payload["type"] == "quota.exhaustion_projected"
    assert data["month"] == today.strftime("%Y-%m")
    assert body.exhaustion_date is not None
    assert data["exhaustion_date"] == body.exhaustion_date.isoformat()
    assert data["projected_total"] == body.current_month.projected_total
    assert data["limit"] == 1000
    range80 = body.exhaustion_range80
    assert data["exhaustion_range80"]["probability"] == range80.probability
    # Announced once a month, however often the projection is refreshed.
    projection_refresh.refresh(runtime.database, later + timedelta(hours=2))
    assert delivery.due(runtime.database, datetime.now(UTC) + timedelta(days=1)) == []
