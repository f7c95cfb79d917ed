"""The webhook requests Timo Hub sends, described for the OpenAPI document's top-level `webhooks`.

These models describe payloads; they validate nothing at run time. The payloads themselves are
built by `timo_hub.webhooks` (`event_types`, `notifications`, `endpoints.send_test`) and
`timo_hub.usage.alerts.exhaustion_data`; `tests/api/openapi/test_document.py` builds one of each
through that code and checks it against these schemas, field for field, so the two cannot drift.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from timo_hub.webhooks import event_types

TIMESTAMP = "2026-12-14T09:21:07.482Z"
ACCOUNT = "5b0c9f2e-8d1a-4c3b-9e6f-2a7d4b1c8e90"
QUOTA_EXAMPLE: dict[str, Any] = {
    "account_id": ACCOUNT,
    "limit": 1000,
    "used": 1000,
    "remaining": 0,
    "reset": 1798761600,
    "period_start": "2026-12-01T00:00:00Z",
    "period_end": "2027-01-01T00:00:00Z",
}
THRESHOLD_EXAMPLE: dict[str, Any] = {
    **QUOTA_EXAMPLE,
    "threshold": 80,
    "used": 800,
    "remaining": 200,
}
EXHAUSTION_EXAMPLE: dict[str, Any] = {
    "account_id": ACCOUNT,
    "month": "2026-12",
    "limit": 50000,
    "used": 31250,
    "exhaustion_date": "2026-12-24",
    "exhaustion_range80": {"earliest": "2026-12-21", "latest": "2026-12-28", "probability": 0.86},
    "projected_total": 61840.5,
    "projected_total_lower80": 55210.0,
    "projected_total_upper80": 68930.2,
}
KEY_EXAMPLE: dict[str, Any] = {
    "account_id": ACCOUNT,
    "id": "0d8e7f6a-5b4c-4d3e-9f2a-1b0c9d8e7f6a",
    "name": "ci deploys",
    "prefix": "timo_live_Xk3p",
    "created_at": "2026-12-14T09:20:55.120Z",
    "last_used_at": None,
    "revoked_at": None,
}
TEST_EXAMPLE: dict[str, Any] = {
    "account_id": ACCOUNT,
    "endpoint_id": "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
}


class QuotaWebhookData(BaseModel):
    """The month's usage at that moment, as `GET /api/v1/account/quota` gives it."""

    model_config = ConfigDict(json_schema_extra={"examples": [QUOTA_EXAMPLE]})

    account_id: uuid.UUID
    limit: int = Field(description="Calls allowed this UTC month.")
    used: int = Field(description="Calls counted so far this month.")
    remaining: int = Field(ge=0)
    reset: int = Field(description="Epoch seconds when the next UTC month (and quota) starts.")
    period_start: datetime
    period_end: datetime = Field(description="Start of the next UTC month (exclusive).")


class ThresholdWebhookData(QuotaWebhookData):
    """`quota.threshold_reached`: the percentage reached, and the month's usage."""

    model_config = ConfigDict(json_schema_extra={"examples": [THRESHOLD_EXAMPLE]})

    threshold: int = Field(
        ge=1, le=100, description="The alert threshold reached, in percent of `limit`."
    )


class ExhaustionRangeWebhookData(BaseModel):
    """The 80% range of the day the quota runs out, as `GET /api/v1/usage/forecast` gives it."""

    earliest: date | None = Field(description="10th percentile; null: unlikely this month.")
    latest: date | None = Field(description="90th percentile; null: may last the month.")
    probability: float | None = Field(ge=0, le=1, description="Chance of running out this month.")


class ExhaustionProjectedWebhookData(BaseModel):
    """`quota.exhaustion_projected`: the figures of `GET /api/v1/usage/forecast` that say so."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXHAUSTION_EXAMPLE]})

    account_id: uuid.UUID
    month: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$", description="The UTC month, `YYYY-MM`.")
    limit: int = Field(description="Calls allowed this UTC month.")
    used: int = Field(description="Calls counted so far this month.")
    exhaustion_date: date = Field(
        description="First day the month's calls are projected (median) to reach the limit."
    )
    exhaustion_range80: ExhaustionRangeWebhookData
    projected_total: float = Field(ge=0, description="Median projection of the month's calls.")
    projected_total_lower80: float = Field(ge=0)
    projected_total_upper80: float = Field(ge=0)


class KeyWebhookData(BaseModel):
    """`key.created`, `key.revoked`: the key as `GET /api/v1/auth/keys` lists it (no secret)."""

    model_config = ConfigDict(json_schema_extra={"examples": [KEY_EXAMPLE]})

    account_id: uuid.UUID
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it by.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = Field(description="Set in `key.revoked`.")


class TestWebhookData(BaseModel):
    """`webhook.test`: sent by `POST /webhooks/{webhookId}/test` only."""

    model_config = ConfigDict(json_schema_extra={"examples": [TEST_EXAMPLE]})

    account_id: uuid.UUID
    endpoint_id: uuid.UUID


def _envelope(kind: str, data: type[BaseModel], summary: str, example: Any) -> type[BaseModel]:
    """The `{type, timestamp, data}` model of one event type (`KeyCreatedWebhook`, …)."""
    name = "".join(part.title() for part in kind.replace(".", "_").split("_")) + "Webhook"
    return create_model(
        name,
        __doc__=summary,
        __module__=__name__,
        __config__=ConfigDict(
            json_schema_extra={
                "examples": [{"type": kind, "timestamp": TIMESTAMP, "data": example}]
            }
        ),
        type=(Literal[kind], ...),  # type: ignore[arg-type]
        timestamp=(datetime, Field(description="When it happened (UTC, milliseconds).")),
        data=(data, ...),
    )


@dataclass(frozen=True)
class WebhookEvent:
    """One kind of webhook request."""

    kind: str
    summary: str
    description: str
    payload: type[BaseModel]


EVENTS: tuple[WebhookEvent, ...] = tuple(
    WebhookEvent(kind, summary, description, _envelope(kind, data, summary, example))
    for kind, data, example, summary, description in (
        (
            event_types.THRESHOLD_REACHED,
            ThresholdWebhookData,
            THRESHOLD_EXAMPLE,
            "The month's usage reached one of the account's alert thresholds",
            "Noticed as the call that crosses it is admitted; the first attempt follows within "
            "seconds. Once per account, threshold and UTC month; the thresholds are 50, 80 and "
            "100 percent unless set with `PUT /account/alert-thresholds`.",
        ),
        (
            event_types.EXHAUSTED,
            QuotaWebhookData,
            QUOTA_EXAMPLE,
            "The first call of the month refused for the quota",
            "Once per account and UTC month: calls answer `429` until `reset`.",
        ),
        (
            event_types.EXHAUSTION_PROJECTED,
            ExhaustionProjectedWebhookData,
            EXHAUSTION_EXAMPLE,
            "The forecast now projects the quota to run out this month",
            "Once per account and UTC month, as soon as a forecast (refreshed during the day) "
            "projects an exhaustion date this month.",
        ),
        (
            event_types.KEY_CREATED,
            KeyWebhookData,
            KEY_EXAMPLE,
            "An API key was created",
            "By the API, the dashboard or an operator; once per key.",
        ),
        (
            event_types.KEY_REVOKED,
            KeyWebhookData,
            {**KEY_EXAMPLE, "revoked_at": "2026-12-14T09:21:07.470Z"},
            "An API key was revoked",
            "By the API, the dashboard or an operator; once per key.",
        ),
        (
            event_types.TEST,
            TestWebhookData,
            TEST_EXAMPLE,
            "A test event",
            "Sent only by `POST /webhooks/{webhookId}/test`, to that endpoint, whatever it "
            "subscribed to.",
        ),
    )
)
