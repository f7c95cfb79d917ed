"""What the API answers, as typed models (unknown fields are kept, so newer servers still parse)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class RateLimitWindow(_Model):
    """One window of the account's limits (a quota policy of the IETF draft), as the
    `RateLimit-Policy` and `RateLimit` headers of one response described it."""

    policy: str
    """The policy's name: `month` or `burst` (newer servers may add others)."""
    limit: int | None
    """Calls the window admits (the policy's `q`); None if the server did not say."""
    window_seconds: int | None
    """The window's length in seconds (`w`; for the month, this month's length)."""
    remaining: int | None
    """Calls the window still admits (`r`); None if the server did not say."""
    reset_after: int | None
    """Seconds from the response until the window admits calls again (`t`): the next burst
    window, or the next month."""
    reset: int | None
    """The same moment as epoch seconds: the response's `Date` plus `reset_after` (the server's
    clock, like `X-RateLimit-Reset`; this client's when the response has no `Date`)."""


class RateLimit(_Model):
    """The rate-limit headers of the last authenticated response.

    `limit`, `remaining` and `reset` are the month's, from `X-RateLimit-*`, as they always were.
    `windows` holds every window the `RateLimit-Policy` and `RateLimit` headers described, by
    policy name; `month` and `burst` are the two the API has today. A window without a limit
    (the month on an unlimited plan, the burst window on a plan without one) is not described:
    it is None.
    """

    limit: int | None
    """None: unlimited."""
    remaining: int | None
    reset: int | None
    windows: dict[str, RateLimitWindow] = Field(default_factory=dict)

    @property
    def month(self) -> RateLimitWindow | None:
        """The month's window; None when the month is unlimited."""
        return self.windows.get("month")

    @property
    def burst(self) -> RateLimitWindow | None:
        """The burst window (a minute by default); None when the account has no burst limit."""
        return self.windows.get("burst")


class Health(_Model):
    """`GET /health`."""

    status: str
    version: str
    checks: dict[str, dict[str, Any]]
    workers: dict[str, Any]


class Plan(_Model):
    """A plan."""

    name: str
    monthly_limit: int | None
    price_usd: float | None
    burst_limit: int | None = None
    """Calls per burst window in force; None: no burst limit (or a server older than them)."""
    burst_window_seconds: int | None = None


class Account(_Model):
    """`GET /account`."""

    id: uuid.UUID
    email: str
    plan: Plan
    status: str
    created_at: datetime


class BurstWindow(_Model):
    """The current burst window, as `GET /account/quota` gives it."""

    limit: int
    window_seconds: int
    used: int
    """Calls admitted in this window, the quota call included."""
    remaining: int
    reset: int
    """Epoch seconds when the next window starts."""


class Quota(_Model):
    """`GET /account/quota`."""

    limit: int | None
    used: int
    remaining: int | None
    reset: int
    period_start: datetime
    period_end: datetime
    burst: BurstWindow | None = None
    """None when the account has no burst limit (or the server is older than burst windows)."""


class ApiKey(_Model):
    """An API key as listed."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedApiKey(ApiKey):
    """A new key: `key` is the secret, shown only once."""

    key: str


class DailyUsage(_Model):
    """One day of usage statistics."""

    date: date
    calls: int
    errors: int
    rejected: int


class UsageStats(_Model):
    """`GET /usage/stats`."""

    period: str
    start: date
    end: date
    total_calls: int
    successful: int
    client_errors: int
    server_errors: int
    rejected: int
    charged: int | None = None
    """Calls counted against the quota (None from a server that does not say)."""
    daily: list[DailyUsage]
    average_per_day: float
    peak_day: dict[str, Any] | None
    by_endpoint: list[dict[str, Any]]
    by_key: list[dict[str, Any]]
    average_duration_ms: float | None
    change_vs_previous_period: float | None


class ForecastDay(_Model):
    """A forecast day with 80% and 95% intervals."""

    date: date
    predicted: float
    lower80: float
    upper80: float
    lower95: float
    upper95: float


class Forecast(_Model):
    """`GET /usage/forecast`."""

    model: str
    requested_model: str
    history_days: int
    generated_at: datetime
    days: int
    daily: list[ForecastDay]
    current_month: dict[str, Any]
    exhaustion_date: date | None
    exhaustion_range80: dict[str, Any]
    recommended_plan: Plan | None
    accuracy: dict[str, Any] | None
    note: str | None


class UsageAlert(_Model):
    """A projected-quota alert."""

    id: int
    month: date
    kind: str
    raised_at: datetime
    limit: int
    used: int
    projected_total: int
    exhaustion_date: date | None


class Webhook(_Model):
    """A webhook endpoint as listed (never its signing secret)."""

    id: uuid.UUID
    url: str
    description: str
    events: list[str]
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    """First of an unbroken run of failed attempts; five days of it disable the endpoint."""
    previous_secret_expires_at: datetime | None
    """After a rotation, until when the previous secret still signs too."""


class CreatedWebhook(Webhook):
    """A new (or rotated) endpoint: `secret` (`whsec_…`) verifies its deliveries, shown once."""

    secret: str


class WebhookAttempt(_Model):
    """One attempt of a delivery."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None
    status_code: int | None
    """The endpoint's HTTP status; None when none came (see `error`)."""
    latency_ms: int | None
    error: str | None
    response: str | None
    """The start of the endpoint's response body."""


class WebhookDelivery(_Model):
    """One event sent to one endpoint: `id` is the `webhook-id` header of every attempt."""

    id: str
    type: str
    state: str
    """`pending`, `succeeded` or `failed`."""
    attempts: list[WebhookAttempt]
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    payload: dict[str, Any]
    """What is sent: `{type, timestamp, data}`."""
