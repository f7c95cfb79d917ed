"""One log line per request, with who called (account and key ids), what, and how it went.

Replaces gunicorn's access log, which cannot know the account. In production the line is JSON
(`timo_hub.platform.logs`), with `method`, `route`, `status` and `duration_ms` as fields; the
duration is the gate's, the same interval the usage event and the latency histogram record.

When every handler the line would reach is one of ours (the normal case), the line is written
through `ServiceLogHandler.write_line`, skipping the `logging` record machinery, which cost as
much as the rest of the gate; any other handler (a test's, an operator's) gets a normal record.
"""

from __future__ import annotations

import logging

from timo_hub.accounts import key_format
from timo_hub.people.service import INVITATION_PATH, redact_invitation_links
from timo_hub.platform.logs import LoggedRequest, RequestContextFilter, ServiceLogHandler

logger = logging.getLogger("api.access")


def log_request(
    method: str,
    path: str,
    rule: str | None,
    status: int,
    elapsed: float | None,
    request: LoggedRequest,
) -> None:
    """Log one answered request to Flask route `rule` (None: no route matched), at INFO, so
    `TIMO_LOG_LEVEL=WARNING` drops it for free."""
    if not logger.isEnabledFor(logging.INFO):
        return
    duration_ms = round(elapsed * 1000, 3) if elapsed is not None else None
    if INVITATION_PATH in path:  # `/invitations/…`, `/./invitations/…`: the token signs in
        path = redact_invitation_links(path)
    message = f"{method} {key_format.redact(path)} {status} {duration_ms}ms"
    fields: dict[str, object] = {
        "method": method,
        "route": rule,
        "status": status,
        "duration_ms": duration_ms,
    }
    handlers = _handlers()
    if handlers is None:
        logger.info(message, extra=fields)
        return
    ids = request.log_ids
    for handler in handlers:
        handler.write_line(logger.name, message, ids, fields)


def _handlers() -> list[ServiceLogHandler] | None:
    """The handlers an INFO record of the access logger reaches, if all are ours; else None."""
    found: list[ServiceLogHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if type(handler) is not ServiceLogHandler or not all(
                type(f) is RequestContextFilter for f in handler.filters
            ):
                return None
            found.append(handler)
        if not current.propagate:
            break
        current = current.parent
    return found
