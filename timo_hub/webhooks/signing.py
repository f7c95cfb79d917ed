"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret.

Written here rather than taken from the `standardwebhooks` package: signing is one HMAC, and the
package brings an HTTP client and several other dependencies into every process; the tests
verify what we send with that package, so the two are checked against each other.
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
# The specification asks for 24 to 64 random bytes; 32 is HMAC-SHA256's own key size.
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret as customers receive it: `whsec_` and base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signature_header(
    signing_secrets: Iterable[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """The `webhook-signature` value: one `v1,…` per secret, space-separated (during a rotation
    both the new and the old secret sign, so a receiver holding either verifies)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    parts = []
    for secret in signing_secrets:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode("ascii"))
    return " ".join(parts)
