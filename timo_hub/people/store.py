"""Users and invitations in PostgreSQL: every statement that reads or writes them.

Functions take a connection first and leave transaction control to the caller, as in
`timo_hub.accounts.store`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

USER_COLUMNS = """
    id, account_id, email, role, password_hash, session_epoch, created_at, password_changed_at
"""
SELECT_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = %(id)s"
SELECT_USER_BY_EMAIL = f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower(%(email)s)"
SELECT_ACCOUNT_OWNER = f"""
SELECT {USER_COLUMNS} FROM users WHERE account_id = %(account_id)s AND role = 'owner'
ORDER BY created_at LIMIT 1
"""
INSERT_USER = f"""
INSERT INTO users (account_id, email, password_hash, password_changed_at)
VALUES (%(account_id)s, %(email)s, %(password_hash)s,
        CASE WHEN %(password_hash)s::text IS NULL THEN NULL ELSE now() END)
RETURNING {USER_COLUMNS}
"""
# A new password ends every session begun under the old one (their epoch no longer matches).
UPDATE_PASSWORD = f"""
UPDATE users SET password_hash = %(password_hash)s, password_changed_at = now(),
                 session_epoch = session_epoch + 1
WHERE id = %(id)s
RETURNING {USER_COLUMNS}
"""
# A rehash under stronger parameters is the same password: sessions go on.
UPDATE_HASH_ONLY = "UPDATE users SET password_hash = %(password_hash)s WHERE id = %(id)s"
INSERT_INVITATION = """
INSERT INTO user_invitations (token_hash, user_id, expires_at)
VALUES (%(token_hash)s, %(user_id)s, now() + make_interval(secs => %(seconds)s))
RETURNING expires_at
"""
# Taking an invitation marks it used in the same statement, so two uses cannot both succeed.
USE_INVITATION = """
UPDATE user_invitations SET used_at = now()
WHERE token_hash = %(token_hash)s AND used_at IS NULL AND expires_at > now()
RETURNING user_id
"""
SELECT_USABLE_INVITATION = """
SELECT user_id FROM user_invitations
WHERE token_hash = %(token_hash)s AND used_at IS NULL AND expires_at > now()
"""
# A new invitation replaces the user's earlier ones: only the last link printed works.
EXPIRE_INVITATIONS = """
UPDATE user_invitations SET used_at = now() WHERE user_id = %(user_id)s AND used_at IS NULL
"""


@dataclass(frozen=True)
class User:
    """A person who signs in, and the account they belong to."""

    id: uuid.UUID
    account_id: uuid.UUID
    email: str
    role: str
    password_hash: str | None
    session_epoch: int
    created_at: datetime
    password_changed_at: datetime | None


def get_user(conn: psycopg.Connection, user_id: uuid.UUID) -> User | None:
    """The user with this id, or None."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(SELECT_USER, {"id": user_id}).fetchone()


def find_user_by_email(conn: psycopg.Connection, email: str) -> User | None:
    """The user with this email, compared case-insensitively."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(SELECT_USER_BY_EMAIL, {"email": email}).fetchone()


def account_owner(conn: psycopg.Connection, account_id: uuid.UUID) -> User | None:
    """The account's owner, if it has one yet."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(SELECT_ACCOUNT_OWNER, {"account_id": account_id}).fetchone()


def insert_user(
    conn: psycopg.Connection, account_id: uuid.UUID, email: str, password_hash: str | None
) -> User:
    """Add the owner of an account (with no password yet when `password_hash` is None)."""
    params = {"account_id": account_id, "email": email, "password_hash": password_hash}
    with conn.cursor(row_factory=class_row(User)) as cur:
        user = cur.execute(INSERT_USER, params).fetchone()
    assert user is not None
    return user


def set_password(conn: psycopg.Connection, user_id: uuid.UUID, password_hash: str) -> User | None:
    """Store a new password, ending the user's sessions; None if there is no such user."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(
            UPDATE_PASSWORD, {"id": user_id, "password_hash": password_hash}
        ).fetchone()


def replace_hash(conn: psycopg.Connection, user_id: uuid.UUID, password_hash: str) -> None:
    """Store a stronger hash of the same password."""
    conn.execute(UPDATE_HASH_ONLY, {"id": user_id, "password_hash": password_hash})


def insert_invitation(
    conn: psycopg.Connection, user_id: uuid.UUID, token_hash: bytes, seconds: float
) -> datetime:
    """Record an invitation valid for `seconds`, voiding the user's earlier ones; its expiry."""
    conn.execute(EXPIRE_INVITATIONS, {"user_id": user_id})
    row = conn.execute(
        INSERT_INVITATION, {"token_hash": token_hash, "user_id": user_id, "seconds": seconds}
    ).fetchone()
    assert row is not None
    return row[0]


def usable_invitation(conn: psycopg.Connection, token_hash: bytes) -> uuid.UUID | None:
    """The user an unused, unexpired invitation is for, or None."""
    row = conn.execute(SELECT_USABLE_INVITATION, {"token_hash": token_hash}).fetchone()
    return row[0] if row else None


def use_invitation(conn: psycopg.Connection, token_hash: bytes) -> uuid.UUID | None:
    """Mark an unused, unexpired invitation used; the user it was for, or None."""
    row = conn.execute(USE_INVITATION, {"token_hash": token_hash}).fetchone()
    return row[0] if row else None
