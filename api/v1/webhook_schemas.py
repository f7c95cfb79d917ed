"""Request and response bodies of `/api/v1/webhooks` and the alert thresholds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.query import WholeNumber
from timo_hub.platform.json_types import UtcDatetime
from timo_hub.webhooks import endpoints, store

EventType = Literal[
    "quota.threshold_reached",
    "quota.exhausted",
    "quota.exhaustion_projected",
    "key.created",
    "key.revoked",
]
DeliveryState = Literal["pending", "succeeded", "failed"]


class CreateWebhookIn(BaseModel):
    """Body of `POST /api/v1/webhooks`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks/timo",
                    "events": ["quota.threshold_reached", "quota.exhausted"],
                    "description": "Billing alerts",
                }
            ]
        },
    )

    url: str = Field(
        min_length=8,
        max_length=2000,
        description="Where to POST events: https, on a public address.",
    )
    events: list[EventType] = Field(
        min_length=1, max_length=5, description="The event types to send here."
    )
    description: str = Field("", max_length=endpoints.MAX_DESCRIPTION)


class WebhookOut(BaseModel):
    """A webhook endpoint as listed: never its signing secret."""

    id: uuid.UUID
    url: str
    description: str
    events: list[str]
    enabled: bool
    created_at: UtcDatetime
    disabled_at: UtcDatetime | None = Field(description="When it was disabled, if it is.")
    disabled_reason: str | None
    failing_since: UtcDatetime | None = Field(
        description="First of an unbroken run of failed attempts; five days of it disable the "
        "endpoint."
    )
    previous_secret_expires_at: UtcDatetime | None = Field(
        description="After a rotation, until when the previous secret still signs too."
    )

    @classmethod
    def of(cls, endpoint: store.Endpoint, now: datetime) -> WebhookOut:
        """Build from a stored endpoint."""
        overlap = endpoint.previous_secret_expires_at
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            events=endpoint.events,
            enabled=endpoint.disabled_at is None,
            created_at=endpoint.created_at,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
            failing_since=endpoint.failing_since,
            previous_secret_expires_at=overlap if overlap is not None and overlap > now else None,
        )


class WebhookSecretOut(WebhookOut):
    """An endpoint with its signing secret: only when created or rotated."""

    secret: str = Field(
        description="The signing secret (`whsec_…`); shown only now. Verify `webhook-signature` "
        "with it (Standard Webhooks)."
    )


class WebhookListOut(BaseModel):
    """`GET /api/v1/webhooks`."""

    webhooks: list[WebhookOut]


class AttemptOut(BaseModel):
    """One attempt of a delivery."""

    attempt: int
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = Field(description="Null while unanswered (or never).")
    status_code: int | None = Field(description="The endpoint's HTTP status; null: none came.")
    latency_ms: int | None
    error: str | None = Field(description="Why it failed without a status (timeout, refused).")
    response: str | None = Field(description="The start of the endpoint's response body.")


class DeliveryOut(BaseModel):
    """One event sent to one endpoint: its `webhook-id`, state and attempts."""

    id: str = Field(description="The `webhook-id` header of every attempt.")
    type: str
    state: DeliveryState
    attempts: list[AttemptOut]
    created_at: UtcDatetime
    next_attempt_at: UtcDatetime | None = Field(description="The next retry, while pending.")
    finished_at: UtcDatetime | None
    payload: dict[str, Any] = Field(description="What is sent: `{type, timestamp, data}`.")

    @classmethod
    def of(cls, delivery: store.Delivery, attempts: list[store.Attempt]) -> DeliveryOut:
        """Build from a stored delivery and its attempts."""
        return cls(
            id=delivery.id,
            type=delivery.type,
            state=delivery.state,  # type: ignore[arg-type]
            attempts=[
                AttemptOut(
                    attempt=a.attempt,
                    started_at=a.started_at,
                    finished_at=a.finished_at,
                    status_code=a.status_code,
                    latency_ms=a.latency_ms,
                    error=a.error,
                    response=a.response,
                )
                for a in attempts
            ],
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at if delivery.state == "pending" else None,
            finished_at=delivery.finished_at,
            payload=delivery.payload,
        )


class DeliveryListQuery(BaseModel):
    """Query of `GET /api/v1/webhooks/{webhookId}/deliveries`."""

    model_config = ConfigDict(extra="ignore")

    limit: WholeNumber = Field(
        50, ge=1, le=endpoints.MAX_DELIVERIES_LISTED, description="How many, newest first."
    )
    before: str | None = Field(
        None,
        pattern=r"^msg_[0-9a-f]{32}$",
        description="A delivery's id: list those older than it (the last id of a page pages on).",
    )


class DeliveryListOut(BaseModel):
    """`GET /api/v1/webhooks/{webhookId}/deliveries`."""

    deliveries: list[DeliveryOut]
    has_more: bool


class AlertThresholdsIn(BaseModel):
    """Body of `PUT /api/v1/account/alert-thresholds`."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"thresholds": [50, 80, 100]}]}
    )

    thresholds: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        max_length=10,
        description="Whole percentages of the monthly quota, 1 to 100; an empty list sends no "
        "`quota.threshold_reached`.",
    )


class AlertThresholdsOut(BaseModel):
    """`GET /api/v1/account/alert-thresholds`."""

    thresholds: list[int] = Field(description="Ascending, each once.")
