"""The dashboard's sessions: signed-in ones in Redis, anonymous ones in a signed cookie.

A signed-in session's data lives in Redis under a random id, and the cookie holds only that id,
so a session ends when we delete it (sign-out) or when its user's `session_epoch` moves on (a
password change). A visitor who has not signed in holds nothing on the server: what an anonymous
session carries (a form's CSRF token, a flash message) travels in the cookie itself, signed with
`TIMO_SECRET_KEY`, so a flood of visits to `/login` costs Redis nothing. Signing in always starts
a new server-side session under a new id (no fixation); signing out deletes it.

Only the dashboard's pages open sessions: an API call (or a static file) never reads a cookie or
touches Redis for one, so the metered hot path pays nothing for the dashboard.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import Flask, Request, Response, current_app, request, session
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.datastructures import CallbackDict

from timo_hub.people import service as people
from timo_hub.people.store import User
from timo_hub.platform.redis_client import AnyRedis
from timo_hub.platform.runtime import Runtime

logger = logging.getLogger(__name__)

COOKIE_NAME = "timo_session"
# In production (cookies `Secure`): `__Host-` makes browsers refuse it from a sibling subdomain or
# plain http, so nobody can plant a session (their own, signed in) in a customer's browser.
SECURE_COOKIE_NAME = "__Host-timo_session"
# A signed-in session lasts while used at least every two weeks, and at most 30 days in all.
IDLE_LIFETIME = timedelta(days=14)
ABSOLUTE_LIFETIME_SECONDS = 30 * 86400
# An anonymous session (a form's token, a message) is good for a day.
ANONYMOUS_SECONDS = 86400
KEY_PREFIX = "timo:session:"
# A value handed from one page to the next only once (a new key's secret) waits this long at most.
ONCE_SECONDS = 300
ONCE_PREFIX = "timo:once:"
# The first segments of the paths whose requests open a session (`/dashboard`, `/dashboard/…`,
# but not `/dashboardX`); everything else gets Flask's null session. Static files never do.
PAGE_ROOTS = frozenset({"dashboard", "signup", "login", "logout", "invitations"})
STATIC_PATH = "/dashboard/static/"

_SERVER, _ANONYMOUS = "s.", "a."
_UNAVAILABLE = "timo.session_unavailable"
_USER_ID = "user_id"
_EPOCH = "epoch"
_SIGNED_IN_AT = "signed_in_at"


class PageSession(CallbackDict[str, Any], SessionMixin):
    """A session's data; `sid` is its Redis id once signed in, None while anonymous."""

    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def on_update(_: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.modified = False


def is_page_path(path: str) -> bool:
    """True for a path of the dashboard's pages (which have sessions)."""
    root = path[1:].partition("/")[0]
    return root in PAGE_ROOTS and not path.startswith(STATIC_PATH)


class PageSessionInterface(SessionInterface):
    """Signed-in sessions in Redis, anonymous ones in a signed cookie; dashboard paths only."""

    def __init__(self, client: AnyRedis, secret_key: str, *, secure: bool) -> None:
        self._redis = client
        self._anonymous = URLSafeTimedSerializer(secret_key, salt="timo-anonymous-session")
        self.secure = secure
        self.cookie_name = SECURE_COOKIE_NAME if secure else COOKIE_NAME

    def open_session(self, app: Flask, request: Request) -> PageSession | None:
        """The request's session, or None (Flask's null session) outside the dashboard.

        With Redis down a page gets a null session and `raise_if_unavailable` makes it a 503
        before its view runs (a failure here would be outside every error handler: a 500).
        """
        if not is_page_path(request.path):
            return None
        raw = request.cookies.get(self.cookie_name, "")
        try:
            if raw.startswith(_SERVER):
                stored = self._redis.get(KEY_PREFIX + raw[len(_SERVER) :])
                if stored is not None:
                    return PageSession(json.loads(stored), sid=raw[len(_SERVER) :])
            elif raw.startswith(_ANONYMOUS):
                data = self._anonymous.loads(raw[len(_ANONYMOUS) :], max_age=ANONYMOUS_SECONDS)
                if isinstance(data, dict):
                    return PageSession(data)
        except redis.RedisError as exc:
            request.environ[_UNAVAILABLE] = exc
            return None
        except (BadSignature, ValueError):
            pass  # a forged, expired or unreadable cookie: a fresh session
        return PageSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write the session back: refresh it in Redis (and its cookie) once signed in, else the
        anonymous cookie.

        A signed-in session is only refreshed, never recreated (`SET … XX`): a page that began
        before a sign-out elsewhere must not bring the session back when it ends. It was
        created by `begin`, in the view, where a Redis failure is a 503 and not a sign-in that
        silently did not happen.
        """
        assert isinstance(session, PageSession)
        response.vary.add("Cookie")
        options: dict[str, Any] = {
            "httponly": True,
            "secure": self.secure,
            "samesite": "Lax",
            "path": "/",
        }
        if session.sid is not None:
            try:
                kept = self._redis.set(
                    KEY_PREFIX + session.sid,
                    json.dumps(dict(session)),
                    ex=int(IDLE_LIFETIME.total_seconds()),
                    xx=True,
                )
            except redis.RedisError as exc:
                # The session is as it was (begin stored it); only this refresh is lost.
                logger.warning("could not refresh a dashboard session: %s", exc)
                return
            if not kept:  # ended meanwhile (signed out, or expired): it stays ended
                response.delete_cookie(self.cookie_name, path="/", secure=self.secure)
                return
            expires = datetime.now(UTC) + IDLE_LIFETIME
            response.set_cookie(self.cookie_name, _SERVER + session.sid, expires=expires, **options)
        elif not session:
            if request.cookies.get(self.cookie_name):
                response.delete_cookie(self.cookie_name, path="/", secure=self.secure)
        elif session.modified:
            value = _ANONYMOUS + self._anonymous.dumps(dict(session))
            response.set_cookie(self.cookie_name, value, max_age=ANONYMOUS_SECONDS, **options)


def init_app(app: Flask, runtime: Runtime) -> None:
    """Keep `app`'s dashboard sessions in `runtime`'s Redis and signed cookies."""
    secure = runtime.settings.env == "production"
    # The interface sets its cookies' flags itself; `SESSION_COOKIE_SECURE` tells the other
    # cookie of the dashboard (`known_devices`) the same.
    app.config.update(SECRET_KEY=runtime.settings.secret_key, SESSION_COOKIE_SECURE=secure)
    app.session_interface = PageSessionInterface(
        runtime.redis, runtime.settings.secret_key, secure=secure
    )


def raise_if_unavailable() -> None:
    """Raise the Redis error that kept this request's session from opening, if one did."""
    error = request.environ.get(_UNAVAILABLE)
    if error is not None:
        raise error


def has_user() -> bool:
    """True when this request's session is a signed-in one (valid or not: see `signed_in_user`)."""
    current = session._get_current_object()  # type: ignore[attr-defined]
    return isinstance(current, PageSession) and current.sid is not None and _USER_ID in current


def begin(user: User) -> None:
    """Sign `user` in: a new server-side session under a new id, bound to the user's epoch."""
    current = _current()
    if current.sid is not None:
        _redis().delete(KEY_PREFIX + current.sid)
    current.clear()
    current[_USER_ID] = str(user.id)
    current[_EPOCH] = user.session_epoch
    current[_SIGNED_IN_AT] = int(time.time())
    sid = secrets.token_urlsafe(32)
    # Stored now: Redis failing here is this page's 503, not a sign-in that silently did not
    # happen; `NX`, so an id is never reused.
    stored = _redis().set(
        KEY_PREFIX + sid, json.dumps(dict(current)), ex=int(IDLE_LIFETIME.total_seconds()), nx=True
    )
    if not stored:
        raise RuntimeError("a new session id was already taken")
    current.sid = sid


def end() -> None:
    """Sign out: the server-side session is deleted, and what is left is anonymous."""
    current = _current()
    if current.sid is not None:
        _redis().delete(KEY_PREFIX + current.sid, ONCE_PREFIX + current.sid)
    current.clear()
    current.sid = None


def hold_once(value: dict[str, str]) -> None:
    """Keep `value` for this session's next page only (and for `ONCE_SECONDS` at most)."""
    sid = _current().sid
    if sid is None:
        raise RuntimeError("only a signed-in session can hold a value for its next page")
    _redis().set(ONCE_PREFIX + sid, json.dumps(value), ex=ONCE_SECONDS)


def take_once() -> dict[str, str] | None:
    """The value `hold_once` kept, gone from the server as it is read."""
    sid = _current().sid
    if sid is None:
        return None
    raw = _redis().getdel(ONCE_PREFIX + sid)
    return json.loads(raw) if raw is not None else None


def signed_in_user(runtime: Runtime) -> User | None:
    """The user this request's session belongs to, if it is still valid; ends it if not."""
    raw = session.get(_USER_ID)
    if raw is None or _current().sid is None:
        return None
    user = people.get_user(runtime, uuid.UUID(raw))
    too_old = time.time() - float(session.get(_SIGNED_IN_AT, 0)) > ABSOLUTE_LIFETIME_SECONDS
    if user is None or user.session_epoch != session.get(_EPOCH) or too_old:
        end()
        return None
    return user


def _current() -> PageSession:
    current = session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(current, PageSession):
        raise RuntimeError("not a dashboard page: it has no session")
    return current


def _redis() -> AnyRedis:
    interface = current_app.session_interface
    assert isinstance(interface, PageSessionInterface)
    return interface._redis
