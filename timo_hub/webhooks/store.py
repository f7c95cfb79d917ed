"""Webhook endpoints, notifications, deliveries and attempts in PostgreSQL.

Every function takes a connection first; the caller owns the transaction. Times come from the
caller (its clock decides when a retry is due), never from `now()` in SQL, so that one clock
rules and tests can drive it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

ENDPOINT_COLUMNS = """
id, account_id, url, description, events, secret, retired_secrets, created_at, failing_since,
disabled_at, disabled_reason
"""
MAX_RETIRED_SECRETS = 5

INSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints (account_id, url, description, events, secret, created_at)
VALUES (%(account)s, %(url)s, %(description)s, %(events)s, %(secret)s, %(now)s)
RETURNING {ENDPOINT_COLUMNS}
"""
SELECT_ENDPOINTS = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE account_id = %(account)s
ORDER BY created_at, id
"""
SELECT_ENDPOINT = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = %(id)s AND account_id = %(account)s
"""
SELECT_ENDPOINT_FOR_UPDATE = SELECT_ENDPOINT + " FOR UPDATE"
COUNT_ENDPOINTS = "SELECT count(*) FROM webhook_endpoints WHERE account_id = %(account)s"
DELETE_ENDPOINT = """
DELETE FROM webhook_endpoints WHERE id = %(id)s AND account_id = %(account)s RETURNING id
"""
# The current secret joins the retired ones, each signing until its own expiry; expired ones
# are dropped, and at most `MAX_RETIRED_SECRETS` are kept (the newest), so that a burst of
# rotations cannot make every signature header grow without end.
ROTATE_SECRET = f"""
UPDATE webhook_endpoints
SET retired_secrets = (
        SELECT coalesce(jsonb_agg(kept.r ORDER BY kept.expires), '[]'::jsonb)
        FROM (
            SELECT r, (r->>'expires_at')::timestamptz AS expires
            FROM jsonb_array_elements(
                retired_secrets || jsonb_build_array(jsonb_build_object(
                    'secret', secret, 'expires_at', %(overlap_until)s::timestamptz))) AS r
            WHERE (r->>'expires_at')::timestamptz > %(now)s
            ORDER BY expires DESC
            LIMIT %(keep)s
        ) AS kept
    ),
    secret = %(secret)s
WHERE id = %(id)s AND account_id = %(account)s
RETURNING {ENDPOINT_COLUMNS}
"""
DISABLE_ENDPOINT = """
UPDATE webhook_endpoints SET disabled_at = %(now)s, disabled_reason = %(reason)s
WHERE id = %(id)s AND disabled_at IS NULL
RETURNING id
"""
ENABLE_ENDPOINT = f"""
UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL
WHERE id = %(id)s AND account_id = %(account)s
RETURNING {ENDPOINT_COLUMNS}
"""
MARK_FAILING = """
UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, %(since)s)
WHERE id = %(id)s RETURNING failing_since
"""
MARK_SUCCEEDING = "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = %(id)s"
SELECT_DISABLED_ENDPOINTS = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
WHERE account_id = %(account)s AND disabled_at IS NOT NULL
ORDER BY disabled_at DESC
"""

INSERT_NOTIFICATION = """
INSERT INTO account_notifications (account_id, type, dedupe_key, occurred_at, payload)
VALUES (%(account)s, %(type)s, %(dedupe_key)s, %(occurred_at)s, %(payload)s)
ON CONFLICT (account_id, type, dedupe_key) DO NOTHING
RETURNING id
"""
# Every endpoint of the account subscribed to the type gets one delivery: due now, or, for a
# disabled endpoint, failed unsent (so that once enabled, it can be replayed from the log).
FAN_OUT = """
INSERT INTO webhook_deliveries
    (id, endpoint_id, account_id, notification_id, type, payload, state, next_attempt_at,
     created_at, finished_at)
SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.id, e.account_id, %(notification)s,
       %(type)s, %(payload)s,
       CASE WHEN e.disabled_at IS NULL THEN 'pending' ELSE 'failed' END,
       CASE WHEN e.disabled_at IS NULL THEN %(now)s END, %(now)s,
       CASE WHEN e.disabled_at IS NULL THEN NULL ELSE %(now)s END
FROM webhook_endpoints e
WHERE e.account_id = %(account)s AND %(type)s = ANY (e.events)
RETURNING id, state
"""
INSERT_DELIVERY = """
INSERT INTO webhook_deliveries
    (id, endpoint_id, account_id, type, payload, next_attempt_at, created_at)
VALUES (%(id)s, %(endpoint)s, %(account)s, %(type)s, %(payload)s, %(now)s, %(now)s)
"""

DELIVERY_COLUMNS = """
d.id, d.endpoint_id, d.account_id, d.type, d.payload, d.state, d.attempts, d.round,
d.round_attempts, d.next_attempt_at, d.created_at, d.finished_at
"""
# The claim: only a pending delivery that is due, and only one worker at a time (the row lock,
# then `next_attempt_at` pushed past the longest attempt). Returns the attempt number taken.
CLAIM_DELIVERY = f"""
UPDATE webhook_deliveries d
SET attempts = attempts + 1, round_attempts = round_attempts + 1,
    next_attempt_at = %(claimed_until)s
FROM webhook_endpoints e
WHERE d.id = %(id)s AND d.state = 'pending' AND d.next_attempt_at <= %(now)s
  AND e.id = d.endpoint_id AND e.disabled_at IS NULL
RETURNING {DELIVERY_COLUMNS}, {", ".join("e." + c.strip() for c in ENDPOINT_COLUMNS.split(","))}
"""
# A delivery made (or replayed) while its endpoint was being disabled, in a transaction that did
# not yet see the disable: failed unsent, as the disable would have left it.
FAIL_IF_DISABLED = """
UPDATE webhook_deliveries d
SET state = 'failed', next_attempt_at = NULL, finished_at = %(now)s
FROM webhook_endpoints e
WHERE d.id = %(id)s AND d.state = 'pending' AND e.id = d.endpoint_id
  AND e.disabled_at IS NOT NULL
"""
INSERT_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempt, started_at)
VALUES (%(id)s, %(attempt)s, %(now)s)
"""
FINISH_ATTEMPT = """
UPDATE webhook_attempts
SET finished_at = %(now)s, status_code = %(status)s, latency_ms = %(latency)s, error = %(error)s,
    response = %(response)s
WHERE delivery_id = %(id)s AND attempt = %(attempt)s
"""
# Only the claim that is still current may settle the delivery (a claim that outlived its lease
# was superseded by a newer attempt, which settles it instead).
SETTLE_DELIVERY = """
UPDATE webhook_deliveries
SET state = %(state)s, next_attempt_at = %(next)s,
    finished_at = CASE WHEN %(state)s = 'pending' THEN NULL ELSE %(now)s END
WHERE id = %(id)s AND state = 'pending' AND attempts = %(attempt)s AND round = %(round)s
RETURNING id
"""
FAIL_PENDING_OF_ENDPOINT = """
UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL, finished_at = %(now)s
WHERE endpoint_id = %(id)s AND state = 'pending'
"""
REPLAY_DELIVERY = f"""
UPDATE webhook_deliveries d
SET state = 'pending', round = d.round + 1, round_attempts = 0, next_attempt_at = %(now)s,
    finished_at = NULL, queued_at = NULL
FROM webhook_endpoints e
WHERE d.id = %(id)s AND d.endpoint_id = %(endpoint)s AND d.account_id = %(account)s
  AND e.id = d.endpoint_id AND d.state <> 'pending'
RETURNING {DELIVERY_COLUMNS}
"""
SELECT_DELIVERY = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
WHERE d.id = %(id)s AND d.endpoint_id = %(endpoint)s AND d.account_id = %(account)s
"""
# Newest first; `before` (a delivery id) pages on past it, ties on the time broken by the id.
SELECT_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
WHERE d.endpoint_id = %(endpoint)s AND d.account_id = %(account)s
  AND (%(before)s::text IS NULL OR (d.created_at, d.id) < (
      SELECT b.created_at, b.id FROM webhook_deliveries b
      WHERE b.id = %(before)s AND b.endpoint_id = %(endpoint)s))
ORDER BY d.created_at DESC, d.id DESC
LIMIT %(limit)s
"""
SELECT_ATTEMPTS = """
SELECT delivery_id, attempt, started_at, finished_at, status_code, latency_ms, error, response
FROM webhook_attempts WHERE delivery_id = ANY (%(ids)s)
ORDER BY delivery_id, attempt
"""
# Due and not queued lately, marked queued in the same statement: a backlog the workers have not
# drained yet is not queued again every run, only after `requeue_after` (a lost message).
QUEUE_DUE = """
UPDATE webhook_deliveries SET queued_at = %(now)s
WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE state = 'pending' AND next_attempt_at <= %(due_by)s
      AND (queued_at IS NULL OR queued_at <= %(requeue_before)s)
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING id
"""


@dataclass(frozen=True)
class Endpoint:
    """A registered webhook endpoint, secrets included (never shown after creation)."""

    id: uuid.UUID
    account_id: uuid.UUID
    url: str
    description: str
    events: list[str]
    secret: str
    retired_secrets: list[dict[str, str]]
    """Rotated-out secrets that still sign: `{"secret", "expires_at"}`, oldest first."""
    created_at: datetime
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets signing at `now`: the current one and those rotated out in the last day."""
        retired = [r["secret"] for r in self.retired_secrets if now < _moment(r["expires_at"])]
        return [self.secret, *reversed(retired)]

    @property
    def previous_secret(self) -> str | None:
        """The secret most recently rotated out (signing or not any more)."""
        return self.retired_secrets[-1]["secret"] if self.retired_secrets else None

    @property
    def previous_secret_expires_at(self) -> datetime | None:
        """Until when the last of the rotated-out secrets signs."""
        if not self.retired_secrets:
            return None
        return max(_moment(r["expires_at"]) for r in self.retired_secrets)


@dataclass(frozen=True)
class Delivery:
    """One logical delivery (its id is the `webhook-id`), as stored."""

    id: str
    endpoint_id: uuid.UUID
    account_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    state: str
    attempts: int
    round: int
    """Bumped by each replay: an attempt of an earlier round settles nothing."""
    round_attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    """One attempt of a delivery; `status_code` and `finished_at` None while unanswered."""

    delivery_id: str
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response: str | None


def insert_endpoint(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    url: str,
    description: str,
    events: list[str],
    secret: str,
    now: datetime,
) -> Endpoint:
    """Store a new endpoint."""
    params = {
        "account": account_id,
        "url": url,
        "description": description,
        "events": events,
        "secret": secret,
        "now": now,
    }
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        row = cur.execute(INSERT_ENDPOINT, params).fetchone()
    assert row is not None
    return row


def list_endpoints(conn: psycopg.Connection, account_id: uuid.UUID) -> list[Endpoint]:
    """The account's endpoints, oldest first."""
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        return cur.execute(SELECT_ENDPOINTS, {"account": account_id}).fetchall()


def disabled_endpoints(conn: psycopg.Connection, account_id: uuid.UUID) -> list[Endpoint]:
    """The account's disabled endpoints, most recently disabled first."""
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        return cur.execute(SELECT_DISABLED_ENDPOINTS, {"account": account_id}).fetchall()


def get_endpoint(
    conn: psycopg.Connection, account_id: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
) -> Endpoint | None:
    """One of the account's endpoints (anyone else's is None)."""
    query = SELECT_ENDPOINT_FOR_UPDATE if lock else SELECT_ENDPOINT
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        return cur.execute(query, {"id": endpoint_id, "account": account_id}).fetchone()


def count_endpoints(conn: psycopg.Connection, account_id: uuid.UUID) -> int:
    """How many endpoints the account has."""
    row = conn.execute(COUNT_ENDPOINTS, {"account": account_id}).fetchone()
    return int(row[0]) if row else 0


def delete_endpoint(
    conn: psycopg.Connection, account_id: uuid.UUID, endpoint_id: uuid.UUID
) -> bool:
    """Delete the endpoint with its deliveries; False if the account has no such endpoint."""
    params = {"id": endpoint_id, "account": account_id}
    return conn.execute(DELETE_ENDPOINT, params).fetchone() is not None


def rotate_secret(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    secret: str,
    now: datetime,
    overlap_until: datetime,
) -> Endpoint | None:
    """Make `secret` current; the old one keeps signing until `overlap_until`."""
    params = {
        "id": endpoint_id,
        "account": account_id,
        "secret": secret,
        "now": now,
        "overlap_until": overlap_until,
        "keep": MAX_RETIRED_SECRETS,
    }
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        return cur.execute(ROTATE_SECRET, params).fetchone()


def enable_endpoint(
    conn: psycopg.Connection, account_id: uuid.UUID, endpoint_id: uuid.UUID
) -> Endpoint | None:
    """Enable a disabled endpoint again (its failure streak forgotten)."""
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        return cur.execute(ENABLE_ENDPOINT, {"id": endpoint_id, "account": account_id}).fetchone()


def disable_endpoint(
    conn: psycopg.Connection, endpoint_id: uuid.UUID, reason: str, now: datetime
) -> bool:
    """Disable the endpoint and fail what it still had pending; False if already disabled."""
    row = conn.execute(DISABLE_ENDPOINT, {"id": endpoint_id, "reason": reason, "now": now})
    if row.fetchone() is None:
        return False
    conn.execute(FAIL_PENDING_OF_ENDPOINT, {"id": endpoint_id, "now": now})
    return True


def mark_failing(conn: psycopg.Connection, endpoint_id: uuid.UUID, since: datetime) -> datetime:
    """Note a failure; returns when the endpoint's current failure streak began."""
    row = conn.execute(MARK_FAILING, {"id": endpoint_id, "since": since}).fetchone()
    return since if row is None or row[0] is None else row[0]


def mark_succeeding(conn: psycopg.Connection, endpoint_id: uuid.UUID) -> None:
    """Note a success: the endpoint's failure streak is over."""
    conn.execute(MARK_SUCCEEDING, {"id": endpoint_id})


def insert_notification(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    kind: str,
    dedupe_key: str,
    occurred_at: datetime,
    payload: dict[str, Any],
) -> uuid.UUID | None:
    """Record an occurrence; None if it was recorded before (by anyone)."""
    params = {
        "account": account_id,
        "type": kind,
        "dedupe_key": dedupe_key,
        "occurred_at": occurred_at,
        "payload": Jsonb(payload),
    }
    row = conn.execute(INSERT_NOTIFICATION, params).fetchone()
    return None if row is None else row[0]


def fan_out(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    notification_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> list[str]:
    """One delivery per endpoint subscribed to `kind`; the ids of those to send (not those of
    disabled endpoints, stored failed unsent)."""
    params = {
        "account": account_id,
        "notification": notification_id,
        "type": kind,
        "payload": Jsonb(payload),
        "now": now,
    }
    return [row[0] for row in conn.execute(FAN_OUT, params) if row[1] == "pending"]


def insert_delivery(
    conn: psycopg.Connection,
    delivery_id: str,
    endpoint: Endpoint,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """A delivery of no notification (a test message) to one endpoint, due now."""
    params = {
        "id": delivery_id,
        "endpoint": endpoint.id,
        "account": endpoint.account_id,
        "type": kind,
        "payload": Jsonb(payload),
        "now": now,
    }
    conn.execute(INSERT_DELIVERY, params)


def claim_delivery(
    conn: psycopg.Connection, delivery_id: str, now: datetime, claimed_until: datetime
) -> tuple[Delivery, Endpoint] | None:
    """Take the next attempt of a due delivery and record it as started; None if not due."""
    row = conn.execute(
        CLAIM_DELIVERY, {"id": delivery_id, "now": now, "claimed_until": claimed_until}
    ).fetchone()
    if row is None:
        conn.execute(FAIL_IF_DISABLED, {"id": delivery_id, "now": now})
        return None
    width = len(Delivery.__dataclass_fields__)
    delivery, endpoint = Delivery(*row[:width]), Endpoint(*row[width:])
    conn.execute(INSERT_ATTEMPT, {"id": delivery_id, "attempt": delivery.attempts, "now": now})
    return delivery, endpoint


def finish_attempt(
    conn: psycopg.Connection,
    delivery_id: str,
    attempt: int,
    now: datetime,
    *,
    status: int | None,
    latency_ms: int,
    error: str | None,
    response: str,
) -> None:
    """Record how an attempt ended."""
    conn.execute(
        FINISH_ATTEMPT,
        {
            "id": delivery_id,
            "attempt": attempt,
            "now": now,
            "status": status,
            "latency": latency_ms,
            "error": error,
            "response": response,
        },
    )


def settle_delivery(
    conn: psycopg.Connection,
    delivery_id: str,
    attempt: int,
    round_number: int,
    state: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> bool:
    """Set the delivery's state after attempt `attempt` of round `round_number`, if that attempt
    is still its latest and no replay has begun a new round since."""
    params = {
        "id": delivery_id,
        "attempt": attempt,
        "round": round_number,
        "state": state,
        "next": next_attempt_at,
        "now": now,
    }
    return conn.execute(SETTLE_DELIVERY, params).fetchone() is not None


def replay_delivery(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: str,
    now: datetime,
) -> Delivery | None:
    """Make a finished delivery due again now, same id; None if it is pending or not found."""
    params = {"id": delivery_id, "endpoint": endpoint_id, "account": account_id, "now": now}
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(REPLAY_DELIVERY, params).fetchone()


def get_delivery(
    conn: psycopg.Connection, account_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: str
) -> Delivery | None:
    """One delivery of one of the account's endpoints."""
    params = {"id": delivery_id, "endpoint": endpoint_id, "account": account_id}
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(SELECT_DELIVERY, params).fetchone()


def list_deliveries(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    limit: int,
    before: str | None = None,
) -> list[Delivery]:
    """The endpoint's deliveries, newest first; with `before`, those older than that one."""
    params = {"endpoint": endpoint_id, "account": account_id, "limit": limit, "before": before}
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(SELECT_DELIVERIES, params).fetchall()


def attempts_of(conn: psycopg.Connection, delivery_ids: list[str]) -> dict[str, list[Attempt]]:
    """Every attempt of these deliveries, in order, by delivery id."""
    found: dict[str, list[Attempt]] = {i: [] for i in delivery_ids}
    with conn.cursor(row_factory=class_row(Attempt)) as cur:
        for attempt in cur.execute(SELECT_ATTEMPTS, {"ids": delivery_ids}):
            found[attempt.delivery_id].append(attempt)
    return found


def queue_due_deliveries(
    conn: psycopg.Connection, now: datetime, due_by: datetime, requeue_before: datetime, limit: int
) -> list[str]:
    """Pending deliveries due by `due_by` and not queued since `requeue_before`, most overdue
    first, marked queued at `now`."""
    params = {"now": now, "due_by": due_by, "requeue_before": requeue_before, "limit": limit}
    return [row[0] for row in conn.execute(QUEUE_DUE, params)]


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)
