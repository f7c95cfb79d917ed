"""Bearer-key authentication for every `/api/v1` route except health.

On the hot path a valid, recently seen key costs one dictionary lookup (see
`timo_hub.accounts.cache`). Only a cache miss reads PostgreSQL. Only a refusal touches the
failed-authentication throttle, so known-good traffic pays nothing for it and a valid key is never
refused because others sent bad keys from the same address (a NAT, a proxy). The key itself never
leaves this module: not in a log line, an error message, or Redis.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from api.problems import ApiError, UnauthorizedError
from timo_hub.accounts import key_format, service, store
from timo_hub.accounts.cache import PrincipalCache
from timo_hub.accounts.principal import Principal
from timo_hub.platform.runtime import Runtime
from timo_hub.webhooks import key_events
from timo_hub.webhooks.dispatch import DeliveryQueue

logger = logging.getLogger(__name__)

EXTENSION = "timo_auth"
LAST_USED_INTERVAL_SECONDS = 60.0
# Failed authentications per client address per window answered 401; later ones get 429.
FAILURE_LIMIT = 20
FAILURE_WINDOW_SECONDS = 60
_FAILURE_KEY = "timo:authfail:{address}"
# KEYS: the address's failure count. ARGV: window seconds. Counts one failure; returns {count, ttl}.
# A count without an expiry (left by anything but this script) gets one, so no address is
# throttled for longer than a window.
COUNT_FAILURE_LUA = """
local failures = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {failures, ttl}
"""


class TooManyFailedAuthenticationsError(ApiError):
    """Too many bad keys from one address; counted against no account."""

    status, slug, title = 429, "too-many-failed-authentications", "Too Many Requests"


class Authenticator:
    """Resolves bearer keys to principals, caching per process."""

    def __init__(self, runtime: Runtime, deliveries: DeliveryQueue | None = None) -> None:
        self.cache = PrincipalCache(runtime.redis)
        self._count_failure = runtime.redis.register_script(COUNT_FAILURE_LUA)
        self._runtime = runtime
        self._hash_key = key_format.KeyHasher(runtime.settings.key_pepper)
        self._last_touch: dict[uuid.UUID, float] = {}
        self._touch_lock = threading.Lock()
        self.deliveries = deliveries or DeliveryQueue(runtime.broker_url)
        """Queues the `key.revoked` webhooks of revocations made here."""

    def authenticate(self, authorization: str | None, address: str | None) -> Principal:
        """The principal behind an `Authorization` header (suspended or not), or 401/429.

        A valid key always authenticates, whatever its address has sent before; only refusals
        are throttled (429 instead of 401 once an address has sent too many bad keys).
        """
        secret = _bearer_token(authorization)
        key_hash = self._hash_key(secret)
        principal = self.cache.peek(key_hash)
        if principal is not None:
            return principal  # cached, so it was well formed and valid when it was stored
        if not key_format.is_well_formed(secret):
            # Refused without a lookup: a mistyped key never reaches PostgreSQL.
            raise self._refusal(address, "The API key is malformed.")
        principal = self.cache.lookup(key_hash, lambda: self._load(key_hash))
        if principal is None:
            raise self._refusal(address, "The API key is unknown or revoked.")
        return principal

    def touch_later(self, principal: Principal) -> Callable[[], None] | None:
        """A callable that records `last_used_at`, at most once a minute per key and process."""
        now = time.monotonic()
        last = self._last_touch.get(principal.key_id)
        if last is not None and now - last < LAST_USED_INTERVAL_SECONDS:
            return None
        with self._touch_lock:
            self._last_touch[principal.key_id] = now
        database = self._runtime.database

        def touch() -> None:
            try:
                with database.connection() as conn:
                    store.touch_key(conn, principal.key_id, LAST_USED_INTERVAL_SECONDS)
            except Exception:  # bookkeeping must never fail a request that already succeeded
                logger.warning(
                    "could not record last use of key %s", principal.key_id, exc_info=True
                )

        return touch

    def revoke(self, key_id: uuid.UUID, account_id: uuid.UUID) -> None:
        """Revoke one of `account_id`'s keys (KeyNotFoundError if it has no such key).

        Committed is revoked: if Redis cannot tell the other processes, they drop the key at
        their cache's next expiry or epoch check, and the revocation still stands. This process
        forgets the key before returning, so a key that revoked itself is refused on its very
        next request even if that lands here before the pub/sub message does.
        """
        try:
            key_events.revoke_key(self._runtime, self.deliveries, key_id, account_id)
        except service.ChangeNotAnnouncedError as exc:
            logger.warning("%s", exc)
        self.cache.forget(key_id=key_id)

    def _load(self, key_hash: bytes) -> Principal | None:
        with self._runtime.database.connection() as conn:
            return store.find_principal(conn, key_hash)

    def _refusal(self, address: str | None, detail: str) -> ApiError:
        """Count a failed authentication from `address`; 401, or 429 past the window's limit."""
        # One script: a SET NX and an INCR in a MULTI could straddle the window's end on Redis 6
        # (the INCR recreating the key without an expiry, throttling the address for good).
        failures, ttl = self._count_failure(
            keys=[_failure_key(address)], args=[FAILURE_WINDOW_SECONDS]
        )
        if int(failures) > FAILURE_LIMIT:
            return TooManyFailedAuthenticationsError(
                "Too many requests with invalid API keys from this address; try again later.",
                headers={"Retry-After": str(max(int(ttl), 1))},
            )
        return _unauthorized(detail, "invalid_token")


def _failure_key(address: str | None) -> str:
    return _FAILURE_KEY.format(address=address or "unknown")


def _bearer_token(header: str | None) -> str:
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
