"""The gate every `/api/v1` call but health passes: authenticate, then admit against the quota.

In order: the bearer key is resolved (401/429 on failure); a suspended account is refused (403)
without being counted; otherwise the call is admitted and counted in one atomic Redis step, or
refused with 429. Whatever the outcome after authentication, the response carries the rate-limit
headers (see `api.quota.enforcement.add_rate_limit_headers`).
"""

from __future__ import annotations

from flask import Response, after_this_request, current_app, g, request

from api.authentication import EXTENSION as AUTHENTICATOR
from api.authentication import Authenticator
from api.http_metrics import ADMITTED, REFUSED
from api.metering import start_clock
from api.problems import ForbiddenError
from api.quota.enforcement import EXTENSION as QUOTA
from api.quota.enforcement import Quota, refuse

PUBLIC_ENDPOINTS = frozenset({"v1.health", "v1.get_openapi"})


def admit_request() -> None:
    """Blueprint `before_request`: let the call through, or raise the problem that refuses it."""
    # Resolve the context proxies once: this runs on every call and each hop costs.
    req = request._get_current_object()  # type: ignore[attr-defined]
    if req.endpoint in PUBLIC_ENDPOINTS:
        return
    start_clock()
    extensions = current_app.extensions
    authenticator: Authenticator = extensions[AUTHENTICATOR]
    quota: Quota = extensions[QUOTA]
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    principal = authenticator.authenticate(req.headers.get("Authorization"), req.remote_addr)
    ctx_g.principal = principal
    if principal.account_status != "active":
        ctx_g.admission = quota.admit(principal, count=False)
        raise ForbiddenError("This account is suspended; contact support.")
    admission = quota.admit(principal)
    ctx_g.admission = admission
    if not admission.admitted:
        REFUSED.inc()
        raise refuse(admission)
    ADMITTED.inc()

    touch = authenticator.touch_later(principal)
    if touch is not None:

        @after_this_request
        def _touch_after_sending(response: Response) -> Response:
            # Runs once the response has gone out: the write costs the caller nothing.
            response.call_on_close(touch)
            return response
