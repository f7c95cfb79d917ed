"""Accounts and API keys in PostgreSQL.

Functions take a connection first; SQL lives in named constants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from api.accounts import keys

INSERT_ACCOUNT = """
INSERT INTO accounts (email, plan) VALUES (%(email)s, %(plan)s)
RETURNING id, email, plan, status, created_at
"""
SELECT_ACCOUNT_BY_EMAIL = """
SELECT id, email, plan, status, created_at FROM accounts WHERE lower(email) = lower(%(email)s)
"""
INSERT_KEY = """
INSERT INTO api_keys (account_id, name, prefix, key_hash)
VALUES (%(account_id)s, %(name)s, %(prefix)s, %(key_hash)s)
RETURNING id
"""
SELECT_ACTIVE_KEY_ID = """
SELECT id FROM api_keys WHERE key_hash = %(key_hash)s AND revoked_at IS NULL
"""


@dataclass(frozen=True)
class Account:
    """An account row."""

    id: uuid.UUID
    email: str
    plan: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: its id and the secret, which exists nowhere else after this."""

    id: uuid.UUID
    secret: str


def create_account(conn: psycopg.Connection, email: str, plan: str) -> Account:
    """Insert an account on `plan`."""
    with conn.cursor(row_factory=class_row(Account)) as cur:
        row = cur.execute(INSERT_ACCOUNT, {"email": email, "plan": plan}).fetchone()
    assert row is not None
    return row


def find_account_by_email(conn: psycopg.Connection, email: str) -> Account | None:
    """The account with this email, compared case-insensitively."""
    with conn.cursor(row_factory=class_row(Account)) as cur:
        return cur.execute(SELECT_ACCOUNT_BY_EMAIL, {"email": email}).fetchone()


def issue_key(conn: psycopg.Connection, account_id: uuid.UUID, name: str, pepper: str) -> IssuedKey:
    """Create a key for an account and return the secret, the only time it is available."""
    new_key = keys.generate(pepper)
    row = conn.execute(
        INSERT_KEY,
        {
            "account_id": account_id,
            "name": name,
            "prefix": new_key.prefix,
            "key_hash": new_key.key_hash,
        },
    ).fetchone()
    assert row is not None
    return IssuedKey(id=row[0], secret=new_key.secret)


def key_is_active(conn: psycopg.Connection, secret: str, pepper: str) -> bool:
    """True when `secret` is a stored, unrevoked key."""
    if not keys.is_well_formed(secret):
        return False
    row = conn.execute(SELECT_ACTIVE_KEY_ID, {"key_hash": keys.hash_key(secret, pepper)}).fetchone()
    return row is not None
