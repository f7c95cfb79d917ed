"""Errors as RFC 9457 problem responses, mapped in one place.

Two kinds of error become problems here, and nowhere else:

* the domain's errors (`timo_hub.errors`: not found, conflict, invalid, limit reached), which
  know nothing of HTTP: `DOMAIN_PROBLEMS` gives each its status, `type` slug and title;
* the HTTP layer's own (`ApiError` subclasses: a malformed request, missing credentials, a
  suspended account, a body of the wrong type or size), which carry their status themselves.

Werkzeug's HTTP errors (unknown route, wrong method, body too large) and anything unexpected are
translated too, so every error a client sees is an `application/problem+json` body with a stable
`type`, the `status`, a human `detail` and the `request_id` to quote to support. Unexpected
exceptions are logged with their traceback and answer a generic 500 that reveals nothing internal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import redis
from flask import Flask, Response, json, request
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisClusterException
from werkzeug.exceptions import HTTPException

from api.request_state import current_request
from timo_hub import errors
from timo_hub.accounts import key_format
from timo_hub.quota.enforcer import BurstLimitError, QuotaExceededError

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Problem types are URI references relative to the API host; `type` values are stable contract.
PROBLEM_TYPE_BASE = "/problems/"


class ApiError(Exception):
    """Base of the HTTP layer's own errors (the domain's are in `timo_hub.errors`)."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extensions = extensions


class BadRequestError(ApiError):
    """The request is malformed (unparseable body, bad query parameter)."""

    status, slug, title = 400, "bad-request", "Bad Request"


class UnauthorizedError(ApiError):
    """No usable credentials."""

    status, slug, title = 401, "unauthorized", "Unauthorized"


class ForbiddenError(ApiError):
    """Authenticated, but not allowed."""

    status, slug, title = 403, "forbidden", "Forbidden"


class PayloadTooLargeError(ApiError):
    """The body is larger than the API accepts."""

    status, slug, title = 413, "payload-too-large", "Payload Too Large"


class UnsupportedMediaTypeError(ApiError):
    """The body is not JSON."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported Media Type"


class ValidationFailedError(ApiError):
    """The body parsed but its shape or values are not acceptable."""

    status, slug, title = 422, "validation-failed", "Unprocessable Content"


class ServiceUnavailableError(ApiError):
    """A dependency is down; the client may retry."""

    status, slug, title = 503, "service-unavailable", "Service Unavailable"


@dataclass(frozen=True)
class ProblemKind:
    """The status, `type` slug and title of one kind of problem."""

    status: int
    slug: str
    title: str


NOT_FOUND = ProblemKind(404, "not-found", "Not Found")
CONFLICT = ProblemKind(409, "conflict", "Conflict")

# The most specific class of an error's MRO that is listed here decides its problem.
DOMAIN_PROBLEMS: dict[type[errors.DomainError], ProblemKind] = {
    errors.NotFoundError: NOT_FOUND,
    errors.ConflictError: CONFLICT,
    errors.InvalidError: ProblemKind(
        ValidationFailedError.status, ValidationFailedError.slug, ValidationFailedError.title
    ),
    # A limit on what an account may hold (active keys): the request conflicts with that state.
    errors.LimitReachedError: CONFLICT,
    QuotaExceededError: ProblemKind(429, "quota-exceeded", "Quota Exceeded"),
    BurstLimitError: ProblemKind(429, "burst-limit-exceeded", "Burst Limit Exceeded"),
    errors.UnavailableError: ProblemKind(
        ServiceUnavailableError.status, ServiceUnavailableError.slug, ServiceUnavailableError.title
    ),
}

# For Werkzeug's own errors: the kinds by status.
_KIND_BY_STATUS = {
    kind.status: kind
    for kind in (
        NOT_FOUND,
        CONFLICT,
        ProblemKind(405, "method-not-allowed", "Method Not Allowed"),
        *(ProblemKind(cls.status, cls.slug, cls.title) for cls in ApiError.__subclasses__()),
    )
}


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """Build an `application/problem+json` response."""
    # Redacted whole: a detail may quote what the caller sent (an id, a path), and a caller that
    # sent an API key there must not get it echoed, nor have it shown to whoever sees the answer.
    body = key_format.redact(
        problem_body(status, slug, title, detail, request.path, _request_id(), **extensions)
    )
    response = Response(body, status=status, mimetype=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    request_id: str | None,
    **extensions: Any,
) -> str:
    """The JSON of a problem about the request at path `instance`."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    body.update(extensions)
    return json.dumps(body)


def _request_id() -> str | None:
    state = current_request()
    return state.request_id if state is not None else None


def _from_api_error(error: ApiError) -> Response:
    return problem_response(
        error.status,
        error.slug,
        error.title,
        error.detail,
        headers=error.headers,
        **error.extensions,
    )


def _from_domain_error(error: errors.DomainError) -> Response:
    kind = next(DOMAIN_PROBLEMS[cls] for cls in type(error).__mro__ if cls in DOMAIN_PROBLEMS)
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    extensions = dict(error.details)
    field = extensions.get("field")
    if kind.status == 422 and isinstance(field, str) and "errors" not in extensions:
        # The same shape as a refused body's: a client reads `errors` whichever check refused it.
        extensions["errors"] = [{"field": field, "message": error.detail}]
    return problem_response(
        kind.status, kind.slug, kind.title, error.detail, headers=headers, **extensions
    )


def from_http_exception(error: HTTPException) -> Response:
    """The problem response of one of Werkzeug's HTTP errors (unknown route, wrong method…)."""
    status = error.code or 500
    known = _KIND_BY_STATUS.get(status)
    slug = known.slug if known else f"http-{status}"
    title = known.title if known else (error.name or "Error")
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    detail = error.description or title
    if status == 404:
        detail = f"No resource at {key_format.redact(request.path)}."
    elif status == 405:
        detail = f"{request.method} is not allowed on {key_format.redact(request.path)}."
    return problem_response(status, slug, title, detail, headers=headers)


def _from_unexpected(error: Exception) -> Response:
    logger.exception(
        "unhandled error on %s %s (request_id=%s)",
        request.method,
        key_format.redact(request.path),
        _request_id(),
    )
    return problem_response(
        500,
        ApiError.slug,
        ApiError.title,
        "The server failed to handle this request; quote the request_id to support.",
    )


def _from_dependency_down(error: Exception) -> Response:
    logger.warning(
        "dependency unavailable on %s %s (request_id=%s): %s",
        request.method,
        key_format.redact(request.path),
        _request_id(),
        error,
    )
    # Fail closed: without PostgreSQL or Redis no call can be authenticated or metered.
    return problem_response(
        503,
        ServiceUnavailableError.slug,
        ServiceUnavailableError.title,
        "A service this API depends on is unavailable; retry shortly.",
        headers={"Retry-After": "1"},
    )


def init_app(app: Flask) -> None:
    """Route every error raised in `app` to a problem response."""
    app.register_error_handler(ApiError, _from_api_error)
    app.register_error_handler(errors.DomainError, _from_domain_error)
    # A Redis Cluster's client raises RedisClusterException (not a RedisError) when it cannot
    # learn the cluster's map at all.
    dependencies = (redis.RedisError, RedisClusterException, psycopg.OperationalError, PoolTimeout)
    for dependency_error in dependencies:
        app.register_error_handler(dependency_error, _from_dependency_down)
    app.register_error_handler(HTTPException, from_http_exception)
    app.register_error_handler(Exception, _from_unexpected)
