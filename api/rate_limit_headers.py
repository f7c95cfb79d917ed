"""The `X-RateLimit-*` headers of every answer to an authenticated caller, from its admission.

As the public API page defines them: the month's limit, the calls it has left, and the epoch
second the next UTC month starts. Unlimited plans say `unlimited` rather than a number a client
could mistake for a limit.
"""

from __future__ import annotations

from werkzeug.datastructures import Headers

from timo_hub.quota.admission import Admission

UNLIMITED = "unlimited"


def add(headers: Headers, admission: Admission) -> None:
    """Add the month's limit, what remains of it and when it resets (to headers without them:
    appending skips the search for earlier values that setting costs)."""
    if admission.limit is None:
        headers.add("X-RateLimit-Limit", UNLIMITED)
        headers.add("X-RateLimit-Remaining", UNLIMITED)
    else:
        headers.add("X-RateLimit-Limit", str(admission.limit))
        headers.add("X-RateLimit-Remaining", str(admission.remaining))
    headers.add("X-RateLimit-Reset", str(admission.period.reset_epoch))
