"""The request gate: one way into and out of every request, timed by one clock.

`Gate` is a WSGI middleware around the Flask app, so every request passes it, including those
Flask answers with an error; `/api/v1` calls other than health and the OpenAPI document also pass
`admit_request`, the v1 blueprint's only hook, once Flask has routed them:

1. On the way in, the gate gives the request its id and starts its clock (`RequestState`): a
   wall-clock reading, which decides the call's quota month and its event's `occurred_at`, and a
   monotonic one.
2. `admit_request` authenticates the bearer key (401, or 429 for an address sending bad keys),
   refuses a suspended account (403, not counted), and admits and counts the call in one atomic
   Redis step across its month and its burst window, or refuses it (429, naming the window).
3. On the way out, once Flask has started its answer and before any byte of it is sent, the gate
   reads the clock once and hands the same interval to the usage event's `duration_ms`, the
   latency histogram and the access log line; it adds the rate-limit headers to every answer of an
   authenticated caller (errors included) and the `X-Request-ID` header to every answer. If the
   caller's event cannot be written, the answer becomes a 500 problem (none of it was sent); the
   histogram and the access line are bookkeeping, and their failure fails no call.

Anything run while the body is sent (nothing streams today) runs after the request's state is
closed: it sees no current request, and the duration does not include it.

A middleware rather than Flask's `before_request`/`after_request` hooks: the hooks' dispatch, the
hops through Flask's context proxies and the headers added to a `Response` (each validated, then
copied and validated again when the answer is sent) cost a third of the gate. Here the headers are
appended, already valid, to the list the server sends.

The pieces each do one thing in their own module (`authentication`, `metering`, `http_metrics`,
`access_log`, `request_ids`, `rate_limit_headers`, `request_state`); this module only says in
which order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask
from flask.ctx import RequestContext
from flask.globals import request_ctx
from werkzeug.wsgi import ClosingIterator

from api import (
    access_log,
    authentication,
    http_metrics,
    metering,
    problems,
    rate_limit_headers,
    request_ids,
    request_state,
)
from api.authentication import Authenticator
from api.problems import ForbiddenError, ServiceUnavailableError
from api.request_state import RequestState
from events.publisher import EventPublisher
from timo_hub.accounts import key_format
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import MONTH_POLICY
from timo_hub.quota.counting import counts
from timo_hub.quota.enforcer import QuotaEnforcer, refusal
from timo_hub.webhooks.dispatch import DeliveryQueue
from timo_hub.webhooks.quota_watch import QuotaWatch

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

QUOTA_EXTENSION = "timo_quota"
DELIVERIES_EXTENSION = "timo_webhook_deliveries"
WATCH_EXTENSION = "timo_quota_watch"
PUBLIC_ENDPOINTS = frozenset({"v1.health", "v1.get_openapi"})

logger = logging.getLogger(__name__)


class Gate:
    """WSGI middleware: opens each request's state; meters, counts, logs and labels its answer."""

    def __init__(
        self, app: WSGIApplication, publisher: EventPublisher, quota: QuotaEnforcer
    ) -> None:
        self.app = app
        self.publisher = publisher
        self.quota = quota

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        state = RequestState(environ.get(request_ids.ENVIRON_KEY))
        entered = request_state.enter(state)
        try:
            started: list[tuple[str, list[tuple[str, str]]]] = []

            def start(
                status_line: str,
                headers: list[tuple[str, str]],
                exc_info: OptExcInfo | None = None,
            ) -> Callable[[bytes], object]:
                # Held until the call is closed below, so that a failure to close it can still
                # change the answer; a later start (with `exc_info`) replaces an earlier one.
                started.append((status_line, headers))
                return _no_write

            body: Iterable[bytes] = self.app(environ, start)
            status_line, headers = started[-1]
            answered = _Answered(state, environ, int(status_line[:3]))
            # Before the server sends a byte: the event is durable before the answer leaves.
            if not self._meter(state, answered):
                _close_body(body)
                status_line, headers, body = self._unmetered_answer(state, answered)
                answered.status = 500
                self._refund(state)  # no event says it was served: nor may the quota
            self._count_and_log(state, answered)
            # Appended to the app's list: a new answer has none of these to replace, and every
            # value is already a valid header value (ids, integers).
            headers.append((request_ids.HEADER, state.request_id))
            if state.admission is not None:
                headers.extend(rate_limit_headers.pairs(state.admission, state.clock.started_at))
            _add_safety_headers(headers, answered)
            try:
                start_response(status_line, headers)
            except BaseException:
                _close_body(body)  # the server will not iterate it, so would not close it
                raise
            if state.touch is not None:
                return ClosingIterator(body, state.touch)
            return body
        finally:
            request_state.leave(entered)

    def _meter(self, state: RequestState, answered: _Answered) -> bool:
        """Publish the caller's event and refund a call that does not count; False if the event
        could not be written (logged)."""
        principal = state.principal
        if principal is None:
            return True
        try:
            metering.record_call(
                self.publisher,
                answered.rule if answered.rule is not None else answered.path,
                answered.method,
                principal,
                answered.status,
                state.clock.started_at,
                answered.elapsed,
                state.request_id,
            )
        except Exception:
            logger.exception("could not record the call (request_id=%s)", state.request_id)
            return False
        if not counts(answered.status):
            # Admitted, then answered 5xx (our failure, not the caller's): the event says the
            # call does not count, so neither may any window of the quota.
            self._refund(state)
        return True

    def _refund(self, state: RequestState) -> None:
        admission = state.admission
        if state.principal is not None and admission is not None and admission.admitted:
            self.quota.refund(state.principal, admission)

    def _count_and_log(self, state: RequestState, answered: _Answered) -> None:
        """The latency histogram and the access line: bookkeeping, which never fails a call."""
        try:
            http_metrics.count(answered.rule, answered.method, answered.status, answered.elapsed)
        except Exception:
            logger.exception("could not count the request (request_id=%s)", state.request_id)
        try:
            access_log.log_request(
                answered.method,
                answered.path,
                answered.rule,
                answered.status,
                answered.elapsed,
                state,
            )
        except Exception:
            logger.exception("could not log the request (request_id=%s)", state.request_id)

    def _unmetered_answer(
        self, state: RequestState, answered: _Answered
    ) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        """A 500 in place of an answer whose event could not be written: nothing of that answer
        has been sent."""
        document = problems.problem_body(
            500,
            problems.ApiError.slug,
            problems.ApiError.title,
            "The server failed to handle this request; quote the request_id to support.",
            key_format.redact(answered.path),
            state.request_id,
        ).encode()
        headers = [
            ("Content-Type", problems.PROBLEM_CONTENT_TYPE),
            ("Content-Length", str(len(document))),
        ]
        return "500 INTERNAL SERVER ERROR", headers, [document]


class _Answered:
    """What the gate records of an answered request: its route, method, path, status, duration."""

    __slots__ = ("elapsed", "method", "path", "rule", "status")

    def __init__(self, state: RequestState, environ: WSGIEnvironment, status: int) -> None:
        self.elapsed = state.clock.elapsed()
        self.status = status
        req = state.request
        if req is not None:
            self.rule: str | None = req.url_rule.rule if req.url_rule is not None else None
            self.method: str = req.method
            self.path: str = req.path
        else:  # Flask made no request of ours (its request_class was replaced): the environ's
            self.rule = None
            self.method = environ.get("REQUEST_METHOD", "GET")
            self.path = environ.get("PATH_INFO", "")


API_PREFIX = "/api/"
NOSNIFF = ("X-Content-Type-Options", "nosniff")
NO_STORE = ("Cache-Control", "no-store")


def _add_safety_headers(headers: list[tuple[str, str]], answered: _Answered) -> None:
    """`nosniff` on every answer; `no-store` on API answers that say nothing of caching (they
    are per caller: usage, keys, errors; the OpenAPI document says it may be cached); and a 204
    has no body, so no `Content-Type` either (Flask gives every answer one)."""
    headers.append(NOSNIFF)  # no view sets it: this is the one place
    if answered.path.startswith(API_PREFIX) and not any(
        name.lower() == "cache-control" for name, _ in headers
    ):
        headers.append(NO_STORE)
    if answered.status == 204:
        headers[:] = [h for h in headers if h[0].lower() not in ("content-type", "content-length")]


def _no_write(data: bytes) -> object:
    # Flask never writes through `start_response`'s legacy callable; the gate would have to send
    # headers it has not finished.
    raise RuntimeError("the gate does not support WSGI's write() callable")


def _close_body(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _request_context() -> RequestContext:
    # One hop through Flask's context proxy, rather than one per attribute read through it.
    return cast(RequestContext, cast(Any, request_ctx)._get_current_object())


def admit_request() -> None:
    """v1 blueprint `before_request`: let the call through, or raise the problem refusing it."""
    ctx = _request_context()
    req = ctx.request
    if req.endpoint in PUBLIC_ENDPOINTS:
        return
    state = request_state.current_request()
    if state is None:
        raise RuntimeError("the app is served without its gate (api.gate.Gate)")
    extensions = ctx.app.extensions
    authenticator: Authenticator = extensions[authentication.EXTENSION]
    quota: QuotaEnforcer = extensions[QUOTA_EXTENSION]
    try:
        # Before anything is counted (or authenticated, which would make the refusal a call
        # with an event of its own): a call whose event could not be written is not served.
        extensions[metering.EXTENSION].ensure_room()
    except OSError as exc:
        logger.error("the event spool cannot take events (%s): refusing calls", exc)
        raise ServiceUnavailableError(
            "Usage cannot be recorded right now; retry shortly.", headers={"Retry-After": "1"}
        ) from None
    now = state.clock.started_at
    principal = authenticator.authenticate(req.environ.get("HTTP_AUTHORIZATION"), req.remote_addr)
    state.principal = principal
    if principal.account_status != "active":
        state.admission = quota.admit(principal, now, count=False)
        raise ForbiddenError("This account is suspended; contact support.")
    admission = quota.admit(principal, now)
    state.admission = admission
    watch: QuotaWatch = extensions[WATCH_EXTENSION]
    if not admission.admitted:
        http_metrics.count_admission(False)
        if admission.refused_by == MONTH_POLICY:
            watch.refused(
                principal.account_id, admission.period.first_day, admission.limit, admission.used
            )
        raise refusal(admission, now)
    http_metrics.count_admission(True)
    watch.admitted(
        principal.account_id,
        principal.alert_thresholds,
        admission.period.first_day,
        admission.limit,
        admission.used,
    )
    # Run once the answer has gone out: the write costs the caller nothing.
    state.touch = authenticator.touch_later(principal)


def init_app(app: Flask, runtime: Runtime) -> dict[str, Any]:
    """Build the gate's parts for `app` (authenticator, quota, event publisher) and wrap it."""
    quota = QuotaEnforcer(runtime)
    publisher = metering.build_publisher(runtime)
    deliveries = DeliveryQueue(runtime.broker_url)
    parts = {
        authentication.EXTENSION: authentication.Authenticator(runtime, deliveries),
        QUOTA_EXTENSION: quota,
        metering.EXTENSION: publisher,
        DELIVERIES_EXTENSION: deliveries,
        WATCH_EXTENSION: QuotaWatch(runtime.database, deliveries),
    }
    app.extensions.update(parts)
    app.request_class = request_state.GatedRequest
    app.wsgi_app = Gate(app.wsgi_app, publisher, quota)  # type: ignore[method-assign]
    return parts
