"""Errors on the dashboard's pages as pages (with the right status), not JSON problems.

A browser showing a form gets a page it can act on; the API keeps its RFC 9457 problems. The
status of a domain error is the one the API would answer (`api.problems.DOMAIN_PROBLEMS`).
"""

from __future__ import annotations

import logging

import psycopg
import redis
from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from psycopg_pool import PoolTimeout

from api.dashboard import blueprint
from api.problems import DOMAIN_PROBLEMS
from timo_hub.errors import DomainError

logger = logging.getLogger(__name__)


@blueprint.errorhandler(CSRFError)
def csrf_refused(error: CSRFError) -> ResponseReturnValue:
    """A form without this session's token: expired, replayed, or posted from another site."""
    detail = (
        "This form could not be accepted: it has expired or did not come from this site "
        f"({error.description}). Reload the page and try again."
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


@blueprint.errorhandler(redis.RedisError)
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
