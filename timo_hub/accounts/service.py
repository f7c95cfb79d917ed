"""The rules of accounts and keys, shared by the HTTP API and the operator CLI.

Each function runs one transaction and, for changes that affect authentication (revoke, suspend,
plan change), publishes the cache invalidation after the commit and before returning, so that by
the time a caller sees the answer every web process has been told.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, Literal

import psycopg

from timo_hub.accounts import store
from timo_hub.accounts.cache import TTL_SECONDS, publish_invalidation
from timo_hub.errors import (
    ConflictError,
    DomainError,
    InvalidError,
    LimitReachedError,
    NotFoundError,
)
from timo_hub.platform.runtime import Runtime

MAX_ACTIVE_KEYS = 25
FIRST_KEY_NAME = "Default key"
# No blanks or control characters anywhere (PostgreSQL refuses NUL in text; the rest are typos).
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")


class AccountNotFoundError(NotFoundError):
    """No account with that id."""


class ChangeNotAnnouncedError(DomainError):
    """The change is committed, but Redis could not be told: running web processes may act on
    what they cached before it for up to the cache's TTL. `committed` is the changed record."""

    def __init__(self, done: str, *, committed: Any) -> None:
        super().__init__(
            f"{done}, but the running web processes could not be told (Redis did not answer): "
            f"they may go on accepting it for up to {TTL_SECONDS:.0f} s."
        )
        self.committed = committed


class KeyNotFoundError(NotFoundError):
    """No key with that id (for this account)."""


class UnknownPlanError(InvalidError):
    """No plan with that name."""


class InvalidEmailError(InvalidError):
    """Not an email address."""


class DuplicateEmailError(ConflictError):
    """Another account already uses that email (in any letter case)."""


class KeyLimitReachedError(LimitReachedError):
    """The account already has the maximum number of active keys."""


def parse_id(raw: str, error: type[NotFoundError], noun: str) -> uuid.UUID:
    """Parse a resource id; a malformed id is simply not found."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise error(f"No {noun} with id {raw!r}.") from None


def checked_email(email: str) -> str:
    """`email` without surrounding blanks, or InvalidEmailError if it is not an address."""
    email = email.strip()
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidEmailError(f"{email!r} is not an email address.", field="email")
    return email


def create_account(
    runtime: Runtime, email: str, plan: str
) -> tuple[store.Account, store.IssuedKey]:
    """Open an account on `plan` with its first key."""
    email = checked_email(email)
    with runtime.database.connection() as conn:
        _check_plan(conn, plan)
        try:
            with conn.transaction():
                account = store.create_account(conn, email, plan)
        except psycopg.errors.UniqueViolation:
            raise DuplicateEmailError(f"An account with email {email!r} exists.") from None
        issued = store.insert_key(conn, account.id, FIRST_KEY_NAME, runtime.settings.key_pepper)
    return account, issued


def get_account(runtime: Runtime, account_id: uuid.UUID) -> store.Account:
    """The account, or AccountNotFoundError."""
    with runtime.database.connection() as conn:
        account = store.get_account(conn, account_id)
    if account is None:
        raise AccountNotFoundError(f"No account with id {account_id}.")
    return account


def list_plans(runtime: Runtime) -> list[store.Plan]:
    """Every plan, cheapest first."""
    with runtime.database.connection() as conn:
        return store.list_plans(conn)


def issue_key(
    runtime: Runtime,
    account_id: uuid.UUID,
    name: str,
    within: Callable[[psycopg.Connection, store.ApiKey], None] | None = None,
) -> store.IssuedKey:
    """Create a key, refusing beyond `MAX_ACTIVE_KEYS` active keys; `within` runs in the same
    transaction (so what it records, a webhook, exists if and only if the key does)."""
    with runtime.database.connection() as conn:
        # The row lock serialises concurrent creations for one account, so the count holds.
        if not store.lock_account(conn, account_id):
            raise AccountNotFoundError(f"No account with id {account_id}.")
        if store.count_active_keys(conn, account_id) >= MAX_ACTIVE_KEYS:
            raise KeyLimitReachedError(
                f"An account may have at most {MAX_ACTIVE_KEYS} active keys; revoke one first.",
                max_active_keys=MAX_ACTIVE_KEYS,
            )
        issued = store.insert_key(conn, account_id, name, runtime.settings.key_pepper)
        if within is not None:
            within(conn, issued.key)
        return issued


def list_keys(
    runtime: Runtime, account_id: uuid.UUID, limit: int | None = None
) -> list[store.ApiKey]:
    """The account's keys, newest first (at most `limit`)."""
    with runtime.database.connection() as conn:
        return store.list_keys(conn, account_id, limit)


def revoke_key(
    runtime: Runtime,
    key_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    within: Callable[[psycopg.Connection, store.ApiKey], None] | None = None,
) -> store.ApiKey:
    """Revoke a key (only one of `account_id`'s, when given) and tell every web process;
    `within` runs in the same transaction."""
    with runtime.database.connection() as conn:
        key = store.revoke_key(conn, key_id, account_id)
        if key is not None and within is not None:
            within(conn, key)
    if key is None:
        raise KeyNotFoundError(f"No API key with id {key_id}.")
    if not publish_invalidation(runtime.redis, key_id=key.id):
        raise ChangeNotAnnouncedError(f"Key {key.id} is revoked", committed=key)
    return key


MAX_ALERT_THRESHOLDS = 10


def set_alert_thresholds(
    runtime: Runtime, account_id: uuid.UUID, thresholds: list[int]
) -> list[int]:
    """Set the percentages of the monthly quota at which `quota.threshold_reached` fires
    (each 1 to 100, at most 10, kept ascending and once each); effective on the next request."""
    wanted = sorted(set(thresholds))
    if len(wanted) > MAX_ALERT_THRESHOLDS or any(not 1 <= t <= 100 for t in wanted):
        raise InvalidError(
            f"Alert thresholds are at most {MAX_ALERT_THRESHOLDS} whole percentages from 1 to 100.",
            field="thresholds",
        )
    with runtime.database.connection() as conn:
        if not store.set_alert_thresholds(conn, account_id, wanted):
            raise AccountNotFoundError(f"No account with id {account_id}.")
    if not publish_invalidation(runtime.redis, account_id=account_id):
        raise ChangeNotAnnouncedError(
            f"Account {account_id}'s alert thresholds are set", committed=wanted
        )
    return wanted


def alert_thresholds(runtime: Runtime, account_id: uuid.UUID) -> list[int]:
    """The account's alert thresholds (percent, ascending)."""
    with runtime.database.connection() as conn:
        found = store.alert_thresholds(conn, account_id)
    if found is None:
        raise AccountNotFoundError(f"No account with id {account_id}.")
    return found


def set_plan(runtime: Runtime, account_id: uuid.UUID, plan: str) -> store.Account:
    """Move an account to another plan, effective on its next request."""
    with runtime.database.connection() as conn:
        _check_plan(conn, plan)
        if not store.set_plan(conn, account_id, plan):
            raise AccountNotFoundError(f"No account with id {account_id}.")
    return _announced(runtime, account_id, f"Account {account_id} is on plan {plan!r}")


FOLLOW_PLAN = "plan"
"""A limit setting that drops the account's own limit: its plan's applies again."""
UNLIMITED = "unlimited"
"""A limit setting for no limit at all."""
LimitSetting = int | Literal["plan", "unlimited"]
LIMIT_POLICIES = ("month", "burst")


def set_limits(
    runtime: Runtime, account_id: uuid.UUID, changes: dict[str, LimitSetting]
) -> store.Account:
    """Give the account its own limits (by policy: `month`, `burst`) in place of its plan's: a
    number of calls, `unlimited`, or `plan` to follow the plan again. Effective on its next
    request; kept across plan changes (they are the account's contract)."""
    for policy, setting in changes.items():
        if policy not in LIMIT_POLICIES:
            raise InvalidError(f"Unknown limit {policy!r}.", field="policy")
        lowest = 1 if policy == "burst" else 0  # a window that admits nothing never opens
        if isinstance(setting, int) and not lowest <= setting <= MAX_LIMIT:
            raise InvalidError(
                f"A {policy} limit is a whole number of calls from {lowest} to {MAX_LIMIT:,} "
                "(suspend an account to refuse all its calls).",
                field=policy,
            )
    with runtime.database.connection() as conn, conn.transaction():
        if not store.lock_account(conn, account_id):
            raise AccountNotFoundError(f"No account with id {account_id}.")
        for policy, setting in changes.items():
            if setting == FOLLOW_PLAN:
                store.clear_limit_override(conn, account_id, policy)
            else:
                calls = None if setting == UNLIMITED else int(setting)
                store.set_limit_override(conn, account_id, policy, calls)
    return _announced(runtime, account_id, f"Account {account_id}'s limits are set")


def limit_overrides(runtime: Runtime, account_id: uuid.UUID) -> dict[str, int | None]:
    """The limits set for the account itself, by policy (None: unlimited)."""
    with runtime.database.connection() as conn:
        return store.limit_overrides(conn, account_id)


# The largest Integer a Structured Field (the RateLimit headers) can carry (RFC 9651: 15
# digits); far beyond any contract, and inside Redis's and Lua's exact integers.
MAX_LIMIT = 999_999_999_999_999


def set_status(runtime: Runtime, account_id: uuid.UUID, status: str) -> store.Account:
    """Suspend or reactivate an account, effective on its next request."""
    with runtime.database.connection() as conn:
        if not store.set_status(conn, account_id, status):
            raise AccountNotFoundError(f"No account with id {account_id}.")
    return _announced(runtime, account_id, f"Account {account_id} is {status}")


def _announced(runtime: Runtime, account_id: uuid.UUID, done: str) -> store.Account:
    """Tell the web processes of a committed change to an account; the account as it is now."""
    announced = publish_invalidation(runtime.redis, account_id=account_id)
    account = get_account(runtime, account_id)
    if not announced:
        raise ChangeNotAnnouncedError(done, committed=account)
    return account


def _check_plan(conn: psycopg.Connection, plan: str) -> None:
    plans = store.plan_names(conn)
    if plan not in plans:
        raise UnknownPlanError(
            f"Unknown plan {plan!r}; choose one of {', '.join(plans)}.", field="plan"
        )
