"""Request ids: echo a caller's `X-Request-ID` when it is sane, otherwise make one.

The id is in `g.request_id` for logs and problem bodies, and in the `X-Request-ID` header of every
response, so a client can quote it and an operator can find the request.
"""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
# Anything else (too long, control characters, spaces) is replaced, never reflected.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _assign() -> None:
    supplied = request.headers.get(HEADER)
    # 128 random bits as hex, like a UUID4 without the UUID object (this runs on every request).
    g.request_id = supplied if supplied and _ACCEPTABLE.match(supplied) else os.urandom(16).hex()


def _expose(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id") or os.urandom(16).hex()
    return response


def init_app(app: Flask) -> None:
    """Give every request of `app` an id."""
    app.before_request(_assign)
    app.after_request(_expose)
