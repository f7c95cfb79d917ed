"""The rules of customers' webhook endpoints, shared by the HTTP API and the dashboard.

Each function runs one transaction. A secret leaves this module twice only: from `create` and
from `rotate_secret`, to be shown once.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from timo_hub.accounts import store as accounts_store
from timo_hub.errors import ConflictError, InvalidError, LimitReachedError, NotFoundError
from timo_hub.platform.db import Database
from timo_hub.platform.settings import Settings
from timo_hub.webhooks import destinations, event_types, signing, store

MAX_ENDPOINTS = 10
MAX_DESCRIPTION = 200
# Controls, surrogates, private use, unassigned.
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})
ROTATION_OVERLAP = timedelta(hours=24)
MAX_DELIVERIES_LISTED = 100


class EndpointNotFoundError(NotFoundError):
    """No such endpoint (for this account)."""


class DeliveryNotFoundError(NotFoundError):
    """No such delivery (for this endpoint)."""


class EndpointLimitReachedError(LimitReachedError):
    """The account has as many endpoints as it may."""


class EndpointDisabledError(ConflictError):
    """The endpoint is disabled: enable it before sending to it."""


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery with its attempts, as the delivery log shows it."""

    delivery: store.Delivery
    attempts: list[store.Attempt]


def checked_events(events: Sequence[str]) -> list[str]:
    """The subscribed event types, known and each once, in the order listed."""
    unknown = [e for e in events if e not in event_types.EVENT_TYPES]
    if unknown:
        raise InvalidError(
            f"Unknown event type {unknown[0]!r}; one of: {', '.join(event_types.EVENT_TYPES)}.",
            field="events",
        )
    if not events:
        raise InvalidError("Subscribe to at least one event type.", field="events")
    return list(dict.fromkeys(events))


def checked_url(settings: Settings, url: str) -> str:
    """A URL webhooks may be sent to (see `destinations.check_url`)."""
    return destinations.check_url(
        url,
        require_https=settings.env == "production",
        allow_private=settings.webhooks_allow_private,
    )


def create(
    database: Database,
    settings: Settings,
    account_id: uuid.UUID,
    *,
    url: str,
    events: Sequence[str],
    description: str,
    now: datetime,
) -> store.Endpoint:
    """Register an endpoint; the returned record holds its signing secret (show it once)."""
    subscribed = checked_events(events)
    if len(description) > MAX_DESCRIPTION:
        raise InvalidError(
            f"A description is at most {MAX_DESCRIPTION} characters.", field="description"
        )
    if any(unicodedata.category(c) in UNPRINTABLE_CATEGORIES for c in description):
        # PostgreSQL text refuses NUL; the rest would only garble the pages that show it.
        raise InvalidError("A description may not contain control characters.", field="description")
    checked = checked_url(settings, url)
    with database.connection() as conn:
        # The row lock serialises concurrent registrations for one account, so the count holds.
        if not accounts_store.lock_account(conn, account_id):
            raise EndpointNotFoundError(f"No account with id {account_id}.")
        if store.count_endpoints(conn, account_id) >= MAX_ENDPOINTS:
            raise EndpointLimitReachedError(
                f"An account may have at most {MAX_ENDPOINTS} webhook endpoints; delete one first.",
                max_endpoints=MAX_ENDPOINTS,
            )
        return store.insert_endpoint(
            conn, account_id, checked, description, subscribed, signing.new_secret(), now
        )


def list_all(database: Database, account_id: uuid.UUID) -> list[store.Endpoint]:
    """The account's endpoints, oldest first."""
    with database.connection() as conn:
        return store.list_endpoints(conn, account_id)


def disabled(database: Database, account_id: uuid.UUID) -> list[store.Endpoint]:
    """The account's disabled endpoints (what the dashboard warns about)."""
    with database.connection() as conn:
        return store.disabled_endpoints(conn, account_id)


def get(database: Database, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> store.Endpoint:
    """One of the account's endpoints."""
    with database.connection() as conn:
        return _endpoint(conn, account_id, endpoint_id)


def delete(database: Database, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint and its delivery log."""
    with database.connection() as conn:
        if not store.delete_endpoint(conn, account_id, endpoint_id):
            raise EndpointNotFoundError(f"No webhook endpoint with id {endpoint_id}.")


def rotate_secret(
    database: Database, account_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime
) -> store.Endpoint:
    """A new signing secret; the old one keeps signing beside it for `ROTATION_OVERLAP`."""
    with database.connection() as conn:
        endpoint = store.rotate_secret(
            conn, account_id, endpoint_id, signing.new_secret(), now, now + ROTATION_OVERLAP
        )
    if endpoint is None:
        raise EndpointNotFoundError(f"No webhook endpoint with id {endpoint_id}.")
    return endpoint


def enable(database: Database, account_id: uuid.UUID, endpoint_id: uuid.UUID) -> store.Endpoint:
    """Enable a disabled endpoint again (what was pending when it was disabled stays failed;
    replay it from the delivery log)."""
    with database.connection() as conn:
        endpoint = store.enable_endpoint(conn, account_id, endpoint_id)
    if endpoint is None:
        raise EndpointNotFoundError(f"No webhook endpoint with id {endpoint_id}.")
    return endpoint


def send_test(
    database: Database, account_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime
) -> store.Delivery:
    """Queue a `webhook.test` message to the endpoint (a delivery like any other)."""
    delivery_id = "msg_" + uuid.uuid4().hex
    with database.connection() as conn:
        # Locked: a disable committing meanwhile waits for this delivery, and then fails it.
        endpoint = _endpoint(conn, account_id, endpoint_id, lock=True)
        _check_enabled(endpoint)
        data = {"account_id": str(account_id), "endpoint_id": str(endpoint_id)}
        payload = event_types.envelope(event_types.TEST, now, data)
        store.insert_delivery(conn, delivery_id, endpoint, event_types.TEST, payload, now)
        found = store.get_delivery(conn, account_id, endpoint_id, delivery_id)
    assert found is not None
    return found


def deliveries(
    database: Database,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    limit: int,
    before: str | None = None,
) -> list[DeliveryRecord]:
    """The endpoint's deliveries, newest first, each with every attempt."""
    with database.connection() as conn:
        _endpoint(conn, account_id, endpoint_id)
        found = store.list_deliveries(conn, account_id, endpoint_id, limit, before)
        attempts = store.attempts_of(conn, [d.id for d in found])
    return [DeliveryRecord(d, attempts[d.id]) for d in found]


def attempts(database: Database, delivery_id: str) -> list[store.Attempt]:
    """Every attempt of one delivery, in order."""
    with database.connection() as conn:
        return store.attempts_of(conn, [delivery_id])[delivery_id]


def replay(
    database: Database,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: str,
    now: datetime,
) -> store.Delivery:
    """Send a finished delivery again, as a new round of attempts under the same `webhook-id`
    (so a receiver that deduplicates by it is safe). Idempotent: a delivery still pending (being
    tried, or replayed a moment ago) is returned as it is, not sent twice."""
    with database.connection() as conn:
        endpoint = _endpoint(conn, account_id, endpoint_id, lock=True)
        _check_enabled(endpoint)
        replayed = store.replay_delivery(conn, account_id, endpoint_id, delivery_id, now)
        if replayed is not None:
            return replayed
        current = store.get_delivery(conn, account_id, endpoint_id, delivery_id)
    if current is None:
        raise DeliveryNotFoundError(f"No delivery {delivery_id} to this endpoint.")
    return current


def _endpoint(
    conn: psycopg.Connection, account_id: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
) -> store.Endpoint:
    endpoint = store.get_endpoint(conn, account_id, endpoint_id, lock=lock)
    if endpoint is None:
        raise EndpointNotFoundError(f"No webhook endpoint with id {endpoint_id}.")
    return endpoint


def _check_enabled(endpoint: store.Endpoint) -> None:
    if endpoint.disabled_at is not None:
        raise EndpointDisabledError(
            f"This endpoint was disabled: {endpoint.disabled_reason} Enable it first."
        )
