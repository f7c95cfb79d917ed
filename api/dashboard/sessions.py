"""Server-side sessions in Redis for the dashboard's pages, and who is signed in.

Flask-Session keeps each session's data in Redis under a random id that is all the cookie holds,
so a session ends when we delete it (sign-out) or when its user's `session_epoch` moves on (a
password change). Only the dashboard's paths open sessions: an API call never reads a cookie or
touches Redis for one, so the metered hot path pays nothing for the dashboard.

The signed-in user is looked up in PostgreSQL on every page (one indexed read), so a deleted user
or a changed password takes effect on the next page, with nothing cached to go stale.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import redis
from flask import Flask, Request, Response, request, session
from flask_session.redis import RedisSessionInterface

from timo_hub.people import service as people
from timo_hub.people.store import User
from timo_hub.platform.runtime import Runtime

logger = logging.getLogger(__name__)

COOKIE_NAME = "timo_session"
# A signed-in session lasts while used at least every two weeks, and at most 30 days in all.
IDLE_LIFETIME = timedelta(days=14)
ABSOLUTE_LIFETIME_SECONDS = 30 * 86400
# A visitor who never signs in holds a session only for the CSRF token of a form.
ANONYMOUS_LIFETIME = timedelta(hours=2)
KEY_PREFIX = "timo:session:"
# Paths whose requests open a session; everything else gets Flask's null session.
SESSION_PATHS = ("/dashboard", "/signup", "/login", "/logout", "/invitations/")

_UNAVAILABLE = "timo.session_unavailable"
_USER_ID = "user_id"
_EPOCH = "epoch"
_SIGNED_IN_AT = "signed_in_at"


class PageSessionInterface(RedisSessionInterface):
    """Flask-Session's Redis sessions, opened only on the dashboard's paths."""

    def open_session(self, app: Flask, request: Request) -> Any:
        """The request's session, or None (Flask's null session) outside the dashboard.

        With Redis down the page gets a null session and `raise_if_unavailable` makes it a 503
        before its view runs (a failure here would be outside every error handler: a 500).
        """
        if not request.path.startswith(SESSION_PATHS):
            return None
        try:
            return super().open_session(app, request)
        except redis.RedisError as exc:
            request.environ[_UNAVAILABLE] = exc
            return None

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Store the session; with Redis gone since the page began, the change is lost (the
        visitor signs in again), and the page still answers."""
        try:
            super().save_session(app, session, response)
        except redis.RedisError as exc:
            logger.warning("could not store a dashboard session: %s", exc)

    def _upsert_session(self, session_lifetime: timedelta, session: Any, store_id: str) -> None:
        if _USER_ID not in session:
            session_lifetime = ANONYMOUS_LIFETIME
        super()._upsert_session(session_lifetime, session, store_id)


def init_app(app: Flask, runtime: Runtime) -> None:
    """Keep `app`'s sessions in `runtime`'s Redis with cookies fit for production."""
    app.config.update(
        SECRET_KEY=runtime.settings.secret_key,
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=runtime.settings.env == "production",
        PERMANENT_SESSION_LIFETIME=IDLE_LIFETIME,
    )
    app.session_interface = PageSessionInterface(
        app, client=runtime.redis, key_prefix=KEY_PREFIX, permanent=True
    )


def raise_if_unavailable() -> None:
    """Raise the Redis error that kept this request's session from opening, if one did."""
    error = request.environ.get(_UNAVAILABLE)
    if error is not None:
        raise error


def begin(user: User) -> None:
    """Sign `user` in: a new session id (no fixation), bound to the user's current epoch."""
    interface = _interface()
    session.clear()
    session["_fresh"] = True  # regenerate() only moves a non-empty session
    interface.regenerate(session)
    session.pop("_fresh")
    session[_USER_ID] = str(user.id)
    session[_EPOCH] = user.session_epoch
    session[_SIGNED_IN_AT] = int(time.time())


def end() -> None:
    """Sign out: the session is deleted from Redis and its cookie cleared."""
    session.clear()


def signed_in_user(runtime: Runtime) -> User | None:
    """The user this request's session belongs to, if it is still valid; ends it if not."""
    raw = session.get(_USER_ID)
    if raw is None:
        return None
    user = people.get_user(runtime, uuid.UUID(raw))
    too_old = time.time() - float(session.get(_SIGNED_IN_AT, 0)) > ABSOLUTE_LIFETIME_SECONDS
    if user is None or user.session_epoch != session.get(_EPOCH) or too_old:
        end()
        return None
    return user


def _interface() -> PageSessionInterface:
    from flask import current_app

    interface = current_app.session_interface
    assert isinstance(interface, PageSessionInterface)
    return interface
