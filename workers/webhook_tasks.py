"""Webhook tasks: send a delivery, queue what is due, catch up on missed quota events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
from celery import current_app, shared_task
from celery.app.task import Task
from psycopg_pool import PoolTimeout

from timo_hub.webhooks import catch_up as catching_up
from timo_hub.webhooks import delivery, metrics, retention
from timo_hub.webhooks.dispatch import DELIVER_TASK, WEBHOOKS_QUEUE_NAME

logger = logging.getLogger(__name__)

# A retry this soon is queued with a countdown right away; later ones wait for the dispatch run
# (a message held for hours in the broker would outlive the Redis transport's visibility timeout
# and be handed out again and again).
COUNTDOWN_MAX_SECONDS = 30.0
# The dispatch run leaves alone what came due this recently: it was just queued by whoever made
# it due, and queueing it twice only costs the second task a look.
DISPATCH_GRACE_SECONDS = 2.0


@shared_task(name=DELIVER_TASK, bind=True, max_retries=None, ignore_result=True)
def deliver(self: Task, delivery_id: str) -> dict[str, object]:
    """Make the next attempt of one delivery; acknowledged after its outcome is recorded."""
    app = current_app
    try:
        outcome = delivery.attempt_delivery(app.runtime.database, app.runtime.settings, delivery_id)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        # Nothing recorded, or the claim only: the delivery is due again once its claim lapses,
        # and the dispatch run sends it then; this retry is only quicker.
        raise self.retry(exc=exc, countdown=delivery.CLAIM_SECONDS) from exc
    if outcome is None:
        return {"delivery_id": delivery_id, "due": False}
    if outcome.retry_in is not None and outcome.retry_in <= COUNTDOWN_MAX_SECONDS:
        deliver.apply_async((delivery_id,), countdown=outcome.retry_in, queue=WEBHOOKS_QUEUE_NAME)
    return {
        "delivery_id": delivery_id,
        "attempt": outcome.attempt,
        "state": outcome.state,
        "status": outcome.status,
    }


@shared_task(name="timo.webhooks.dispatch_due", ignore_result=True)
def dispatch_due() -> dict[str, int]:
    """Queue every delivery that is due: retries, and first attempts nobody queued or finished."""
    now = datetime.now(UTC)
    due = delivery.due(
        current_app.runtime.database, now - timedelta(seconds=DISPATCH_GRACE_SECONDS)
    )
    for delivery_id in due:
        deliver.apply_async((delivery_id,), queue=WEBHOOKS_QUEUE_NAME)
    return {"queued": len(due)}


@shared_task(name="timo.webhooks.catch_up", ignore_result=True)
def catch_up() -> dict[str, int]:
    """Record this month's quota events that PostgreSQL proves and nobody recorded."""
    result = catching_up.catch_up(current_app.runtime.database, datetime.now(UTC))
    for delivery_id in result.delivery_ids:
        deliver.apply_async((delivery_id,), queue=WEBHOOKS_QUEUE_NAME)
    if result.thresholds or result.exhausted:
        metrics.QUOTA_EVENTS_CAUGHT_UP.inc(result.thresholds + result.exhausted)
        logger.warning(
            "webhooks catch-up: recorded %d threshold(s) and %d exhaustion(s) no web process had",
            result.thresholds,
            result.exhausted,
        )
    return {"thresholds": result.thresholds, "exhausted": result.exhausted}


@shared_task(name="timo.webhooks.prune", ignore_result=True)
def prune() -> dict[str, int]:
    """Delete delivery logs and notifications past retention (`timo_hub.webhooks.retention`)."""
    pruned = retention.prune(current_app.runtime.database, datetime.now(UTC))
    return {"deliveries": pruned.deliveries, "notifications": pruned.notifications}
