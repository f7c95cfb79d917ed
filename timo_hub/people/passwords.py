"""The password policy (NIST SP 800-63B) and argon2id hashing.

The policy is the one 800-63B asks for: at least 12 characters, no composition rules, no forced
expiry, and a refusal of passwords that are common (the 30,000 commonest of zxcvbn's breach-derived
list), built from the user's own email, or a single character repeated. Long passphrases are
welcome; a cap of 256 characters only keeps one request from being an expensive hash input.

Hashes are argon2id PHC strings with argon2-cffi's defaults (RFC 9106's second recommendation:
t=3, m=64 MiB, p=4); `needs_rehash` tells a sign-in to upgrade a hash made under older parameters.
"""

from __future__ import annotations

import unicodedata
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from timo_hub.errors import InvalidError

MIN_LENGTH = 12
MAX_LENGTH = 256

_HASHER = PasswordHasher()


class WeakPasswordError(InvalidError):
    """The password breaks the policy; `detail` says which rule, in words for its owner."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="password")


@cache
def _common_passwords() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


def normalized(password: str) -> str:
    """The password as hashed and checked: NFKC, as 800-63B suggests for Unicode passwords."""
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, email: str) -> None:
    """Raise WeakPasswordError unless `password` is acceptable for the user with `email`."""
    password = normalized(password)
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(f"Use at least {MIN_LENGTH} characters; a few words work well.")
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"Use at most {MAX_LENGTH} characters.")
    folded = password.casefold()
    if _is_common(folded):
        raise WeakPasswordError("That password is one of the most common; choose another.")
    if len(set(folded)) == 1:
        raise WeakPasswordError("A single character repeated is easy to guess; choose another.")
    local = email.casefold().partition("@")[0]
    if folded in (email.casefold(), local) or (len(local) >= 4 and local in folded):
        raise WeakPasswordError("Your password must not contain your email address.")


def _is_common(folded: str) -> bool:
    """A common password, or one padded with digits and punctuation, or one said twice or more
    ("password2024!", "qwertyqwerty"): the variants guessing tools try first."""
    common = _common_passwords()
    core = folded.strip("0123456789!.?*#@$-_ ")
    if folded in common or core in common:
        return True
    for times in (2, 3, 4):
        unit, left = divmod(len(core), times)
        if left == 0 and unit and core[:unit] * times == core and core[:unit] in common:
            return True
    return False


def hash_password(password: str) -> str:
    """An argon2id hash of the (normalized) password."""
    return _HASHER.hash(normalized(password))


def verify(password_hash: str | None, password: str) -> bool:
    """True when `password` matches `password_hash`.

    A missing hash (no password set yet) is checked against a decoy, so that how long a refusal
    takes does not tell whether the account exists or has a password.
    """
    try:
        return _HASHER.verify(password_hash or _decoy_hash(), normalized(password)) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(password_hash)


@cache
def _decoy_hash() -> str:
    return _HASHER.hash("a decoy that no password matches, hashed once per process")
