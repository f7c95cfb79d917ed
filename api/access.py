"""The gate every `/api/v1` call but health passes: authenticate, then admit against the quota.

In order: the bearer key is resolved (401/429 on failure); a suspended account is refused (403)
without being counted; otherwise the call is admitted and counted in one atomic Redis step, or
refused with 429. Whatever the outcome after authentication, the response carries the rate-limit
headers (see `api.quota.enforcement.add_rate_limit_headers`).
"""

from __future__ import annotations

from flask import Response, after_this_request, g, request

from api.authentication import current_authenticator
from api.problems import ForbiddenError
from api.quota.enforcement import current_quota, refuse

PUBLIC_ENDPOINTS = frozenset({"v1.health"})


def admit_request() -> None:
    """Blueprint `before_request`: let the call through, or raise the problem that refuses it."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    authenticator = current_authenticator()
    principal = authenticator.authenticate()
    g.principal = principal
    quota = current_quota()
    if principal.account_status != "active":
        g.admission = quota.admit(principal, count=False)
        raise ForbiddenError("This account is suspended; contact support.")
    admission = quota.admit(principal)
    g.admission = admission
    if not admission.admitted:
        raise refuse(admission)

    touch = authenticator.touch_later(principal)
    if touch is not None:

        @after_this_request
        def _touch_after_sending(response: Response) -> Response:
            # Runs once the response has gone out: the write costs the caller nothing.
            response.call_on_close(touch)
            return response
