"""One log line per request, with who called (account and key ids), what, and how it went.

Replaces gunicorn's access log, which cannot know the account. In production the line is JSON
(`timo_hub.platform.logs`), with `method`, `route`, `status` and `duration_ms` as fields.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

logger = logging.getLogger("api.access")


def _start() -> None:
    g.access_started = time.perf_counter()


def _log(response: Response) -> Response:
    if not logger.isEnabledFor(logging.INFO):
        return response
    started = g.get("access_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    rule = request.url_rule.rule if request.url_rule is not None else None
    logger.info(
        "%s %s %s %sms",
        request.method,
        request.path,
        response.status_code,
        duration_ms,
        extra={
            "method": request.method,
            "route": rule,
            "status": response.status_code,
            "duration_ms": duration_ms,
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Log every request `app` answers."""
    app.before_request(_start)
    app.after_request(_log)
