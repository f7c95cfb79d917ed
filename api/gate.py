"""The request gate: one way into and out of every request, timed by one clock.

Every request passes `open_request` first and `close_request` last; `/api/v1` calls other than
health and the OpenAPI document also pass `admit_request` in between:

1. `open_request` gives the request its id and starts its clock: a wall-clock reading (which
   decides the call's quota month and its event's `occurred_at`) and a monotonic one.
2. `admit_request` authenticates the bearer key (401, or 429 for an address sending bad keys),
   refuses a suspended account (403, not counted), and admits and counts the call in one atomic
   Redis step, or refuses it (429).
3. `close_request` reads the clock once and hands the same interval to the usage event's
   `duration_ms`, the latency histogram and the access log line; it adds the rate-limit headers
   to every answer of an authenticated caller (errors included) and the `X-Request-ID` header.

The pieces each do one thing in their own module (`authentication`, `metering`, `http_metrics`,
`access_log`, `request_ids`, `rate_limit_headers`); this module only says in which order.
"""

from __future__ import annotations

import time
from typing import Any, cast

from flask import Flask, Response, after_this_request
from flask.ctx import RequestContext
from flask.globals import app_ctx, request_ctx

from api import access_log, authentication, http_metrics, metering, rate_limit_headers, request_ids
from api.authentication import Authenticator
from api.problems import ForbiddenError
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.counting import counts
from timo_hub.quota.enforcer import QuotaEnforcer, quota_exceeded

QUOTA_EXTENSION = "timo_quota"
PUBLIC_ENDPOINTS = frozenset({"v1.health", "v1.get_openapi"})


class RequestClock:
    """When a request started: epoch seconds (what it counts as) and a monotonic reading."""

    __slots__ = ("started_at", "started_perf")

    def __init__(self) -> None:
        self.started_at = time.time()
        self.started_perf = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the request started."""
        return time.perf_counter() - self.started_perf


def _request_context() -> RequestContext:
    # One hop through Flask's context proxy, rather than one per attribute read through it.
    return cast(RequestContext, cast(Any, request_ctx)._get_current_object())


def open_request() -> None:
    """App `before_request`, the first: the request's id and clock."""
    ctx_g = app_ctx.g
    ctx_g.clock = RequestClock()
    # The WSGI environ's key for the header, read directly: `request.headers` translates the
    # name on every lookup.
    ctx_g.request_id = request_ids.accept_or_make(
        request_ctx.request.environ.get(request_ids.ENVIRON_KEY)
    )


def admit_request() -> None:
    """v1 blueprint `before_request`: let the call through, or raise the problem refusing it."""
    # Resolve the context proxies once: this runs on every call and each hop costs.
    ctx = _request_context()
    req = ctx.request
    if req.endpoint in PUBLIC_ENDPOINTS:
        return
    extensions = ctx.app.extensions
    authenticator: Authenticator = extensions[authentication.EXTENSION]
    quota: QuotaEnforcer = extensions[QUOTA_EXTENSION]
    ctx_g = app_ctx.g
    now = ctx_g.clock.started_at
    principal = authenticator.authenticate(req.environ.get("HTTP_AUTHORIZATION"), req.remote_addr)
    ctx_g.principal = principal
    if principal.account_status != "active":
        ctx_g.admission = quota.admit(principal, now, count=False)
        raise ForbiddenError("This account is suspended; contact support.")
    admission = quota.admit(principal, now)
    ctx_g.admission = admission
    if not admission.admitted:
        http_metrics.count_admission(False)
        raise quota_exceeded(admission, now)
    http_metrics.count_admission(True)

    touch = authenticator.touch_later(principal)
    if touch is not None:

        @after_this_request
        def _touch_after_sending(response: Response) -> Response:
            # Runs once the response has gone out: the write costs the caller nothing.
            response.call_on_close(touch)
            return response


def close_request(response: Response) -> Response:
    """App `after_request`, the only one: meter, count, log and label the finished answer."""
    ctx = _request_context()
    ctx_g, req, extensions = app_ctx.g, ctx.request, ctx.app.extensions
    # First, so that even an answer this hook fails to finish (a 500) can be quoted to support.
    request_id = ctx_g.get("request_id") or request_ids.accept_or_make(None)
    response.headers.add(request_ids.HEADER, request_id)  # a new answer has none to replace
    clock: RequestClock | None = ctx_g.get("clock")
    elapsed = clock.elapsed() if clock is not None else None
    status = response.status_code
    admission = ctx_g.get("admission")
    if admission is not None:
        rate_limit_headers.add(response.headers, admission)
    principal = ctx_g.get("principal")
    if (
        principal is not None
        and clock is not None
        and elapsed is not None
        and not ctx_g.get("event_recorded")
    ):
        metering.record_call(
            extensions[metering.EXTENSION],
            req,
            principal,
            status,
            clock.started_at,
            elapsed,
            ctx_g.request_id,
        )
        # If a later step fails, Flask answers 500 and runs this hook again on that answer: the
        # call already has its event (and its refund) and must not get a second one.
        ctx_g.event_recorded = True
        if admission is not None and admission.admitted and not counts(status):
            # Admitted, then answered 503 by the handler (a store it needed was down): the event
            # says the call does not count, so neither may the quota.
            extensions[QUOTA_EXTENSION].refund(principal, admission)
    http_metrics.count(req, status, elapsed)
    access_log.log_request(req, status, elapsed, request_id, principal)
    return response


def init_app(app: Flask, runtime: Runtime) -> dict[str, Any]:
    """Build the gate's parts for `app` (authenticator, quota, event publisher) and hook it in."""
    parts = {
        authentication.EXTENSION: authentication.Authenticator(runtime),
        QUOTA_EXTENSION: QuotaEnforcer(runtime),
        metering.EXTENSION: metering.build_publisher(runtime),
    }
    app.extensions.update(parts)
    app.before_request(open_request)
    app.after_request(close_request)
    return parts
