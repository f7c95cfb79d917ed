"""Request ids: echo a caller's `X-Request-ID` when it is sane, otherwise make one.

The gate keeps the id in its `RequestState` for logs and problem bodies, and sends it in the
`X-Request-ID` header of every response, so a client can quote it and an operator can find the
request.
"""

from __future__ import annotations

import random
import re

from timo_hub.accounts import key_format

HEADER = "X-Request-ID"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Anything else (too long, control characters, spaces) is replaced, never reflected.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def accept_or_make(supplied: str | None) -> str:
    """The caller's id if it is a sane token, else a new one."""
    # Not an API key either: a client that puts one here (by mistake, or to see it echoed)
    # must not find it in our answers, logs and events.
    if supplied and _ACCEPTABLE.fullmatch(supplied) and not key_format.contains_key_like(supplied):
        return supplied
    # 128 random bits as hex, like a UUID4 without the UUID object. An id names a request, it
    # guards nothing, so it comes from the process's Mersenne Twister (seeded from the OS, and
    # reseeded in every forked worker by `random` itself) rather than a `getrandom(2)` system call
    # per request, which costs ~8 µs on a VM.
    return f"{random.getrandbits(128):032x}"
