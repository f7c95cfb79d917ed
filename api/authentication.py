"""Bearer-key authentication for every `/api/v1` route except health.

On the hot path a valid, recently seen key costs one dictionary lookup (see `accounts.cache`).
Only a cache miss reads PostgreSQL, and only then is the caller's address checked against the
failed-authentication throttle, so known-good traffic pays nothing for it. The key itself never
leaves this module: not in a log line, an error message, or Redis.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis
from flask import Flask, current_app, g, request

from api.accounts import keys, store
from api.accounts.cache import Principal, PrincipalCache
from api.problems import ApiError, UnauthorizedError
from api.runtime import current_runtime

logger = logging.getLogger(__name__)

EXTENSION = "timo_auth"
LAST_USED_INTERVAL_SECONDS = 60.0
# Failed authentications allowed per client address per window before answering 429.
FAILURE_LIMIT = 20
FAILURE_WINDOW_SECONDS = 60
_FAILURE_KEY = "timo:authfail:{address}"


class TooManyFailedAuthenticationsError(ApiError):
    """Too many bad keys from one address; counted against no account."""

    status, slug, title = 429, "too-many-failed-authentications", "Too Many Requests"


class Authenticator:
    """Resolves the bearer key of a request to a `Principal`, caching per process."""

    def __init__(self, cache: PrincipalCache) -> None:
        self.cache = cache
        self._last_touch: dict[uuid.UUID, float] = {}
        self._touch_lock = threading.Lock()

    def authenticate(self) -> Principal:
        """The principal of the current request (suspended or not), or an `ApiError` (401/429)."""
        secret = _bearer_token()
        if not keys.is_well_formed(secret):
            # Refused without a lookup: a mistyped key never reaches PostgreSQL.
            self._count_failure()
            raise _unauthorized("The API key is malformed.", "invalid_token")
        runtime = current_runtime()
        key_hash = keys.hash_key(secret, runtime.settings.key_pepper)
        principal = self.cache.lookup(key_hash, lambda: self._load(key_hash))
        if principal is None:
            self._count_failure()
            raise _unauthorized("The API key is unknown or revoked.", "invalid_token")
        return principal

    def touch_later(self, principal: Principal) -> Callable[[], None] | None:
        """A callable that records `last_used_at`, at most once a minute per key and process."""
        now = time.monotonic()
        with self._touch_lock:
            last = self._last_touch.get(principal.key_id)
            if last is not None and now - last < LAST_USED_INTERVAL_SECONDS:
                return None
            self._last_touch[principal.key_id] = now
        runtime = current_runtime()

        def touch() -> None:
            try:
                with runtime.database.connection() as conn:
                    store.touch_key(conn, principal.key_id, LAST_USED_INTERVAL_SECONDS)
            except Exception:  # bookkeeping must never fail a request that already succeeded
                logger.warning(
                    "could not record last use of key %s", principal.key_id, exc_info=True
                )

        return touch

    def _load(self, key_hash: bytes) -> Principal | None:
        self._check_failure_budget()
        with current_runtime().database.connection() as conn:
            return store.find_principal(conn, key_hash)

    def _check_failure_budget(self) -> None:
        failures = current_runtime().redis.get(_failure_key())
        if failures is not None and int(failures) >= FAILURE_LIMIT:
            ttl = current_runtime().redis.ttl(_failure_key())
            retry = max(int(ttl), 1)
            raise TooManyFailedAuthenticationsError(
                "Too many requests with invalid API keys from this address; try again later.",
                headers={"Retry-After": str(retry)},
            )

    def _count_failure(self) -> None:
        self._check_failure_budget()
        client = current_runtime().redis
        pipe = client.pipeline()
        # SET NX starts the window; INCR keeps its expiry (EXPIRE NX would need Redis 7).
        pipe.set(_failure_key(), 0, ex=FAILURE_WINDOW_SECONDS, nx=True)
        pipe.incr(_failure_key())
        pipe.execute()


def _failure_key() -> str:
    return _FAILURE_KEY.format(address=request.remote_addr or "unknown")


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise _unauthorized("Send your API key as 'Authorization: Bearer <key>'.", None)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Use the Bearer scheme: 'Authorization: Bearer <key>'.", None)
    return token.strip()


def _unauthorized(detail: str, error: str | None) -> UnauthorizedError:
    challenge = 'Bearer realm="timo-hub"'
    if error:
        challenge += f', error="{error}"'
    return UnauthorizedError(detail, headers={"WWW-Authenticate": challenge})


def current_principal() -> Principal:
    """The authenticated caller of the current request."""
    return g.principal


def current_authenticator() -> Authenticator:
    """The app's authenticator."""
    return current_app.extensions[EXTENSION]


def init_app(app: Flask, client: redis.Redis) -> Authenticator:
    """Attach an authenticator with its own invalidation-backed cache to `app`."""
    authenticator = Authenticator(PrincipalCache(client))
    app.extensions[EXTENSION] = authenticator
    return authenticator
