"""Atomic admission: one Redis round trip checks the month's counter and counts the call.

The Lua script runs atomically in Redis, so however many web processes call it at once, no more
than `limit` calls are admitted in a month. It sets the counter's expiry in the same step as
creating it, so no counter ever lives without one. When the counter is missing (new month, or
Redis lost its data) the script refuses to guess: it answers "missing" and the caller reseeds it
from the durable ledger in PostgreSQL, then asks again. redis-py's `Script` sends EVALSHA and falls
back to EVAL by itself when Redis has forgotten the script (after a restart).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis
from redis.connection import Connection
from redis.exceptions import NoScriptError

from timo_hub.quota.period import Period

# KEYS[1] counter. ARGV: limit (-1 unlimited), expire-at epoch, seed (-1 none), 1 count / 0 peek.
# Returns {state, used}: state 1 admitted, 0 refused, -1 counter missing (seed required).
ADMIT_LUA = """
local used = redis.call('GET', KEYS[1])
if not used then
  local seed = tonumber(ARGV[3])
  if seed < 0 then return {-1, 0} end
  used = seed
  redis.call('SET', KEYS[1], used)
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
else
  used = tonumber(used)
end
if ARGV[4] == '0' then return {0, used} end
local limit = tonumber(ARGV[1])
if limit >= 0 and used >= limit then return {0, used} end
return {1, redis.call('INCR', KEYS[1])}
"""

# Raise a counter to at least ARGV[1] (never lower it); keep or set its expiry.
RAISE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local target = tonumber(ARGV[1])
if current < target then
  redis.call('SET', KEYS[1], target)
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
  return target
end
return current
"""

MISSING = -1


@dataclass(frozen=True)
class Admission:
    """The outcome of one admission: counted or not, and the month's count afterwards."""

    admitted: bool
    used: int
    limit: int | None
    period: Period

    @property
    def remaining(self) -> int | None:
        """Calls left this month (never negative); None when unlimited."""
        if self.limit is None:
            return None
        return max(self.limit - self.used, 0)


def _bulk_strings(*parts: object) -> bytes:
    # RESP encoding of our few short ASCII arguments, without redis-py's general-purpose packer.
    out = []
    for part in parts:
        data = str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def counter_key(account_id: uuid.UUID | str, period: Period) -> str:
    """The Redis key of an account's counter for a period (hash-tagged by account)."""
    return f"timo:quota:{{{account_id}}}:{period.label}"


class Admitter:
    """Runs the admission script; the counter's seed comes from a callable on a miss.

    This is the hot path's only network round trip, so it bypasses redis-py's per-command
    machinery (pool checkout, retry wrapper, response callbacks) and talks to a connection each
    thread keeps for itself: about half the client CPU of `client.evalsha()`. Because the script
    increments, a failed call is never retried blindly (the script may have run before the reply
    was lost): a connection that the server has closed is detected *before* sending, and any
    failure after sending surfaces as an error (503) for the client to retry.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        sha = hashlib.sha1(ADMIT_LUA.encode()).hexdigest()
        # EVALSHA <sha> 1 <key> <limit> <expire-at> <seed> <mode>: 8 bulk strings, 4 fixed.
        self._evalsha_prefix = b"*8\r\n" + _bulk_strings("EVALSHA", sha, 1)
        self._raise = client.register_script(RAISE_LUA)
        self._local = threading.local()

    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            # A plain `redis.Redis` pool makes `Connection`s (sockets, not cluster nodes).
            conn = cast(Connection, self._pool.make_connection())
            self._local.conn, self._local.pid = conn, os.getpid()
        try:
            # A server that restarted has closed our socket: readable now, with EOF or junk.
            if conn._sock is not None and conn.can_read(timeout=0):
                conn.disconnect()
        except (redis.ConnectionError, OSError):
            conn.disconnect()
        return conn

    def _run(self, key: str, args: list[int]) -> list[int]:
        conn = self._connection()
        try:
            conn.send_packed_command([self._evalsha_prefix + _bulk_strings(key, *args)], False)
            try:
                return conn.read_response()
            except NoScriptError:
                # Redis restarted and forgot the script; NOSCRIPT means nothing ran.
                conn.send_command("EVAL", ADMIT_LUA, 1, key, *args, check_health=False)
                return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise

    def admit(
        self,
        account_id: uuid.UUID,
        limit: int | None,
        period: Period,
        seed: Callable[[], int],
        *,
        count: bool = True,
    ) -> Admission:
        """Count one call if the month's limit allows it; `seed()` rebuilds a missing counter."""
        key = counter_key(account_id, period)
        args = [-1 if limit is None else limit, period.counter_expires_at, -1, 1 if count else 0]
        state, used = self._run(key, args)
        if state == MISSING:
            args[2] = int(seed())
            state, used = self._run(key, args)
        return Admission(admitted=state == 1, used=int(used), limit=limit, period=period)

    def raise_to(self, account_id: uuid.UUID, period: Period, used: int) -> int:
        """Raise the counter to `used` unless it is already higher; return its value."""
        key = counter_key(account_id, period)
        return int(self._raise(keys=[key], args=[used, period.counter_expires_at]))

    @staticmethod
    def read(client: redis.Redis, account_id: uuid.UUID, period: Period) -> int | None:
        """The counter's value, or None when it is missing."""
        value = client.get(counter_key(account_id, period))
        return None if value is None else int(value)
