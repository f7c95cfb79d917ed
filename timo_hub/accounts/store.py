"""Accounts, plans and API keys in PostgreSQL: every statement that reads or writes them.

Functions take a connection first and leave transaction control to the caller; SQL lives in named
constants. Nothing here knows about HTTP or caching.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import class_row

from timo_hub.accounts import key_format
from timo_hub.accounts.principal import Principal

# Limits come from `account_limits`: the account's own where an operator set them, else its plan's.
ACCOUNT_COLUMNS = """
    a.id, a.email, a.status, a.created_at,
    p.name AS plan, l.monthly_limit, p.price_usd, l.burst_limit, l.burst_window_seconds
"""
ACCOUNT_FROM = """
accounts a JOIN plans p ON p.name = a.plan JOIN account_limits l ON l.account_id = a.id
"""
SELECT_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE a.id = %(id)s"
SELECT_ACCOUNTS_BY_ID = f"SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE a.id = ANY(%(ids)s)"
SELECT_ACCOUNT_BY_EMAIL = f"""
SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} WHERE lower(a.email) = lower(%(email)s)
"""
SELECT_ACCOUNTS = f"SELECT {ACCOUNT_COLUMNS} FROM {ACCOUNT_FROM} ORDER BY a.created_at, a.id"
INSERT_ACCOUNT = "INSERT INTO accounts (email, plan) VALUES (%(email)s, %(plan)s) RETURNING id"
UPDATE_ACCOUNT_PLAN = "UPDATE accounts SET plan = %(plan)s WHERE id = %(id)s RETURNING id"
UPDATE_ACCOUNT_STATUS = "UPDATE accounts SET status = %(status)s WHERE id = %(id)s RETURNING id"
LOCK_ACCOUNT = "SELECT id FROM accounts WHERE id = %(id)s FOR UPDATE"
UPDATE_ALERT_THRESHOLDS = """
UPDATE accounts SET alert_thresholds = %(thresholds)s WHERE id = %(id)s RETURNING alert_thresholds
"""
SELECT_ALERT_THRESHOLDS = "SELECT alert_thresholds FROM accounts WHERE id = %(id)s"
SELECT_PLAN_NAMES = "SELECT name FROM plans ORDER BY sort_order"
SELECT_PLANS = """
SELECT name, display_name, monthly_limit, price_usd, burst_limit, burst_window_seconds
FROM plans ORDER BY sort_order
"""
SELECT_LIMIT_OVERRIDES = """
SELECT policy, calls FROM account_limit_overrides WHERE account_id = %(id)s ORDER BY policy
"""
SELECT_OWN_MONTHLY_LIMITS = """
SELECT account_id FROM account_limit_overrides WHERE account_id = ANY(%(ids)s) AND policy = 'month'
"""
SET_LIMIT_OVERRIDE = """
INSERT INTO account_limit_overrides (account_id, policy, calls)
VALUES (%(id)s, %(policy)s, %(calls)s)
ON CONFLICT (account_id, policy) DO UPDATE SET calls = EXCLUDED.calls, set_at = now()
"""
CLEAR_LIMIT_OVERRIDE = """
DELETE FROM account_limit_overrides WHERE account_id = %(id)s AND policy = %(policy)s
"""
SELECT_ACTIVE_ACCOUNT_IDS = """
SELECT id FROM accounts WHERE status = 'active' ORDER BY created_at, id
"""

KEY_COLUMNS = "id, account_id, name, prefix, created_at, last_used_at, revoked_at"
SELECT_KEYS = f"""
SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = %(account_id)s
ORDER BY revoked_at IS NOT NULL, created_at DESC, id
LIMIT %(limit)s
"""
SELECT_KEY_LABELS = "SELECT id, name, prefix FROM api_keys WHERE account_id = %(account_id)s"
COUNT_ACTIVE_KEYS = """
SELECT count(*) FROM api_keys WHERE account_id = %(account_id)s AND revoked_at IS NULL
"""
INSERT_KEY = f"""
INSERT INTO api_keys (account_id, name, prefix, key_hash)
VALUES (%(account_id)s, %(name)s, %(prefix)s, %(key_hash)s)
RETURNING {KEY_COLUMNS}
"""
REVOKE_KEY = f"""
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND (%(account_id)s::uuid IS NULL OR account_id = %(account_id)s::uuid)
RETURNING {KEY_COLUMNS}
"""
SELECT_PRINCIPAL = """
SELECT k.id AS key_id, k.account_id, a.status AS account_status, a.plan, l.monthly_limit,
       a.alert_thresholds, l.burst_limit, l.burst_window_seconds
FROM api_keys k JOIN accounts a ON a.id = k.account_id
JOIN account_limits l ON l.account_id = a.id
WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL
"""
# Conditional so that several processes touching one key write at most about once a minute.
TOUCH_KEY = """
UPDATE api_keys SET last_used_at = now()
WHERE id = %(id)s AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %(s)s))
"""


@dataclass(frozen=True)
class Account:
    """An account with its plan."""

    id: uuid.UUID
    email: str
    status: str
    created_at: datetime
    plan: str
    monthly_limit: int | None
    """In force: the account's own limit where an operator set one, else its plan's."""
    price_usd: Decimal | None
    burst_limit: int | None
    """Calls per burst window in force (None: none); the account's own, else its plan's."""
    burst_window_seconds: int


@dataclass(frozen=True)
class Plan:
    """A plan: its monthly limit (None: unlimited), price (None: custom) and burst limit (None:
    none) per window of `burst_window_seconds`."""

    name: str
    display_name: str
    monthly_limit: int | None
    price_usd: Decimal | None
    burst_limit: int | None = None
    burst_window_seconds: int = 60


@dataclass(frozen=True)
class ApiKey:
    """An API key's public record; the secret and its hash are never loaded."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: its record and the secret, which exists nowhere else after this."""

    key: ApiKey
    secret: str


def plan_names(conn: psycopg.Connection) -> list[str]:
    """The plans, cheapest first."""
    return [row[0] for row in conn.execute(SELECT_PLAN_NAMES)]


def list_plans(conn: psycopg.Connection) -> list[Plan]:
    """Every plan, cheapest first."""
    with conn.cursor(row_factory=class_row(Plan)) as cur:
        return cur.execute(SELECT_PLANS).fetchall()


def active_account_ids(conn: psycopg.Connection) -> list[uuid.UUID]:
    """Every active (not suspended) account, oldest first."""
    return [row[0] for row in conn.execute(SELECT_ACTIVE_ACCOUNT_IDS)]


def create_account(conn: psycopg.Connection, email: str, plan: str) -> Account:
    """Insert an account on `plan`."""
    row = conn.execute(INSERT_ACCOUNT, {"email": email, "plan": plan}).fetchone()
    assert row is not None
    account = get_account(conn, row[0])
    assert account is not None
    return account


def get_account(conn: psycopg.Connection, account_id: uuid.UUID) -> Account | None:
    """The account with this id, or None."""
    with conn.cursor(row_factory=class_row(Account)) as cur:
        return cur.execute(SELECT_ACCOUNT, {"id": account_id}).fetchone()


def get_accounts(
    conn: psycopg.Connection, account_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Account]:
    """The accounts with these ids (those that exist), in one statement."""
    with conn.cursor(row_factory=class_row(Account)) as cur:
        return {
            account.id: account
            for account in cur.execute(SELECT_ACCOUNTS_BY_ID, {"ids": account_ids})
        }


def find_account_by_email(conn: psycopg.Connection, email: str) -> Account | None:
    """The account with this email, compared case-insensitively."""
    with conn.cursor(row_factory=class_row(Account)) as cur:
        return cur.execute(SELECT_ACCOUNT_BY_EMAIL, {"email": email}).fetchone()


def list_accounts(conn: psycopg.Connection) -> list[Account]:
    """Every account, oldest first."""
    with conn.cursor(row_factory=class_row(Account)) as cur:
        return cur.execute(SELECT_ACCOUNTS).fetchall()


def set_plan(conn: psycopg.Connection, account_id: uuid.UUID, plan: str) -> bool:
    """Move an account to `plan`; False if there is no such account."""
    return (
        conn.execute(UPDATE_ACCOUNT_PLAN, {"id": account_id, "plan": plan}).fetchone() is not None
    )


def set_status(conn: psycopg.Connection, account_id: uuid.UUID, status: str) -> bool:
    """Set an account's status; False if there is no such account."""
    row = conn.execute(UPDATE_ACCOUNT_STATUS, {"id": account_id, "status": status}).fetchone()
    return row is not None


def lock_account(conn: psycopg.Connection, account_id: uuid.UUID) -> bool:
    """Lock the account row until the transaction ends; False if there is no such account."""
    return conn.execute(LOCK_ACCOUNT, {"id": account_id}).fetchone() is not None


def count_active_keys(conn: psycopg.Connection, account_id: uuid.UUID) -> int:
    """How many unrevoked keys the account has."""
    row = conn.execute(COUNT_ACTIVE_KEYS, {"account_id": account_id}).fetchone()
    assert row is not None
    return int(row[0])


def list_keys(
    conn: psycopg.Connection, account_id: uuid.UUID, limit: int | None = None
) -> list[ApiKey]:
    """Active keys newest first, then revoked ones newest first (at most `limit` in all)."""
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(SELECT_KEYS, {"account_id": account_id, "limit": limit}).fetchall()


def key_labels(conn: psycopg.Connection, account_id: uuid.UUID) -> dict[uuid.UUID, tuple[str, str]]:
    """Name and display prefix of each of the account's keys, revoked ones included."""
    rows = conn.execute(SELECT_KEY_LABELS, {"account_id": account_id})
    return {key_id: (name, prefix) for key_id, name, prefix in rows}


def insert_key(
    conn: psycopg.Connection, account_id: uuid.UUID, name: str, pepper: str
) -> IssuedKey:
    """Create a key for an account and return the secret, the only time it is available."""
    new_key = key_format.generate(pepper)
    params = {
        "account_id": account_id,
        "name": name,
        "prefix": new_key.prefix,
        "key_hash": new_key.key_hash,
    }
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        record = cur.execute(INSERT_KEY, params).fetchone()
    assert record is not None
    return IssuedKey(key=record, secret=new_key.secret)


def revoke_key(
    conn: psycopg.Connection, key_id: uuid.UUID, account_id: uuid.UUID | None = None
) -> ApiKey | None:
    """Revoke a key (of `account_id`, when given); idempotent; None if no such key."""
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(REVOKE_KEY, {"id": key_id, "account_id": account_id}).fetchone()


def find_principal(conn: psycopg.Connection, key_hash: bytes) -> Principal | None:
    """Who an unrevoked key with this hash belongs to, or None."""
    with conn.cursor(row_factory=class_row(Principal)) as cur:
        return cur.execute(SELECT_PRINCIPAL, {"key_hash": key_hash}).fetchone()


def touch_key(conn: psycopg.Connection, key_id: uuid.UUID, min_interval_seconds: float) -> None:
    """Record that a key was used, unless that was recorded less than the interval ago."""
    conn.execute(TOUCH_KEY, {"id": key_id, "s": min_interval_seconds})


def key_is_active(conn: psycopg.Connection, secret: str, pepper: str) -> bool:
    """True when `secret` is a stored, unrevoked key."""
    if not key_format.is_well_formed(secret):
        return False
    return find_principal(conn, key_format.hash_key(secret, pepper)) is not None


def alert_thresholds(conn: psycopg.Connection, account_id: uuid.UUID) -> list[int] | None:
    """The account's quota alert thresholds (percent, ascending); None if no such account."""
    row = conn.execute(SELECT_ALERT_THRESHOLDS, {"id": account_id}).fetchone()
    return None if row is None else list(row[0])


def set_alert_thresholds(
    conn: psycopg.Connection, account_id: uuid.UUID, thresholds: list[int]
) -> bool:
    """Replace the account's alert thresholds; False if there is no such account."""
    params = {"id": account_id, "thresholds": thresholds}
    return conn.execute(UPDATE_ALERT_THRESHOLDS, params).fetchone() is not None


def limit_overrides(conn: psycopg.Connection, account_id: uuid.UUID) -> dict[str, int | None]:
    """The limits an operator set for the account, by policy (`month`, `burst`); None: unlimited."""
    rows = conn.execute(SELECT_LIMIT_OVERRIDES, {"id": account_id})
    return {policy: None if calls is None else int(calls) for policy, calls in rows}


def with_own_monthly_limit(
    conn: psycopg.Connection, account_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of these accounts that have a monthly limit of their own (`limit_overrides`)."""
    return {row[0] for row in conn.execute(SELECT_OWN_MONTHLY_LIMITS, {"ids": account_ids})}


def set_limit_override(
    conn: psycopg.Connection, account_id: uuid.UUID, policy: str, calls: int | None
) -> None:
    """Give the account its own limit for `policy` (None: unlimited) in place of its plan's."""
    conn.execute(SET_LIMIT_OVERRIDE, {"id": account_id, "policy": policy, "calls": calls})


def clear_limit_override(conn: psycopg.Connection, account_id: uuid.UUID, policy: str) -> None:
    """Let the account follow its plan's limit for `policy` again."""
    conn.execute(CLEAR_LIMIT_OVERRIDE, {"id": account_id, "policy": policy})
