"""The rules of people: sign up, sign in, change a password, invite an account's owner.

Shared by the dashboard and the operator CLI. Passwords are hashed outside any transaction (a hash
takes tens of milliseconds and 64 MiB; no row lock is held meanwhile).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import psycopg

from timo_hub.accounts import service as accounts
from timo_hub.accounts import store as accounts_store
from timo_hub.errors import DomainError, InvalidError, LimitReachedError, NotFoundError
from timo_hub.people import passwords, store
from timo_hub.people.sign_in_throttle import SignInThrottle, person_of
from timo_hub.people.store import User
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

SIGNUP_PLAN = "free"
INVITATION_SECONDS = 72 * 3600
INVITATION_PATH = "/invitations/"
# An invitation link in any text (a log line, a traceback): its token, which signs in, is cut.
_INVITATION_LINK = re.compile(re.escape(INVITATION_PATH) + r"[^/\s?#\"']+")
REDACTED_INVITATION = INVITATION_PATH + "[redacted]"


class SignInRefusedError(DomainError):
    """The email and password do not match a user; the same words whichever was wrong."""


class SignInThrottledError(LimitReachedError):
    """Too many failed sign-ins for this email or from this address; `retry_after` says when."""


class WrongPasswordError(InvalidError):
    """The current password given to change it is not the user's."""


class InvitationNotFoundError(NotFoundError):
    """No usable invitation with that token (never issued, used, replaced or expired)."""


@dataclass(frozen=True)
class Invitation:
    """A one-time link's token (shown once, stored only hashed) and when it stops working."""

    user: User
    token: str
    expires_at: datetime

    def url(self, settings: Settings) -> str:
        """The link to give the invited person."""
        return settings.base_url + INVITATION_PATH + self.token


def redact_invitation_links(text: str) -> str:
    """`text` with the token of every invitation link in it replaced (for logs)."""
    if INVITATION_PATH not in text:
        return text
    return _INVITATION_LINK.sub(REDACTED_INVITATION, text)


def sign_up(runtime: Runtime, email: str, password: str, address: str | None) -> User:
    """Open an account on the free plan, with no API key yet, and its owner."""
    email = accounts.checked_email(email)
    passwords.check_policy(password, email)
    throttle = SignInThrottle(runtime.redis)
    wait = throttle.signup_wait_seconds(address)
    if wait:
        raise SignInThrottledError(
            f"Too many accounts opened from this address; try again in about "
            f"{_minutes(wait)} minute(s).",
            retry_after=wait,
        )
    throttle.count_signup(address)
    password_hash = passwords.hash_password(password)
    with runtime.database.connection() as conn:
        try:
            with conn.transaction():
                account = accounts_store.create_account(conn, email, SIGNUP_PLAN)
                return store.insert_user(conn, account.id, email, password_hash)
        except psycopg.errors.UniqueViolation:
            raise accounts.DuplicateEmailError(
                "An account with this email exists; sign in instead.", field="email"
            ) from None


def sign_in(
    runtime: Runtime,
    email: str,
    password: str,
    address: str | None,
    *,
    known_devices: Collection[str] = (),
) -> User:
    """The user these credentials belong to, or SignInRefusedError / SignInThrottledError.

    `known_devices`: the device marks (`device_mark`) the browser carries; a browser that signed
    in as this user before answers only to its own count (see `sign_in_throttle`).
    """
    try:
        address_given = accounts.checked_email(email)
    except accounts.InvalidEmailError:
        user = None  # not an address: nobody's, and answered exactly as an unknown one
    else:
        with runtime.database.connection() as conn:
            user = store.find_user_by_email(conn, address_given)
    # Counted by whom the email names (every spelling of one user's email is one person), and
    # checked before the password, so a throttled guess learns nothing.
    person = person_of(user.id if user else None, email)
    known = user is not None and device_mark(user) in known_devices
    throttle = SignInThrottle(runtime.redis)
    _check_throttle(throttle, person, address, known)
    # An unknown email costs a hash check too, so the answer's timing does not tell them apart.
    if not passwords.verify(user.password_hash if user else None, password) or user is None:
        throttle.count_failure(person, address)
        raise SignInRefusedError("That email and password do not match an account.")
    throttle.clear(person, address)
    assert user.password_hash is not None
    if passwords.needs_rehash(user.password_hash):
        with runtime.database.connection() as conn:
            store.replace_hash(conn, user.id, passwords.hash_password(password))
    return user


def device_mark(user: User) -> str:
    """What a browser that signed in as `user` remembers: the user and the password's epoch (a
    password change forgets every device), as a digest."""
    name = f"device:{user.id}:{user.session_epoch}"
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def get_user(runtime: Runtime, user_id: uuid.UUID) -> User | None:
    """The user with this id, or None (deleted with their account)."""
    with runtime.database.connection() as conn:
        return store.get_user(conn, user_id)


def change_password(
    runtime: Runtime, user_id: uuid.UUID, current: str, new: str, address: str | None
) -> User:
    """Replace the user's password, which ends every session begun under the old one.

    Wrong current passwords are limited per user, whatever the address (a stolen session cannot
    guess its way to the password), and are kept apart from sign-in's counts (they cannot be
    used to hold the owner's sign-in back).
    """
    user = get_user(runtime, user_id)
    if user is None:
        raise accounts.AccountNotFoundError("This user no longer exists.")
    throttle = SignInThrottle(runtime.redis)
    wait = throttle.password_change_wait_seconds(user.id)
    if wait:
        raise SignInThrottledError(
            f"Too many wrong passwords; try again in about {_minutes(wait)} minute(s).",
            retry_after=wait,
        )
    if not passwords.verify(user.password_hash, current):
        throttle.count_password_change_failure(user.id)
        raise WrongPasswordError("Your current password is not right.", field="current_password")
    passwords.check_policy(new, user.email)
    return _store_password(runtime, user.id, passwords.hash_password(new))


def invite_owner(runtime: Runtime, account_id: uuid.UUID) -> Invitation:
    """A one-time link for the account's owner to set a password (made the owner if need be).

    A new invitation voids the owner's earlier ones; setting a password through it ends the
    owner's sessions, so it also serves as an operator's password reset.
    """
    account = accounts.get_account(runtime, account_id)
    token = secrets.token_urlsafe(32)
    with runtime.database.connection() as conn, conn.transaction():
        user = _owner(conn, account)
        expires_at = store.insert_invitation(conn, user.id, _token_hash(token), INVITATION_SECONDS)
    return Invitation(user=user, token=token, expires_at=expires_at)


def set_owner_password(runtime: Runtime, account_id: uuid.UUID, password: str) -> User:
    """Give the account's owner this password (making the owner if need be), as an operator
    would: the policy applies, and the owner's sessions end."""
    account = accounts.get_account(runtime, account_id)
    passwords.check_policy(password, account.email)
    password_hash = passwords.hash_password(password)
    with runtime.database.connection() as conn, conn.transaction():
        user = _owner(conn, account)
        changed = store.set_password(conn, user.id, password_hash)
    assert changed is not None
    return changed


def owner_signs_in_with(runtime: Runtime, account_id: uuid.UUID, password: str) -> bool:
    """True when the account's owner has this password."""
    with runtime.database.connection() as conn:
        user = store.account_owner(conn, account_id)
    return user is not None and passwords.verify(user.password_hash, password)


def owner_has_password(runtime: Runtime, account_id: uuid.UUID) -> bool:
    """True when the account's owner can sign in with a password (has set one)."""
    with runtime.database.connection() as conn:
        user = store.account_owner(conn, account_id)
    return user is not None and user.password_hash is not None


def invited_user(runtime: Runtime, token: str) -> User:
    """The user a still usable invitation is for, or InvitationNotFoundError."""
    with runtime.database.connection() as conn:
        user_id = store.usable_invitation(conn, _token_hash(token))
        user = store.get_user(conn, user_id) if user_id is not None else None
    if user is None:
        raise InvitationNotFoundError("This link was used already, replaced, or has expired.")
    return user


def accept_invitation(runtime: Runtime, token: str, password: str) -> User:
    """Set the invited user's password through the link, which then stops working."""
    user = invited_user(runtime, token)
    passwords.check_policy(password, user.email)
    password_hash = passwords.hash_password(password)
    with runtime.database.connection() as conn, conn.transaction():
        # Used and the password set in one transaction: two submissions cannot both succeed.
        if store.use_invitation(conn, _token_hash(token)) != user.id:
            raise InvitationNotFoundError("This link was used already, replaced, or has expired.")
        changed = store.set_password(conn, user.id, password_hash)
    assert changed is not None
    return changed


def _owner(conn: psycopg.Connection, account: accounts_store.Account) -> User:
    """The account's owner, made (with no password yet) if the account has none."""
    user = store.account_owner(conn, account.id)
    if user is None:
        user = store.insert_user(conn, account.id, account.email, None)
    return user


def _check_throttle(
    throttle: SignInThrottle, person: str, address: str | None, known_device: bool
) -> None:
    wait = throttle.wait_seconds(person, address, known_device=known_device)
    if wait:
        raise SignInThrottledError(
            f"Too many failed sign-ins; try again in about {_minutes(wait)} minute(s).",
            retry_after=wait,
        )


def _minutes(seconds: int) -> int:
    return max(1, round(seconds / 60))


def _store_password(runtime: Runtime, user_id: uuid.UUID, password_hash: str) -> User:
    with runtime.database.connection() as conn:
        user = store.set_password(conn, user_id, password_hash)
    if user is None:
        raise accounts.AccountNotFoundError("This user no longer exists.")
    return user


def _token_hash(token: str) -> bytes:
    # Tokens are 256 random bits: a plain SHA-256 is enough to make a stolen table useless.
    return hashlib.sha256(token.encode()).digest()
