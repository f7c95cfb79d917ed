"""Sending a delivery: claim the attempt, send it signed, record how it went, decide what next.

At least once, never lost: a delivery is stored due before anything sends it; an attempt is
claimed (its row written, the delivery pushed past `CLAIM_SECONDS`) before the request goes out,
and its outcome recorded after; the task that runs it is acknowledged only after that. A worker
killed mid-send leaves the attempt on record without an answer and the delivery due again when
the claim lapses, under the same `webhook-id`, so a receiver that deduplicates sees it once.

Retries follow the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h),
each delay jittered by ±20% so that many deliveries failing together do not retry together, for
about three days. An endpoint that answers `410 Gone`, or has failed every attempt for five
days, is disabled: its pending deliveries fail, the account's dashboard says so, a log line too.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from timo_hub.platform.db import Database
from timo_hub.platform.settings import Settings
from timo_hub.webhooks import destinations, metrics, signing, store

logger = logging.getLogger(__name__)

# After the first attempt. 5 s + 5 min + 30 min + 2 h + 5 h + 6 times 10 h: 2.8 days, 12 attempts.
RETRY_DELAYS_SECONDS: tuple[int, ...] = (5, 300, 1800, 7200, 18000, *([36000] * 6))
JITTER = 0.2
DISABLE_AFTER = timedelta(days=5)
# A claim outlasts any attempt (its timeout, plus the two short transactions) by this much, so it
# lapses only for a worker that died: 30 s at the default 10 s timeout.
CLAIM_MARGIN_SECONDS = 20
CLAIM_SECONDS = 30
# The dispatch run queues a due delivery again only if it queued it this long ago and it is
# still due (its message was lost: a broker restarted without its queue).
REQUEUE_AFTER = timedelta(seconds=60)
GONE = 410


@dataclass(frozen=True)
class AttemptOutcome:
    """What one call of `attempt_delivery` did."""

    delivery_id: str
    attempt: int
    state: str
    """`succeeded`, `pending` (a retry is scheduled) or `failed` (given up, or disabled)."""
    status: int | None
    retry_in: float | None
    """Seconds until the retry, when one is scheduled."""


def retry_delay(round_attempts: int, rng: random.Random | None = None) -> float | None:
    """Seconds before the attempt after attempt number `round_attempts` of a round (1-based), or
    None when the round has had all its attempts."""
    if round_attempts > len(RETRY_DELAYS_SECONDS):
        return None
    base = RETRY_DELAYS_SECONDS[round_attempts - 1]
    return base * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def request_body(payload: object) -> bytes:
    """The payload's bytes as sent (compact JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def attempt_delivery(
    database: Database,
    settings: Settings,
    delivery_id: str,
    *,
    clock: Callable[[], datetime] | None = None,
) -> AttemptOutcome | None:
    """Make the next attempt of a due delivery; None if it is not due (sent, or being sent)."""
    now_of = clock or _utc_now
    now = now_of()
    lease = claim_seconds(settings)
    with database.connection() as conn:
        claimed = store.claim_delivery(conn, delivery_id, now, now + timedelta(seconds=lease))
    if claimed is None:
        return None
    delivery, endpoint = claimed
    body = request_body(delivery.payload)
    timestamp = int(now.timestamp())
    headers = {
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            endpoint.signing_secrets(now), delivery.id, timestamp, body
        ),
        "Content-Type": "application/json",
    }
    result = destinations.post(
        endpoint.url,
        body,
        headers,
        require_https=settings.env == "production",
        allow_private=settings.webhooks_allow_private,
        timeout=settings.webhook_timeout_seconds,
    )
    done = now_of()
    status = result.status
    succeeded = status is not None and 200 <= status < 300
    retry_in: float | None = None
    disabled_reason: str | None = None
    with database.connection() as conn:
        store.finish_attempt(
            conn,
            delivery.id,
            delivery.attempts,
            done,
            status=status,
            latency_ms=result.latency_ms,
            error=_storable(result.error),
            response=_storable(result.response_excerpt) or "",
        )
        if succeeded:
            state = "succeeded"
            store.mark_succeeding(conn, endpoint.id)
        else:
            failing_since = store.mark_failing(conn, endpoint.id, now)
            if status == GONE:
                disabled_reason = "The endpoint answered 410 Gone."
            elif done - failing_since >= DISABLE_AFTER:
                disabled_reason = (
                    f"Every attempt since {failing_since:%Y-%m-%d %H:%M} UTC failed "
                    f"({DISABLE_AFTER.days} days)."
                )
            retry_in = None if disabled_reason else retry_delay(delivery.round_attempts)
            state = "pending" if retry_in is not None else "failed"
        next_at = None if retry_in is None else done + timedelta(seconds=retry_in)
        store.settle_delivery(
            conn, delivery.id, delivery.attempts, delivery.round, state, next_at, done
        )
        if disabled_reason is not None and store.disable_endpoint(
            conn, endpoint.id, disabled_reason, done
        ):
            metrics.ENDPOINTS_DISABLED.inc()
            logger.warning(
                "webhooks: endpoint %s of account %s disabled: %s",
                endpoint.id,
                endpoint.account_id,
                disabled_reason,
            )
    metrics.ATTEMPTS.labels(state if state != "pending" else "retrying").inc()
    metrics.ATTEMPT_SECONDS.observe(result.latency_ms / 1000)
    return AttemptOutcome(delivery.id, delivery.attempts, state, status, retry_in)


def claim_seconds(settings: Settings) -> float:
    """How long a claimed attempt keeps others off its delivery."""
    return max(CLAIM_SECONDS, settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS)


def due(database: Database, now: datetime, *, grace: float = 0.0, limit: int = 500) -> list[str]:
    """Deliveries due `grace` seconds before `now` (retries, and first attempts nobody queued or
    finished) and not queued in the last `REQUEUE_AFTER`, now marked queued: to queue them."""
    with database.connection() as conn:
        return store.queue_due_deliveries(
            conn, now, now - timedelta(seconds=grace), now - REQUEUE_AFTER, limit
        )


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL can store: a receiver's answer may hold NUL, which `text` refuses (and an
    attempt whose outcome cannot be recorded would be retried for ever)."""
    return None if text is None else text.replace("\x00", "\ufffd")


def _utc_now() -> datetime:
    return datetime.now(UTC)
