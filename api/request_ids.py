"""Request ids: echo a caller's `X-Request-ID` when it is sane, otherwise make one.

The gate keeps the id in `g.request_id` for logs and problem bodies, and sends it in the
`X-Request-ID` header of every response, so a client can quote it and an operator can find the
request.
"""

from __future__ import annotations

import os
import re

HEADER = "X-Request-ID"
# Anything else (too long, control characters, spaces) is replaced, never reflected.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def accept_or_make(supplied: str | None) -> str:
    """The caller's id if it is a sane token, else a new one."""
    if supplied and _ACCEPTABLE.match(supplied):
        return supplied
    # 128 random bits as hex, like a UUID4 without the UUID object (this runs on every request).
    return os.urandom(16).hex()
