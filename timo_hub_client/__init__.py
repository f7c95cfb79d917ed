"""`timo_hub_client`: the official Python client of the Timo Hub API.

    from timo_hub_client import TimoHubClient, QuotaExceededError

    client = TimoHubClient()          # TIMO_API_URL and TIMO_API_KEY from the environment
    quota = client.quota()
    print(quota.used, "of", quota.limit)

Every method returns a typed model; errors raise a `TimoHubError` subclass carrying the problem
the API answered. `503` is retried with backoff (honouring `Retry-After`); `429` is never retried:
it raises `QuotaExceededError` with `reset` and `retry_after`, so a caller can wait instead of
hammering; a refusal by the burst window (a minute by default) raises its subclass
`BurstLimitExceededError`, whose `retry_after` is the seconds until the next window.
`client.rate_limit` holds the last response's rate-limit headers: the month's `limit`,
`remaining` and `reset`, and each window (`rate_limit.month`, `rate_limit.burst`).
"""

from timo_hub_client.client import TimoHubClient
from timo_hub_client.errors import (
    AuthenticationError,
    BurstLimitExceededError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    QuotaExceededError,
    RequestRejectedError,
    ServiceUnavailableError,
    TimoHubError,
)
from timo_hub_client.models import (
    Account,
    ApiKey,
    BurstWindow,
    CreatedApiKey,
    CreatedWebhook,
    Forecast,
    Health,
    Quota,
    RateLimit,
    RateLimitWindow,
    UsageAlert,
    UsageStats,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)

__all__ = [
    "Account",
    "ApiKey",
    "AuthenticationError",
    "BurstLimitExceededError",
    "BurstWindow",
    "ConflictError",
    "CreatedApiKey",
    "CreatedWebhook",
    "ForbiddenError",
    "Forecast",
    "Health",
    "NotFoundError",
    "Quota",
    "QuotaExceededError",
    "RateLimit",
    "RateLimitWindow",
    "RequestRejectedError",
    "ServiceUnavailableError",
    "TimoHubClient",
    "TimoHubError",
    "UsageAlert",
    "UsageStats",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
]
