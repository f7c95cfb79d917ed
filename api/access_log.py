"""One log line per request, with who called (account and key ids), what, and how it went.

Replaces gunicorn's access log, which cannot know the account. In production the line is JSON
(`timo_hub.platform.logs`), with `method`, `route`, `status` and `duration_ms` as fields; the
duration is the gate's, the same interval the usage event and the latency histogram record.
"""

from __future__ import annotations

import logging

from flask import Request

logger = logging.getLogger("api.access")


def log_request(req: Request, status: int, elapsed: float | None) -> None:
    """Log one answered request (at INFO, so `TIMO_LOG_LEVEL=WARNING` drops it for free)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    duration_ms = round(elapsed * 1000, 3) if elapsed is not None else None
    rule = req.url_rule.rule if req.url_rule is not None else None
    logger.info(
        "%s %s %s %sms",
        req.method,
        req.path,
        status,
        duration_ms,
        extra={"method": req.method, "route": rule, "status": status, "duration_ms": duration_ms},
    )
