"""Errors on the dashboard's pages as pages (with the right status), not JSON problems.

A browser showing a form gets a page it can act on; the API keeps its RFC 9457 problems. The
status of a domain error is the one the API would answer (`api.problems.DOMAIN_PROBLEMS`).
"""

from __future__ import annotations

import logging

import psycopg
import redis
from flask import Flask, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisClusterException
from werkzeug.exceptions import HTTPException

from api.dashboard import blueprint, security, sessions
from api.problems import DOMAIN_PROBLEMS, from_http_exception
from timo_hub.errors import DomainError

logger = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Unknown paths and wrong methods under the dashboard's paths get a page, not JSON."""
    for status in (404, 405, 413):
        app.register_error_handler(status, _page_or_problem)


def _page_or_problem(error: HTTPException) -> ResponseReturnValue:
    path = request.path
    if not sessions.is_page_path(path):
        return from_http_exception(error)
    if error.code == 405:
        title, detail = "Not here", "This page does not take that kind of request."
        if path == "/logout":
            detail = "Sign out with the “Sign out” button at the top of any page."
    elif error.code == 413:
        title, detail = "Too much", "What was sent is far longer than any field here allows."
    else:
        title, detail = "Page not found", "There is no page at this address."
    page = render_template("error.html", title=title, detail=detail)
    headers = {**security.PAGE_HEADERS, **dict(error.get_headers())}
    headers.pop("Content-Type", None)
    return page, error.code or 404, headers


@blueprint.errorhandler(CSRFError)
def csrf_refused(error: CSRFError) -> ResponseReturnValue:
    """A form without this session's token: expired, replayed, or posted from another site."""
    detail = (
        "This form could not be accepted: it has expired, or did not come from this site. "
        "Reload the page and try again."
    )
    return render_template("error.html", title="Form refused", detail=detail), 400


@blueprint.errorhandler(DomainError)
def domain_refused(error: DomainError) -> ResponseReturnValue:
    """A domain rule's refusal the page did not show on a form."""
    kind = next(DOMAIN_PROBLEMS[cls] for cls in type(error).__mro__ if cls in DOMAIN_PROBLEMS)
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return (
        render_template("error.html", title=kind.title, detail=error.detail),
        kind.status,
        headers,
    )


@blueprint.errorhandler(Exception)
def unexpected(error: Exception) -> ResponseReturnValue:
    """Anything else a page raised: logged with its traceback, answered with a page (500)."""
    if isinstance(error, HTTPException):
        return _page_or_problem(error)
    logger.exception("unhandled error on %s %s", request.method, request.path)
    detail = "Something went wrong on our side; nothing you did caused it. Try again shortly."
    return render_template("error.html", title="Server error", detail=detail), 500


@blueprint.errorhandler(redis.RedisError)
@blueprint.errorhandler(RedisClusterException)
@blueprint.errorhandler(psycopg.OperationalError)
@blueprint.errorhandler(PoolTimeout)
def dependency_down(error: Exception) -> ResponseReturnValue:
    """PostgreSQL or Redis did not answer: nothing was changed; the page can be retried."""
    logger.warning("dependency unavailable on %s %s: %s", request.method, request.path, error)
    detail = "A service the dashboard needs is unavailable; nothing was changed. Retry shortly."
    return (
        render_template("error.html", title="Temporarily unavailable", detail=detail),
        503,
        {"Retry-After": "1"},
    )
