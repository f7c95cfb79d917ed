"""A per-process cache of who a key belongs to, invalidated through Redis pub/sub.

Authenticating from PostgreSQL on every request would put a database round trip on the hot path,
so each web process keeps `key hash -> Principal` in memory. Correctness rests on three rules:

* A revoke, suspension or plan change commits in PostgreSQL, then publishes the key or account id
  on `CHANNEL` before its response goes out; every process's listener evicts what it names. The
  same step bumps `EPOCH_KEY`, which each listener reads twice a second: a process that missed
  the message drops its whole cache.
* The cache is used only while this process's subscription is up. Every (re)subscription starts a
  new generation; an entry from an older generation is a miss, so messages missed while
  disconnected cannot leave stale entries behind.
* A lookup that raced with an invalidation (a message arrived between its database read and its
  store) is not cached, so a revoked key can never be re-cached from a read that predates it.

Entries also expire after `TTL_SECONDS`, a safety net, not the mechanism.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import redis

from timo_hub.accounts.principal import Principal
from timo_hub.platform.redis_client import AnyRedis, node_client, refresh_topology

logger = logging.getLogger(__name__)

CHANNEL = "timo:auth:invalidate"
# Bumped with every invalidation; each listener reads it every `EPOCH_CHECK_SECONDS` and drops
# its whole cache when it moved (the one path that does not depend on a pub/sub message).
EPOCH_KEY = "timo:auth:epoch"
EPOCH_CHECK_SECONDS = 0.5
PUBLISH_RETRY_DELAYS = (0.0, 0.2)
ANNOUNCE_TIMEOUT_SECONDS = 0.5
TTL_SECONDS = 30.0
MAX_ENTRIES = 100_000
_RETRY_SECONDS = 0.5
_POLL_SECONDS = 0.25  # how long close() may wait for the listener to notice


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    generation: int
    expires_at: float


# Bump the epoch and publish each message prefixed with it, atomically: a listener then knows
# which epochs it has heard of, and drops its whole cache only for one it has not.
_ANNOUNCE = """
local epoch = redis.call('INCR', KEYS[1])
for i = 2, #ARGV do
    redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. ARGV[i])
end
return epoch
"""


def publish_invalidation(
    client: AnyRedis, *, key_id: uuid.UUID | None = None, account_id: uuid.UUID | None = None
) -> bool:
    """Tell every web process to forget a key or all of an account's keys; False if Redis could
    not be told within about a second (the change is committed: processes then forget it within
    `TTL_SECONDS`).

    On a Redis Cluster the step runs on the node that holds `EPOCH_KEY`; a cluster passes every
    published message to every node, so each listener hears it whichever node it listens on.

    The messages carry the new value of `EPOCH_KEY`, bumped in the same step: a listener that
    misses a message sees the epoch pass what it heard within `EPOCH_CHECK_SECONDS` and drops
    everything.
    """
    messages = [f"key:{key_id}"] if key_id is not None else []
    if account_id is not None:
        messages.append(f"account:{account_id}")
    # A client of its own, with short timeouts and no retries: the caller (a revoke request, the
    # CLI) waits on this, and the shared client's 2 s timeout with its retries took ~24 s
    # against a Redis that accepts connections and never answers.
    for delay in PUBLISH_RETRY_DELAYS:
        time.sleep(delay)
        announcer: redis.Redis | None = None
        try:
            announcer = _announcer(node_client(client, EPOCH_KEY))
            announcer.eval(_ANNOUNCE, 1, EPOCH_KEY, CHANNEL, *messages)
            return True
        except redis.RedisError as exc:
            logger.warning("auth cache: could not announce an invalidation (%s)", exc)
            with suppress(redis.RedisError):
                refresh_topology(client)  # on a cluster the epoch's node may have failed over
        finally:
            if announcer is not None:
                announcer.close()
                announcer.connection_pool.disconnect()
    return False


def _announcer(server: redis.Redis) -> redis.Redis:
    pool = server.connection_pool
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{
                **pool.connection_kwargs,
                "socket_timeout": ANNOUNCE_TIMEOUT_SECONDS,
                "socket_connect_timeout": ANNOUNCE_TIMEOUT_SECONDS,
                "retry": None,
                "retry_on_timeout": False,
            },
        )
    )


class PrincipalCache:
    """Key hash -> Principal, valid only while the invalidation subscription is healthy."""

    def __init__(self, client: AnyRedis, ttl: float = TTL_SECONDS) -> None:
        self._client = client
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Entry] = {}
        self._generation: int | None = None  # None: not subscribed, cache unusable
        self._next_generation = 0
        self._invalidations = 0
        self._listener_pid: int | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        # The highest invalidation epoch this listener knows of (None until first read).
        self._heard_epoch: int | None = None

    def peek(self, key_hash: bytes) -> Principal | None:
        """The cached principal for `key_hash` if it may be trusted right now, else None."""
        if self._listener_pid != os.getpid():
            return None
        entry = self._entries.get(key_hash)  # a dict read is atomic; no lock on the hot path
        if (
            entry is not None
            and entry.generation == self._generation
            and entry.expires_at > time.monotonic()
        ):
            return entry.principal
        return None

    def lookup(self, key_hash: bytes, load: Callable[[], Principal | None]) -> Principal | None:
        """The principal for `key_hash`, from memory when safe, else from `load()`."""
        self._ensure_listener()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key_hash)
            generation = self._generation
            if entry and entry.generation == generation and entry.expires_at > now:
                return entry.principal
            seen_invalidations = self._invalidations
        principal = load()
        if principal is None or generation is None:
            return principal
        with self._lock:
            unchanged = self._generation == generation and self._invalidations == seen_invalidations
            if unchanged:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()  # crude but bounded; a full cache refills in seconds
                self._entries[key_hash] = _Entry(principal, generation, now + self._ttl)
        return principal

    def forget(
        self, *, key_id: uuid.UUID | None = None, account_id: uuid.UUID | None = None
    ) -> None:
        """Evict at once in this process (the one that made the change); others hear pub/sub."""
        with self._lock:
            self._invalidations += 1
            self._evict(
                lambda p: (
                    (key_id is not None and p.key_id == key_id)
                    or (account_id is not None and p.account_id == account_id)
                )
            )

    def wait_until_subscribed(self, timeout: float = 5.0) -> bool:
        """Start the listener if needed and wait for its subscription (tests, warm-up)."""
        self._ensure_listener()
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        """Stop the listener thread and drop every entry."""
        # The listener notices within one poll and exits; nobody needs to wait for that.
        self._stop.set()
        with self._lock:
            self._entries.clear()
            self._generation = None

    def _ensure_listener(self) -> None:
        if self._listener_pid == os.getpid():
            return
        with self._lock:
            if self._listener_pid == os.getpid():
                return
            # After a fork the parent's thread does not exist here: start our own, forget all.
            self._entries.clear()
            self._generation = None
            self._subscribed.clear()
            self._listener_pid = os.getpid()
        self._thread = threading.Thread(
            target=self._listen, name="auth-cache-invalidation", daemon=True
        )
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub: redis.client.PubSub | None = None
            try:
                # On a cluster: the node holding the epoch (any node hears every message).
                server = node_client(self._client, EPOCH_KEY)
                pubsub = server.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(CHANNEL)
                self._heard_epoch = None  # this subscription's baseline: its first read
                next_check = 0.0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=_POLL_SECONDS)
                    if message is not None:
                        self._handle(message)
                    if time.monotonic() >= next_check and self._generation is not None:
                        self._check_epoch(int(server.get(EPOCH_KEY) or 0))
                        next_check = time.monotonic() + EPOCH_CHECK_SECONDS
            except Exception as exc:  # the listener must outlive any failure; it only disables
                if not self._stop.is_set():
                    logger.warning("auth cache: invalidation channel lost (%s); cache off", exc)
                with suppress(Exception):
                    refresh_topology(self._client)
            finally:
                self._disable()
                if pubsub is not None:
                    with suppress(Exception):
                        pubsub.close()
            self._stop.wait(_RETRY_SECONDS)

    def _check_epoch(self, epoch: int) -> None:
        heard = self._heard_epoch
        self._heard_epoch = max(epoch, heard or 0)
        if heard is not None and epoch > heard:
            # An invalidation whose message did not reach us: forget everything.
            with self._lock:
                self._invalidations += 1
                self._entries.clear()

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            with self._lock:
                self._next_generation += 1
                self._generation = self._next_generation
            self._subscribed.set()
            return
        if message["type"] != "message":
            return
        epoch, _, invalidation = message["data"].decode().rpartition(" ")
        if epoch.isdigit() and self._heard_epoch is not None:
            self._heard_epoch = max(self._heard_epoch, int(epoch))
        kind, _, ident = invalidation.partition(":")
        with self._lock:
            self._invalidations += 1
            if kind == "key":
                self._evict(lambda p: str(p.key_id) == ident)
            elif kind == "account":
                self._evict(lambda p: str(p.account_id) == ident)
            else:
                self._entries.clear()

    def _evict(self, matches: Callable[[Principal], bool]) -> None:
        # Invalidations are rare next to lookups, so a scan beats keeping a second index.
        for key_hash in [h for h, e in self._entries.items() if matches(e.principal)]:
            del self._entries[key_hash]

    def _disable(self) -> None:
        with self._lock:
            self._generation = None
            self._entries.clear()
        self._subscribed.clear()
