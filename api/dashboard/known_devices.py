"""Known devices: a browser that has signed in to an account before, remembered in a cookie.

OWASP's "device cookie": after a successful sign-in the browser gets a signed, long-lived cookie
naming (by digest) the emails it signed in as. A sign-in from such a browser is held only by its
own email-and-address count (`timo_hub.people.sign_in_throttle`), so an attacker failing on purpose
from many addresses cannot keep the owner out. The cookie proves only that this browser once knew
the password; it signs nobody in.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

from timo_hub.people.sign_in_throttle import email_digest

COOKIE_NAME = "timo_device"
LIFETIME = timedelta(days=365)
# A shared computer remembers a few people, not everyone who ever signed in on it.
MAX_EMAILS = 5


def knows(email: str) -> bool:
    """True when this browser has signed in as `email` before."""
    return email_digest(email) in _remembered()


def remember(response: Response, email: str) -> None:
    """Mark this browser as one that signed in as `email` (most recent first)."""
    digest = email_digest(email)
    emails = [digest, *(d for d in _remembered() if d != digest)][:MAX_EMAILS]
    response.set_cookie(
        COOKIE_NAME,
        _serializer().dumps(emails),
        max_age=int(LIFETIME.total_seconds()),
        httponly=True,
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        samesite="Lax",
        path="/login",
    )


def _remembered() -> list[str]:
    raw = request.cookies.get(COOKIE_NAME)
    if not raw:
        return []
    try:
        emails = _serializer().loads(raw)
    except BadSignature:
        return []
    return [e for e in emails if isinstance(e, str)] if isinstance(emails, list) else []


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="timo-known-device")
