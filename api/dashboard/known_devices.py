"""Known devices: a browser that has signed in as a user before, remembered in a cookie.

OWASP's "device cookie": after a successful sign-in the browser gets a signed, long-lived cookie
holding the user's device mark (`timo_hub.people.service.device_mark`: the user's id and password
epoch, as a digest). A sign-in from such a browser is held only by its own person-and-address
count (`timo_hub.people.sign_in_throttle`), so an attacker failing on purpose from many addresses
cannot keep the owner out. The cookie proves only that this browser once knew the password (a
password change voids it); it signs nobody in.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from timo_hub.people import service as people
from timo_hub.people.store import User

LIFETIME = timedelta(days=365)
# A shared computer remembers a few people, not everyone who ever signed in on it.
MAX_MARKS = 5


def marks() -> list[str]:
    """The device marks this browser carries (none if its cookie is forged or too old)."""
    raw = request.cookies.get(cookie_name())
    if not raw:
        return []
    try:
        found = _serializer().loads(raw, max_age=int(LIFETIME.total_seconds()))
    except BadSignature:
        return []
    return [m for m in found if isinstance(m, str)] if isinstance(found, list) else []


def remember(response: Response, user: User) -> None:
    """Mark this browser as one that signed in as `user` (most recent first)."""
    mark = people.device_mark(user)
    kept = [mark, *(m for m in marks() if m != mark)][:MAX_MARKS]
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE"))
    response.set_cookie(
        cookie_name(),
        _serializer().dumps(kept),
        max_age=int(LIFETIME.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/login",
    )


def cookie_name() -> str:
    """`__Secure-` in production: a page of another subdomain or plain http cannot set it."""
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE"))
    return "__Secure-timo_device" if secure else "timo_device"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="timo-known-device")
