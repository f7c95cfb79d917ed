"""The `X-RateLimit-*` headers of every answer to an authenticated caller, from its admission.

As the public API page defines them: the month's limit, the calls it has left, and the epoch
second the next UTC month starts. Unlimited plans say `unlimited` rather than a number a client
could mistake for a limit.
"""

from __future__ import annotations

from timo_hub.quota.admission import Admission

UNLIMITED = "unlimited"


def pairs(admission: Admission) -> list[tuple[str, str]]:
    """The month's limit, what remains of it and when it resets, as (name, value) pairs for a
    WSGI header list."""
    reset = ("X-RateLimit-Reset", str(admission.period.reset_epoch))
    if admission.limit is None:
        return [("X-RateLimit-Limit", UNLIMITED), ("X-RateLimit-Remaining", UNLIMITED), reset]
    return [
        ("X-RateLimit-Limit", str(admission.limit)),
        ("X-RateLimit-Remaining", str(admission.remaining)),
        reset,
    ]
