"""The API key format: `timo_live_` + 32 base62 characters of randomness + 6 base62 checksum.

The body carries 190 bits from `secrets`; the checksum is the CRC32 of the body in base62 (the
scheme GitHub uses for its tokens), so a mistyped or truncated key is refused before any database
or cache lookup, and secret scanners can match the pattern `timo_live_[0-9A-Za-z]{38}`. Only an
HMAC-SHA256 of the whole key under the server's pepper is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "timo_live_"
BODY_LENGTH = 32
CHECKSUM_LENGTH = 6
DISPLAY_LENGTH = len(PREFIX) + 4  # 'timo_live_abc1', as the key list shows it
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PATTERN = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$")
# Anything key-shaped inside a text, a mistyped or cut one included: what `redact` hides.
_KEY_LIKE = re.compile(rf"{PREFIX}[0-9A-Za-z]{{8,}}")


@dataclass(frozen=True)
class NewApiKey:
    """A freshly generated key: the secret (shown once), its stored hash and display prefix."""

    secret: str
    key_hash: bytes
    prefix: str


def generate(pepper: str) -> NewApiKey:
    """Make a new random key and the values to store for it."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    secret = f"{PREFIX}{body}{_checksum(body)}"
    return NewApiKey(
        secret=secret, key_hash=hash_key(secret, pepper), prefix=display_prefix(secret)
    )


def is_well_formed(candidate: str) -> bool:
    """True when `candidate` has our shape and its checksum matches; no I/O."""
    if not PATTERN.match(candidate):
        return False
    body = candidate[len(PREFIX) : len(PREFIX) + BODY_LENGTH]
    return hmac.compare_digest(candidate[-CHECKSUM_LENGTH:], _checksum(body))


def hash_key(secret: str, pepper: str) -> bytes:
    """The value stored for a key: HMAC-SHA256(pepper, key)."""
    return hmac.digest(pepper.encode(), secret.encode(), hashlib.sha256)


class KeyHasher:
    """`hash_key` under one pepper, for the request path.

    The pepper's HMAC state is computed once and copied per key, and the copy hashes without
    letting go of the GIL (the one-shot `hmac.digest` releases it, and a request thread that
    releases the GIL waits behind whatever background thread takes it).
    """

    def __init__(self, pepper: str) -> None:
        self._keyed = hmac.new(pepper.encode(), digestmod=hashlib.sha256)

    def __call__(self, secret: str) -> bytes:
        """HMAC-SHA256(pepper, secret), equal to `hash_key(secret, pepper)`."""
        mac = self._keyed.copy()
        mac.update(secret.encode())
        return mac.digest()


def redact(text: str) -> str:
    """`text` with every key-shaped part cut to its display prefix (for logs, echoed paths and
    anything else a key must never reach whole)."""
    if PREFIX not in text:  # the common case, without the regex
        return text
    return _KEY_LIKE.sub(lambda found: f"{display_prefix(found[0])}[redacted]", text)


def contains_key_like(text: str) -> bool:
    """Whether `text` holds something key-shaped."""
    return PREFIX in text and _KEY_LIKE.search(text) is not None


def display_prefix(secret: str) -> str:
    """The part of a key safe to show in lists and logs."""
    return secret[:DISPLAY_LENGTH]


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))
