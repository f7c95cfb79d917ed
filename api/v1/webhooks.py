"""`/api/v1/webhooks`: the caller's webhook endpoints, their delivery logs, replays and tests;
and `/api/v1/account/alert-thresholds`, where `quota.threshold_reached` fires."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from flask import current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from api.bodies import parse_body
from api.current import current_principal, current_runtime
from api.gate import DELIVERIES_EXTENSION
from api.openapi.registry import PathParameter, Reply, operation
from api.query import parse_query
from api.v1 import blueprint
from api.v1.webhook_schemas import (
    AlertThresholdsIn,
    AlertThresholdsOut,
    CreateWebhookIn,
    DeliveryListOut,
    DeliveryListQuery,
    DeliveryOut,
    WebhookListOut,
    WebhookOut,
    WebhookSecretOut,
)
from timo_hub.accounts import service as accounts
from timo_hub.webhooks import endpoints
from timo_hub.webhooks.dispatch import DeliveryQueue

WEBHOOK_ID = PathParameter(
    "webhookId", "The endpoint's id (from the list).", {"type": "string", "format": "uuid"}
)
DELIVERY_ID = PathParameter(
    "deliveryId",
    "The delivery's id (its `webhook-id`).",
    {"type": "string", "pattern": "^msg_[0-9a-f]{32}$"},
)
_DELIVERY_ID = re.compile(r"^msg_[0-9a-f]{32}$")


def _json(body: BaseModel, status: int = 200) -> ResponseReturnValue:
    response = current_app.response_class(body.model_dump_json(), mimetype="application/json")
    response.status_code = status
    return response


def _secret_json(body: WebhookSecretOut, status: int) -> ResponseReturnValue:
    response = _json(body, status)
    response.headers["Cache-Control"] = "no-store"  # type: ignore[union-attr]
    return response


def _endpoint_id(text: str) -> uuid.UUID:
    return accounts.parse_id(text, endpoints.EndpointNotFoundError, "webhook endpoint")


def _delivery_id(text: str) -> str:
    if not _DELIVERY_ID.match(text):
        raise endpoints.DeliveryNotFoundError(f"No delivery {text[:40]!r} to this endpoint.")
    return text


def _deliveries() -> DeliveryQueue:
    queue: DeliveryQueue = current_app.extensions[DELIVERIES_EXTENSION]
    return queue


@operation(
    blueprint,
    "POST",
    "/webhooks",
    summary="Register a webhook endpoint (its signing secret is shown only in this response)",
    tag="webhooks",
    body=CreateWebhookIn,
    replies=(
        Reply(
            201,
            "The endpoint, with its signing secret: store it now.",
            WebhookSecretOut,
            links={
                name: {
                    "operationId": operation_id,
                    "parameters": {"webhookId": "$response.body#/id"},
                    "description": f"The new endpoint's id {what}.",
                }
                for name, operation_id, what in (
                    ("GetWebhook", "get_webhook", "reads it"),
                    ("DeleteWebhook", "delete_webhook", "deletes it"),
                    ("RotateSecret", "rotate_webhook_secret", "rotates its secret"),
                    ("EnableWebhook", "enable_webhook", "enables it"),
                    ("TestWebhook", "test_webhook", "sends it a test event"),
                    ("ListDeliveries", "list_webhook_deliveries", "lists its deliveries"),
                )
            },
        ),
        Reply(409, "The account already has 10 endpoints."),
    ),
)
def create_webhook() -> ResponseReturnValue:
    """Events of the listed types are POSTed to `url`, signed the Standard Webhooks way.

    The URL must be https, and its host must resolve to public addresses only (private,
    loopback, link-local and cloud metadata addresses are refused), both now and at every
    delivery.
    """
    body = parse_body(CreateWebhookIn)
    runtime = current_runtime()
    now = datetime.now(UTC)
    endpoint = endpoints.create(
        runtime.database,
        runtime.settings,
        current_principal().account_id,
        url=body.url,
        events=body.events,
        description=body.description,
        now=now,
    )
    created = WebhookSecretOut(**WebhookOut.of(endpoint, now).model_dump(), secret=endpoint.secret)
    return _secret_json(created, 201)


@operation(
    blueprint,
    "GET",
    "/webhooks",
    summary="List your webhook endpoints",
    tag="webhooks",
    replies=(Reply(200, "Every endpoint, oldest first; never a secret.", WebhookListOut),),
)
def list_webhooks() -> ResponseReturnValue:
    """The caller's endpoints, disabled ones included (with why)."""
    runtime = current_runtime()
    now = datetime.now(UTC)
    found = endpoints.list_all(runtime.database, current_principal().account_id)
    return _json(WebhookListOut(webhooks=[WebhookOut.of(e, now) for e in found]))


@operation(
    blueprint,
    "GET",
    "/webhooks/<webhook_id>",
    summary="One webhook endpoint",
    tag="webhooks",
    path_parameters=(WEBHOOK_ID,),
    replies=(Reply(200, "The endpoint; never its secret.", WebhookOut),),
)
def get_webhook(webhook_id: str) -> ResponseReturnValue:
    """One of the caller's endpoints."""
    runtime = current_runtime()
    endpoint = endpoints.get(
        runtime.database, current_principal().account_id, _endpoint_id(webhook_id)
    )
    return _json(WebhookOut.of(endpoint, datetime.now(UTC)))


@operation(
    blueprint,
    "DELETE",
    "/webhooks/<webhook_id>",
    summary="Delete a webhook endpoint and its delivery log",
    tag="webhooks",
    path_parameters=(WEBHOOK_ID,),
    replies=(Reply(204, "Deleted; nothing more is sent to it."),),
)
def delete_webhook(webhook_id: str) -> ResponseReturnValue:
    """Delete one of the caller's endpoints; pending deliveries to it are dropped."""
    runtime = current_runtime()
    endpoints.delete(runtime.database, current_principal().account_id, _endpoint_id(webhook_id))
    return "", 204


@operation(
    blueprint,
    "POST",
    "/webhooks/<webhook_id>/rotate-secret",
    summary="Rotate the signing secret (the old one also signs for 24 hours)",
    tag="webhooks",
    path_parameters=(WEBHOOK_ID,),
    replies=(Reply(200, "The endpoint with its new secret: store it now.", WebhookSecretOut),),
)
def rotate_webhook_secret(webhook_id: str) -> ResponseReturnValue:
    """For 24 hours every delivery carries two signatures, one per secret, so a receiver can
    switch to the new secret whenever it likes within that time."""
    runtime = current_runtime()
    now = datetime.now(UTC)
    endpoint = endpoints.rotate_secret(
        runtime.database, current_principal().account_id, _endpoint_id(webhook_id), now
    )
    rotated = WebhookSecretOut(**WebhookOut.of(endpoint, now).model_dump(), secret=endpoint.secret)
    return _secret_json(rotated, 200)


@operation(
    blueprint,
    "POST",
    "/webhooks/<webhook_id>/enable",
    summary="Enable a disabled webhook endpoint",
    tag="webhooks",
    path_parameters=(WEBHOOK_ID,),
    replies=(Reply(200, "The endpoint, enabled.", WebhookOut),),
)
def enable_webhook(webhook_id: str) -> ResponseReturnValue:
    """An endpoint is disabled when it answers 410 Gone or fails every attempt for five days;
    once fixed, enable it here and replay what it missed from its delivery log."""
    runtime = current_runtime()
    endpoint = endpoints.enable(
        runtime.database, current_principal().account_id, _endpoint_id(webhook_id)
    )
    return _json(WebhookOut.of(endpoint, datetime.now(UTC)))


@operation(
    blueprint,
    "POST",
    "/webhooks/<webhook_id>/test",
    summary="Send a test event to a webhook endpoint",
    tag="webhooks",
    path_parameters=(WEBHOOK_ID,),
    replies=(
        Reply(202, "Queued: its first attempt follows within seconds.", DeliveryOut),
        Reply(409, "The endpoint is disabled."),
    ),
)
def test_webhook(webhook_id: str) -> ResponseReturnValue:
    """A `webhook.test` event, signed and retried like any other; see its delivery log."""
    runtime = current_runtime()
    delivery = endpoints.send_test(
        runtime.database,
        current_principal().account_id,
        _endpoint_id(webhook_id),
        datetime.now(UTC),
    )
    _deliveries().send([delivery.id])
    return _json(DeliveryOut.of(delivery, []), 202)


@operation(
    blueprint,
    "GET",
    "/webhooks/<webhook_id>/deliveries",
    summary="The delivery log of a webhook endpoint",
    tag="webhooks",
    query=DeliveryListQuery,
    path_parameters=(WEBHOOK_ID,),
    replies=(Reply(200, "Deliveries, newest first, each with every attempt.", DeliveryListOut),),
)
def list_webhook_deliveries(webhook_id: str) -> ResponseReturnValue:
    """Every attempt: when, the status or error, the latency, and the next retry."""
    query = parse_query(DeliveryListQuery)
    runtime = current_runtime()
    records = endpoints.deliveries(
        runtime.database,
        current_principal().account_id,
        _endpoint_id(webhook_id),
        limit=query.limit + 1,
        before=query.before,
    )
    listed = [DeliveryOut.of(r.delivery, r.attempts) for r in records[: query.limit]]
    return _json(DeliveryListOut(deliveries=listed, has_more=len(records) > query.limit))


@operation(
    blueprint,
    "POST",
    "/webhooks/<webhook_id>/deliveries/<delivery_id>/replay",
    summary="Send a delivery again, under the same webhook-id",
    tag="webhooks",
    path_parameters=(WEBHOOK_ID, DELIVERY_ID),
    replies=(
        Reply(202, "Queued again (or still being tried: then unchanged).", DeliveryOut),
        Reply(409, "The endpoint is disabled."),
    ),
)
def replay_webhook_delivery(webhook_id: str, delivery_id: str) -> ResponseReturnValue:
    """A new round of attempts with the same `webhook-id`, so a receiver that deduplicates
    by it is safe. Idempotent: replaying a delivery that is still pending changes nothing."""
    runtime = current_runtime()
    account_id = current_principal().account_id
    parsed_endpoint = _endpoint_id(webhook_id)
    delivery = endpoints.replay(
        runtime.database, account_id, parsed_endpoint, _delivery_id(delivery_id), datetime.now(UTC)
    )
    _deliveries().send([delivery.id])
    return _json(DeliveryOut.of(delivery, endpoints.attempts(runtime.database, delivery.id)), 202)


@operation(
    blueprint,
    "GET",
    "/account/alert-thresholds",
    summary="Where quota.threshold_reached fires",
    tag="webhooks",
    replies=(Reply(200, "Percentages of the monthly quota, ascending.", AlertThresholdsOut),),
)
def get_alert_thresholds() -> ResponseReturnValue:
    """The percentages of the monthly quota at which `quota.threshold_reached` is sent (each
    once a month); 50, 80 and 100 unless changed."""
    found = accounts.alert_thresholds(current_runtime(), current_principal().account_id)
    return _json(AlertThresholdsOut(thresholds=found))


@operation(
    blueprint,
    "PUT",
    "/account/alert-thresholds",
    summary="Set where quota.threshold_reached fires",
    tag="webhooks",
    body=AlertThresholdsIn,
    replies=(Reply(200, "The thresholds now in force.", AlertThresholdsOut),),
)
def put_alert_thresholds() -> ResponseReturnValue:
    """Replace the thresholds (whole percentages, 1 to 100, at most 10); effective on the next
    call. A threshold already passed this month fires within a minute, unless it fired before."""
    body = parse_body(AlertThresholdsIn)
    runtime = current_runtime()
    try:
        kept = accounts.set_alert_thresholds(
            runtime, current_principal().account_id, body.thresholds
        )
    except accounts.ChangeNotAnnouncedError as exc:
        kept = exc.committed
    return _json(AlertThresholdsOut(thresholds=kept))
