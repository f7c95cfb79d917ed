"""Atomic admission: one Redis round trip checks every window of the account and counts the call.

An account has two windows: its UTC month (the quota) and, on most plans, a short burst window
(a minute by default). The Lua script runs atomically in Redis: it checks both and counts the
call in both only if both admit, so however many web processes call it at once, no window ever
admits more than its limit, and a call refused by one window costs nothing in the other. Three
guards make the count exact, not just atomic (the protocol as a whole is in `timo_hub.quota` and
docs/decisions.md):

* A counter is trusted only in the Redis server life that seeded it. Beside each counter lives the
  server life it was seeded under (the server's `run_id`, new at every start, and its replication
  id, new whenever it is promoted to master); a counter restored from a stale AOF or RDB, or
  replicated to a promoted replica (or back to a former master promoted again), carries another
  life and counts as missing.
* A missing counter is never guessed. The first caller to find it missing takes the account's
  rebuild fence and answers `REBUILD`; everyone else answers `REBUILDING` until the fence holder
  has seeded the counter with the true count (`timo_hub.quota.rebuild`).
* A call is only counted while its caller still waits for the answer. Each call carries a deadline
  on Redis's clock; a script that runs later (Redis was stalled, the command sat in a socket
  buffer) counts nothing and answers `EXPIRED`, so a call its caller gave up on and answered 503 is
  never counted.

Burst windows are fixed windows on Redis's clock (window number = Redis time // window length),
counted in one hash per account and month beside the counter (`w`: window number, `n`: calls).
The hash lives and dies with its counter: a counter of this server life vouches for it (both come
from the same snapshot or replication stream), a hash older than the current window counts as 0,
and a rebuilt counter's window is seeded from the ledger's per-window tallies.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import os
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

import hiredis
import redis
from redis.cluster import RedisCluster
from redis.connection import Connection, ConnectionPool
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    TryAgainError,
)

from timo_hub.platform.redis_client import (
    AnyRedis,
    group_by_node,
    is_cluster,
    learn_moved_slot,
    named_node_client,
    node_client,
    node_name,
    refresh_topology,
)
from timo_hub.quota import metrics
from timo_hub.quota.period import Period

logger = logging.getLogger(__name__)

# How long after sending a call may still be counted. It must stay well below the socket timeout
# (`timo_hub.platform.runtime.REDIS_SOCKET_TIMEOUT`, 2 s): a reply sent within the budget reaches
# a caller that is still waiting for it.
ADMIT_BUDGET_SECONDS = 1.0
# A fence outlives any rebuild that can succeed (waiting for dead writers takes at most
# `sync.WRITER_LIVENESS_SECONDS`), so it only expires when its holder died mid-rebuild.
FENCE_MILLISECONDS = 15_000
# Deadline offsets older than this are re-measured, so a step of Redis's clock is followed.
OFFSET_MAX_AGE_SECONDS = 10.0
# How long an answer that came too late for its caller is still waited for (to take it back).
LATE_REPLY_SECONDS = 60.0
# How long a take-back remembers that it ran (longer than any client retry of it).
UNDO_SECONDS = 600

# A lease takes at most this share of what is left of the month (see `timo_hub.quota.leases`), so
# that calls parked in other processes' leases can hold back at most a sliver of the quota, and
# none at all over the month's last calls: below this many calls left, every call is counted one
# by one.
LEASE_HEADROOM = 1000

# Whether a server life (`run_id.master_replid`, from the caller) is still this server's: its
# replication id changes whenever it becomes a master, and its socket (so the caller's view of its
# run id) whenever it restarts. A process can keep its connection to a master that is demoted and
# promoted again, and with it a life that is over; the scripts that trust a stamp check it here.
SAME_LIFE = """
local function same_life(life)
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  return replid ~= nil and string.sub(life, -#replid - 1) == '.' .. replid
end
"""

# KEYS: counter, run, fence, leases, burst. ARGV: limit (-1 unlimited), calls wanted (0 only
# looks), server life, deadline (µs, Redis clock), fence token, fence ms, lease name, burst limit
# (-1 none), burst window (µs), whether to check that the life is still the server's (1: on a
# cluster, where masters change; 0: a single server, whose life ends only with its connections).
# Counts one call, or up to `wanted` (a lease: recorded under its name
# in `leases` with the calls its process may not use yet, `lease_ahead`, so that what is never
# used can be returned, by its process or for a dead one by reconcile, and never more than that),
# in the month and in the current burst window, if both admit. Returns {state, used, Redis time
# in µs, n, burst used}: n is the calls counted, or for a refusal the leases on record (calls
# that may come back soon); the month is checked first, so a refusal by both says the month.
ADMIT_LUA = (
    SAME_LIFE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now > tonumber(ARGV[4]) then return {-3, 0, now, 0, 0} end
if ARGV[10] == '1' and not same_life(ARGV[3]) then return {-5, 0, now, 0, 0} end
local found = redis.call('MGET', KEYS[1], KEYS[2])
if found[1] and found[2] == ARGV[3] then
  local used = tonumber(found[1])
  local wanted = tonumber(ARGV[2])
  local blimit = tonumber(ARGV[8])
  local bused, window = 0, 0
  if blimit >= 0 then
    window = math.floor(now / tonumber(ARGV[9]))
    local b = redis.call('HMGET', KEYS[5], 'w', 'n')
    if tonumber(b[1]) == window then bused = tonumber(b[2]) end
  end
  if wanted == 0 then return {0, used, now, 0, bused} end
  local limit = tonumber(ARGV[1])
  if limit >= 0 and used >= limit then
    return {0, used, now, redis.call('HLEN', KEYS[4]), bused}
  end
  if blimit >= 0 and bused >= blimit then
    return {2, used, now, redis.call('HLEN', KEYS[4]), bused}
  end
  local grant = 1
  if wanted > 1 then
    grant = wanted
    if limit >= 0 then grant = math.min(grant, math.floor((limit - used) / HEADROOM)) end
    if blimit >= 0 then grant = math.min(grant, math.floor((blimit - bused) / HEADROOM)) end
    if grant < 2 then grant = 1 end
  end
  local after = redis.call('INCRBY', KEYS[1], grant)
  if blimit >= 0 then
    bused = bused + grant
    redis.call('HSET', KEYS[5], 'w', window, 'n', bused)
    -- Kept a little past its window's end; an older window reads as 0 anyway.
    redis.call('PEXPIREAT', KEYS[5], math.floor((window + 1) * tonumber(ARGV[9]) / 1000) + 1000)
  end
  if grant > 1 then
    -- On record as unused: all but the calls its process may use before it next records.
    local ahead = math.min(grant, math.max(2, math.floor((grant + 1) / 2)))
    redis.call('HSET', KEYS[4], ARGV[7], grant - ahead)
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[4], ttl) end
  end
  return {1, after, now, grant, bused}
end
if ARGV[2] == '0' then return {-4, 0, now, 0, 0} end
if redis.call('SET', KEYS[3], ARGV[5], 'NX', 'PX', ARGV[6]) then return {-1, 0, now, 0, 0} end
return {-2, 0, now, 0, 0}
""".replace("HEADROOM", str(LEASE_HEADROOM))
)

# KEYS: counter, run, fence, seeded, leases, burst. ARGV: fence token, seed, run id, expire-at
# epoch, burst window (µs; 0: none), then pairs of (window number, calls) from the ledger. 1 when
# seeded. `seeded` holds the moment (µs, Redis clock) this life of the counter began; the leases
# of an earlier life go with it (their calls are in the seed, their unused part is not). The
# burst window is seeded with the ledger's calls for the window now current (none: 0); any other
# window's are over.
SEED_LUA = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('DEL', KEYS[5], KEYS[6])
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'EXAT', ARGV[4])
redis.call('SET', KEYS[4], now, 'EXAT', ARGV[4])
local wus = tonumber(ARGV[5])
if wus > 0 then
  local window = math.floor(now / wus)
  for i = 6, #ARGV - 1, 2 do
    if tonumber(ARGV[i]) == window and tonumber(ARGV[i + 1]) > 0 then
      redis.call('HSET', KEYS[6], 'w', window, 'n', ARGV[i + 1])
      redis.call('PEXPIREAT', KEYS[6], math.floor((window + 1) * wus / 1000) + 1000)
    end
  end
end
redis.call('DEL', KEYS[3])
return 1
"""

# KEYS: counter, run, seeded, undo, takebacks, burst. ARGV: run id, the counted call's Redis time
# (µs), undo seconds, burst window (µs; 0: none). Takes back a call that was counted but does not
# count (a late answer its caller had given up on and answered 503, or a call its handler answered
# 5xx), from the month and from its burst window if that is still current, if the counter that
# counted it is still the one in place: same server life, seeded before the call ran. A counter
# rebuilt since then is left alone: it never included a late answer (its caller tallied nothing),
# and for a refund it is at worst one high, the safe side, until its next rebuild. `undo` is
# unique to this take-back, so a copy of the command (a client retry after a lost reply) changes
# nothing. `takebacks` counts the calls taken back from this counter, so that reconcile can tell a
# counter lowered by one while it was looking (its proof may predate the refund) from one that is
# behind.
UNCOUNT_LUA = (
    SAME_LIFE
    + """
if not redis.call('SET', KEYS[4], 1, 'NX', 'EX', ARGV[3]) then return 0 end
local found = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
if found[1] and found[2] == ARGV[1] and tonumber(found[3] or '0') < tonumber(ARGV[2])
    and same_life(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  redis.call('INCR', KEYS[5])
  local wus = tonumber(ARGV[4])
  if wus > 0 then
    local b = redis.call('HMGET', KEYS[6], 'w', 'n')
    if tonumber(b[1]) == math.floor(tonumber(ARGV[2]) / wus) and tonumber(b[2]) > 0 then
      redis.call('HINCRBY', KEYS[6], 'n', -1)
    end
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[5], ttl) end
  return 1
end
return 0
"""
)

# KEYS: counter, run, leases, burst. ARGV: lease name, run id, calls unused (-1: as last
# recorded), burst window number (-1: none or unknown). Ends a lease: returns the calls it counted
# but never used to the counter that counted them, and to its burst window while that is current.
# Only a lease still on record is ended (the record goes with it), so running this twice, or
# after a rebuild, returns nothing more. Returns the calls returned, or -1 when the lease was no
# longer on record.
SETTLE_LUA = (
    SAME_LIFE
    + """
local recorded = redis.call('HGET', KEYS[3], ARGV[1])
if not recorded then return -1 end
redis.call('HDEL', KEYS[3], ARGV[1])
local unused = tonumber(ARGV[3])
if unused < 0 then unused = tonumber(recorded) end
local found = redis.call('MGET', KEYS[1], KEYS[2])
if unused > 0 and found[1] and found[2] == ARGV[2] and same_life(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], unused)
  local b = redis.call('HMGET', KEYS[4], 'w', 'n')
  if tonumber(b[1]) == tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[4], 'n', math.max(tonumber(b[2]) - unused, 0))
  end
  return unused
end
return 0
"""
)

# KEYS: leases. ARGV: lease name, calls unused. Records how much of a lease is still unused (what
# reconcile returns if its process dies), if the lease is still on record.
RECORD_UNUSED_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
"""

# KEYS: fence. ARGV: token. Lets go of a fence taken by a call whose caller had given up.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: counter, run, takebacks. ARGV: target, run id, takebacks seen before the target was read.
# Raises a counter of this server life to at least the target, unless a call was taken back from
# it since (the target may count it); a missing or foreign counter is left to the rebuild.
# Returns {before, after}, or {-1, -1} when it left the counter alone for one of those reasons.
RAISE_LUA = (
    SAME_LIFE
    + """
local found = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
if not found[1] or found[2] ~= ARGV[2] or not same_life(ARGV[2]) then return {-1, -1} end
if tonumber(found[3] or '0') ~= tonumber(ARGV[3]) then return {-1, -1} end
local used, target = tonumber(found[1]), tonumber(ARGV[1])
if used < target then
  redis.call('SET', KEYS[1], target, 'KEEPTTL')
  return {used, target}
end
return {used, used}
"""
)


MONTH_POLICY = "month"
BURST_POLICY = "burst"


class State(enum.IntEnum):
    """What the admission script answered."""

    ADMITTED = 1
    REFUSED = 0
    """Refused by the month (whatever the burst window says)."""
    THROTTLED = 2
    """Refused by the burst window; the month had room."""
    REBUILD = -1
    """The counter is missing and this caller now holds the fence: it must rebuild it."""
    REBUILDING = -2
    """The counter is missing and someone else is rebuilding it: ask again shortly."""
    EXPIRED = -3
    """The script ran after the call's deadline and counted nothing."""
    UNKNOWN = -4
    """A look (not a count) found no trustworthy counter."""
    STALE = -5
    """The caller's view of the server's life is out of date (a master demoted and promoted
    again since it connected): nothing ran; it must ask the server who it is, then again."""


class BurstWindow(NamedTuple):
    """The account's current burst window as an admission found it (a tuple: made on every
    call, so made cheaply)."""

    limit: int
    used: int
    """Calls counted in the window, this one included when it was admitted."""
    seconds: int
    """The window's length."""
    number: int
    """Which window: it starts at epoch second `number * seconds` (Redis's clock)."""
    ends_in: float
    """Seconds from the admission to the window's end."""

    @property
    def remaining(self) -> int:
        """Calls the window still admits (never negative)."""
        return max(self.limit - self.used, 0)

    @property
    def reset_epoch(self) -> int:
        """Epoch second the next window starts."""
        return (self.number + 1) * self.seconds

    @property
    def reset_after(self) -> int:
        """Whole seconds until the next window, rounded up and at least 1 (never 0: a client told
        0 would retry into the same window)."""
        return max(1, math.ceil(self.ends_in))


def window_name(seconds: int) -> str:
    """A burst window's length in words: "minute", "hour", "10-second window"."""
    if seconds in _WINDOW_NAMES:
        return _WINDOW_NAMES[seconds]
    if seconds % 60 == 0:
        return f"{seconds // 60}-minute window"
    return f"{seconds}-second window"


_WINDOW_NAMES = {1: "second", 60: "minute", 3600: "hour"}


@dataclass(frozen=True)
class Admission:
    """The outcome of one admission: counted or not, and each window's count afterwards."""

    admitted: bool
    used: int
    limit: int | None
    period: Period
    counted_at: int = 0
    """For an admitted call, when Redis counted it (its clock, µs) ..."""
    run_id: str = ""
    """... and in which server life: what a refund needs to find the counter that counted it."""
    calls_parked: bool = False
    """For a refusal: calls leased to web processes and not used yet may come back within a
    second (so the refusal may be brief)."""
    burst: BurstWindow | None = None
    """The burst window, when the account has a burst limit."""
    refused_by: str | None = None
    """For a refusal: the policy that refused it (`MONTH_POLICY` or `BURST_POLICY`)."""

    @property
    def remaining(self) -> int | None:
        """Calls left this month (never negative); None when unlimited."""
        if self.limit is None:
            return None
        return max(self.limit - self.used, 0)


@dataclass(frozen=True)
class CounterKeys:
    """The Redis keys of one account's month: all hash-tagged by account, so one cluster slot."""

    counter: str
    run: str
    fence: str
    seeded: str
    takebacks: str
    leases: str
    burst: str

    def undo(self) -> str:
        """A key naming one take-back, so that running it twice takes back one call."""
        return f"{self.counter}:undo:{uuid.uuid4().hex}"


def lease_ahead(granted: int) -> int:
    """How many calls of a lease of `granted` its process may use beyond what Redis has on
    record as used (the admission script's rule, which the lease's first record follows)."""
    return min(granted, max(2, (granted + 1) // 2))


def counter_key(account_id: uuid.UUID | str, period: Period) -> str:
    """The Redis key of an account's counter for a period (hash-tagged by account)."""
    return f"timo:quota:{{{account_id}}}:{period.label}"


def counter_keys(account_id: uuid.UUID | str, period: Period) -> CounterKeys:
    """The counter and the keys beside it: server-life stamp, rebuild fence, seeding moment,
    take-back count, leases and burst window."""
    counter = counter_key(account_id, period)
    return CounterKeys(
        counter,
        counter + ":run",
        counter + ":fence",
        counter + ":seeded",
        counter + ":takebacks",
        counter + ":leases",
        counter + ":burst",
    )


def server_run_id(client: AnyRedis, key: str = "") -> str:
    """The life of the Redis server that holds `key`: its `run_id` (new at every start) and its
    `master_replid` (new whenever it becomes a master: a promoted replica, or a demoted master
    promoted again, is a new life even though the process is the same)."""
    if is_cluster(client) and not key:
        raise ValueError("on a Redis Cluster, a server life is a node's: name a key")
    server = node_client(client, key)
    return _life(server.info("server")["run_id"], server.info("replication")["master_replid"])


def _life(run_id: object, replication_id: object) -> str:
    return f"{run_id}.{replication_id}"


class RunIds:
    """Each node's server life, asked once per node (a reconcile run looks at many accounts)."""

    def __init__(self, client: AnyRedis) -> None:
        self._client = client
        self._known: dict[str, str] = {}
        refresh_topology(client, force=True)  # a run starts from the cluster's map as it is now

    def of(self, key: str) -> str:
        """The `run_id` of the server that holds `key`."""
        name = node_name(self._client, key)
        if name not in self._known:
            self._known[name] = server_run_id(self._client, key)
        return self._known[name]


def _bulk_strings(*parts: object) -> bytes:
    # RESP encoding of our few short ASCII arguments, without redis-py's general-purpose packer.
    out = []
    for part in parts:
        data = str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _from_info(info: bytes, field: str) -> str:
    for line in info.decode().splitlines():
        if line.startswith(field + ":"):
            return line.partition(":")[2].strip()
    raise redis.ResponseError(f"INFO did not report {field}")


class _Link:
    """One thread's connection, the server life it talks to, and its view of Redis's clock.

    The admission's bytes go over the connection's socket directly, and its reply is parsed by a
    hiredis reader of the link's own (new with every connection): redis-py connects,
    authenticates and selects the database; the hot path skips its per-command layers.
    """

    __slots__ = (
        "conn",
        "offset_at",
        "offset_us",
        "pid",
        "poller",
        "pool",
        "reader",
        "run_id",
    )

    def __init__(self, conn: Connection, pool: ConnectionPool) -> None:
        self.conn = conn
        self.pool = pool
        self.pid = os.getpid()
        self.run_id = ""
        self.offset_us = 0.0
        self.offset_at = -float("inf")
        self.reader = _new_reader()
        self.poller: select.poll | None = None

    def learn_offset(self, redis_us: int, received: float) -> None:
        # Redis read its clock before we received the answer, so this is a lower bound of
        # (Redis clock - our monotonic clock); the largest recent one is the tightest. A deadline
        # built on a lower bound can only come early, never late.
        sample = redis_us - received * 1_000_000.0
        if sample > self.offset_us or received - self.offset_at > OFFSET_MAX_AGE_SECONDS:
            self.offset_us, self.offset_at = sample, received

    def is_quiet(self) -> bool:
        """Nothing waits on the connection between commands: no data, and no EOF from a server
        that closed it (a restart). One `poll(2)` with no wait."""
        if self.conn._sock is None:
            return False
        if self.poller is None:  # TLS may hold decrypted bytes above the socket: ask redis-py
            try:
                return not self.conn.can_read(timeout=0)
            except (redis.ConnectionError, OSError):
                return False
        return not self.poller.poll(0)

    def watch(self, sock: socket.socket) -> None:
        """Start with a newly connected socket: a fresh reply parser, and a poller on it."""
        self.reader = _new_reader()
        self.poller = None
        if not isinstance(sock, ssl.SSLSocket):
            self.poller = select.poll()
            self.poller.register(sock, select.POLLIN | select.POLLPRI)


def _new_reader() -> hiredis.Reader:
    return hiredis.Reader(protocolError=redis.InvalidResponse, replyError=redis.ResponseError)


def _read_reply(sock: socket.socket, reader: hiredis.Reader) -> object:
    """The next complete reply on `sock` (an error reply is returned, not raised).

    RESP3 push frames (invalidations, maintenance notices) can come before a reply on the same
    connection; they are skipped, as redis-py's own reader does, never taken for the answer.
    """
    while True:
        reply = reader.gets()
        if reply is False:
            data = sock.recv(65536)
            if not data:
                raise redis.ConnectionError("Connection closed by server.")
            reader.feed(data)
        elif not isinstance(reply, hiredis.PushNotification):
            return reply


# Cluster answers that mean the script did not run on the node asked (`AskError` covers MOVED).
# A demoted primary refuses the script's first write, so READONLY means nothing ran either.
_NOTHING_RAN_ON_THIS_NODE = (
    AskError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    redis.ReadOnlyError,
)


@dataclass(frozen=True)
class Outcome:
    """The script's answer for one call."""

    state: State
    used: int
    at: int
    """When the script ran: Redis's clock, in µs."""
    run_id: str
    """The Redis server life that ran it."""
    granted: int = 0
    """Calls counted: 1, or more for a lease (the rest are the caller's to use or return); for a
    refusal, the leases on record (their unused calls may come back)."""
    burst_used: int = 0
    """Calls counted in the current burst window (this one included when admitted)."""


class Admitter:
    """Runs the admission script on a connection of each thread's own.

    This is the hot path's only network round trip, so it bypasses redis-py's per-command
    machinery (pool checkout, retry wrapper, response callbacks): about half the client CPU of
    `client.evalsha()`. Because the script increments, a failed call is never retried blindly (the
    script may have run before the reply was lost): a connection that the server has closed is
    detected *before* sending, and any failure after sending surfaces as an error (503) for the
    client to retry. A new connection first asks the server for its `run_id` and its clock.
    """

    def __init__(self, client: AnyRedis, fence_token: str) -> None:
        self._client = client
        self._cluster = is_cluster(client)
        self._fence_token = fence_token
        sha = hashlib.sha1(ADMIT_LUA.encode()).hexdigest()
        # EVALSHA <sha> 5 <keys> <limit> <wanted> <life> <deadline> <token> <fence ms> <lease>
        # <burst limit> <burst window> <check life>: 18 strings.
        self._evalsha_prefix = b"*18\r\n" + _bulk_strings("EVALSHA", sha, 5)
        self._check_life = 1 if self._cluster else 0
        self._seed = client.register_script(SEED_LUA)
        self._raise = client.register_script(RAISE_LUA)
        self._uncount = client.register_script(UNCOUNT_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._settle = client.register_script(SETTLE_LUA)
        self._record_unused = client.register_script(RECORD_UNUSED_LUA)
        self._local = threading.local()

    def _link(self, key: str) -> _Link:
        if self._cluster:
            return self._node_link(key)
        link: _Link | None = getattr(self._local, "link", None)
        if link is None or link.pid != os.getpid():
            pool = cast(redis.Redis, self._client).connection_pool
            link = _Link(self._new_connection(pool), pool)
            self._local.link = link
        return self._ready(link)

    def _node_link(self, key: str) -> _Link:
        # On a cluster, a thread keeps one link per node it has talked to, and picks the one
        # serving the key's slot as the client's slot map says (refreshed on MOVED or failure).
        name, node = named_node_client(cast(RedisCluster, self._client), key)
        links: dict[str, _Link] | None = getattr(self._local, "links", None)
        if links is None:
            links = self._local.links = {}
        link = links.get(name)
        if link is None or link.pid != os.getpid() or link.pool is not node.connection_pool:
            link = links[name] = _Link(
                self._new_connection(node.connection_pool), node.connection_pool
            )
        return self._ready(link)

    def _ready(self, link: _Link) -> _Link:
        conn = link.conn
        # A server that restarted has closed our socket: readable now, with EOF or junk.
        if conn._sock is not None and not link.is_quiet():
            conn.disconnect()
        if conn._sock is None:
            self._introduce(link)
        return link

    @staticmethod
    def _new_connection(pool: ConnectionPool) -> Connection:
        # Made outside the pool's count: these connections are never returned to it, and a pool
        # that counted each (one per thread, one more per timed-out call) would refuse new ones
        # once `max_connections` were made. A plain `redis.Redis` pool makes `Connection`s.
        return cast(Connection, pool.connection_class(**pool.connection_kwargs))

    def _introduce(self, link: _Link) -> None:
        conn = link.conn
        try:
            conn.connect()
            # A fresh parser and poller before anything is read: nothing of an earlier socket's
            # half-read reply may be taken for an answer on this one.
            link.watch(cast(socket.socket, conn._sock))
            commands = [("INFO", "server"), ("INFO", "replication"), ("TIME",)]
            conn.send_packed_command(conn.pack_commands(commands), False)
            run_id = _from_info(conn.read_response(), "run_id")
            link.run_id = _life(run_id, _from_info(conn.read_response(), "master_replid"))
            seconds, micros = conn.read_response()
            link.offset_at = -float("inf")
            link.learn_offset(int(seconds) * 1_000_000 + int(micros), time.monotonic())
        except BaseException:
            # Whatever failed (a refused INFO, a reply without a run id), the connection is not
            # introduced: the next call starts again rather than admit on a half-known link.
            conn.disconnect()
            raise

    def _run(self, link: _Link, key: CounterKeys, args: list[object]) -> list[int]:
        conn = link.conn
        sock = cast(socket.socket, conn._sock)
        sent = False
        try:
            sock.sendall(
                self._evalsha_prefix
                + _bulk_strings(key.counter, key.run, key.fence, key.leases, key.burst, *args)
            )
            sent = True
            reply = _read_reply(sock, link.reader)
            if isinstance(reply, redis.ResponseError):
                error = conn._parser.parse_error(str(reply))
                if not isinstance(error, NoScriptError):
                    raise error
                # Redis restarted and forgot the script; NOSCRIPT means nothing ran.
                keys = (key.counter, key.run, key.fence, key.leases, key.burst)
                command = ("EVAL", ADMIT_LUA, 5, *keys, *args)
                sock.sendall(b"".join(conn.pack_command(*command)))
                reply = _read_reply(sock, link.reader)
                if isinstance(reply, redis.ResponseError):
                    raise conn._parser.parse_error(str(reply))
        except TimeoutError:
            if sent:
                window_us = 0 if args[7] == -1 else int(cast(int, args[8]))
                self._hand_over_late_reply(link, key, str(args[6]), window_us)
            else:
                conn.disconnect()
            raise redis.TimeoutError("Timeout reading from the quota store") from None
        except (redis.BusyLoadingError, redis.ReadOnlyError):
            # Nothing was counted: a server loading its data runs nothing, and on a demoted
            # primary the script stops at its first write. Reconnect to learn what is there now.
            conn.disconnect()
            raise
        except redis.ResponseError:
            raise  # an error reply ends the exchange cleanly: the connection stays usable
        except (redis.ConnectionError, redis.InvalidResponse, OSError) as exc:
            conn.disconnect()
            if sent:
                # The command may have reached Redis and been counted; its answer is lost. (After
                # a Redis restart that does not matter: the counter is rebuilt from the ledger.)
                metrics.ADMISSIONS_UNCERTAIN.inc()
                logger.warning("quota: admission cut off after sending (%s)", key.counter)
            if isinstance(exc, redis.ConnectionError):
                raise
            raise redis.ConnectionError(f"quota store connection failed: {exc}") from exc
        result = cast(list[int], reply)
        link.learn_offset(int(result[2]), time.monotonic())
        return result

    def _hand_over_late_reply(
        self, link: _Link, key: CounterKeys, lease: str, window_us: int
    ) -> None:
        # The script may still run, or may have run with its answer delayed: the caller will
        # answer 503, so hand the connection (and what its reader holds of the answer) to a
        # thread that reads the answer when it comes and takes back a call counted too late for
        # its caller. This thread starts afresh.
        conn, reader = link.conn, link.reader
        link.conn = self._new_connection(link.pool)
        try:
            threading.Thread(
                target=self._await_late_reply,
                args=(conn, reader, link.run_id, key, lease, window_us),
                daemon=True,
            ).start()
        except RuntimeError as exc:  # no thread to be had: the answer is lost with the socket
            conn.disconnect()
            metrics.ADMISSIONS_UNCERTAIN.inc()
            logger.error("quota: cannot wait for a late answer (%s): %s", key.counter, exc)

    def _await_late_reply(
        self,
        conn: Connection,
        reader: hiredis.Reader,
        run_id: str,
        key: CounterKeys,
        lease: str,
        window_us: int,
    ) -> None:
        try:
            sock = cast(socket.socket, conn._sock)
            sock.settimeout(LATE_REPLY_SECONDS)
            reply = _read_reply(sock, reader)
            if isinstance(reply, redis.ResponseError):
                raise reply
            state, _, executed_at, granted, _ = cast(list[int], reply)
        except Exception as exc:
            metrics.ADMISSIONS_UNCERTAIN.inc()
            logger.error("quota: no answer for a call given up on (%s): %s", key.counter, exc)
            return
        finally:
            conn.disconnect()
        if state == State.ADMITTED and granted > 1:
            # A lease nobody will use: every call of it goes back (its record keeps some back).
            window = executed_at // window_us if window_us > 0 else -1
            self._persist(
                lambda: self._report_take_back(
                    key, self.settle(key, lease, run_id, granted, window) > 0
                ),
                "return a late lease",
                key,
            )
        elif state == State.ADMITTED:
            undo = key.undo()  # one name for every attempt: retrying takes back one call
            self._persist(
                lambda: self._report_take_back(
                    key, self.take_back(key, run_id, executed_at, undo, window_us)
                ),
                "take back a late admission",
                key,
            )
        elif state == State.REBUILD:
            self._persist(lambda: self.release_fence_of(key), "let go of a fence", key)

    def _persist(self, step: Callable[[], None], what: str, key: CounterKeys) -> None:
        # Redis was slow a moment ago and may still be: keep trying (every step is idempotent)
        # for as long as a late answer is waited for.
        give_up_at = time.monotonic() + LATE_REPLY_SECONDS
        while True:
            try:
                step()
                return
            except redis.RedisError as exc:
                if time.monotonic() > give_up_at:
                    metrics.ADMISSIONS_UNCERTAIN.inc()
                    logger.error("quota: could not %s (%s): %s", what, key.counter, exc)
                    return
            time.sleep(1.0)

    @staticmethod
    def _report_take_back(key: CounterKeys, taken_back: bool) -> None:
        metrics.LATE_ADMISSIONS_TAKEN_BACK.inc(int(taken_back))
        logger.warning(
            "quota: %s a call counted after its caller gave up (%s)",
            "took back" if taken_back else "found rebuilt since, so kept out",
            key.counter,
        )

    def admit(
        self,
        account_id: uuid.UUID,
        limit: int | None,
        period: Period,
        *,
        count: bool = True,
        wanted: int = 1,
        lease: str = "-",
        burst_limit: int | None = None,
        window_seconds: int = 60,
    ) -> Outcome:
        """Count one call if the month's limit and the burst window's (`burst_limit` calls per
        `window_seconds`; None: none) both allow it (`count=False` only looks).

        With `wanted` > 1, count up to that many at once as a lease named `lease` (the script
        grants less, or one, when a window has little left: `LEASE_HEADROOM`).
        """
        keys = counter_keys(account_id, period)
        for attempt in range(2):
            link: _Link | None = None
            try:
                link = self._link(keys.counter)
                deadline = int(
                    (time.monotonic() + ADMIT_BUDGET_SECONDS) * 1_000_000 + link.offset_us
                )
                args: list[object] = [
                    -1 if limit is None else limit,
                    wanted if count else 0,
                    link.run_id,
                    deadline,
                    self._fence_token,
                    FENCE_MILLISECONDS,
                    lease,
                    -1 if burst_limit is None else burst_limit,
                    window_seconds * 1_000_000,
                    self._check_life,
                ]
                state, used, at, granted, burst_used = self._run(link, keys, args)
                if state == State.STALE:
                    # Nothing ran: this link asks its node who it is, and the call is asked again.
                    link.conn.disconnect()
                    if attempt == 0:
                        continue
                    raise redis.ConnectionError("quota store changed masters twice in one call")
            except _NOTHING_RAN_ON_THIS_NODE as exc:
                # The slot is served elsewhere now (a failover, a resharding), or the cluster is
                # between masters: nothing ran. This node's life may be changing too: its link
                # asks again who it talks to before its next call. A MOVED is asked again once,
                # at the node it names.
                if link is not None:
                    link.conn.disconnect()
                if isinstance(exc, MovedError):
                    learn_moved_slot(self._client, exc)
                else:
                    refresh_topology(self._client)
                if isinstance(exc, MovedError) and attempt == 0:
                    continue
                raise redis.ConnectionError(f"quota store is changing masters: {exc}") from exc
            except redis.ConnectionError:
                refresh_topology(self._client)  # a dead node: its replica may serve it soon
                raise
            return Outcome(
                State(state), int(used), int(at), link.run_id, int(granted), int(burst_used)
            )
        raise AssertionError("unreachable")

    def seed(
        self,
        account_id: uuid.UUID,
        period: Period,
        used: int,
        window_seconds: int = 0,
        windows: dict[int, int] | None = None,
    ) -> bool:
        """Create the counter at `used` if this process still holds its fence, and its burst
        window (of `window_seconds`; 0: none) at the calls `windows` has for the window current
        in Redis then (by window number; none: 0). True if it did."""
        keys = counter_keys(account_id, period)
        run_id = server_run_id(self._client, keys.counter)
        args: list[str | int] = [
            self._fence_token,
            used,
            run_id,
            period.counter_expires_at,
            window_seconds * 1_000_000,
        ]
        for number, calls in sorted((windows or {}).items()):
            args += [number, calls]
        seeded = self._seed(
            keys=[keys.counter, keys.run, keys.fence, keys.seeded, keys.leases, keys.burst],
            args=args,
        )
        return bool(seeded)

    def settle(
        self, keys: CounterKeys, lease: str, run_id: str, unused: int, window: int = -1
    ) -> int:
        """End a lease of which `unused` calls were not used (-1: as last recorded): they go back
        to the counter of server life `run_id` that counted them, and to burst window number
        `window` if it is still current (-1: none). Returns the calls returned, or -1 when the
        lease was no longer on record (ended already, or its counter rebuilt since)."""
        return int(
            self._settle(
                keys=[keys.counter, keys.run, keys.leases, keys.burst],
                args=[lease, run_id, unused, window],
            )
        )

    def record_unused(self, records: list[tuple[CounterKeys, str, int]]) -> None:
        """Record how many calls of each lease (keys, name, unused) are still unused, in one
        round trip (on a cluster, one per lease: a cluster pipeline does not load scripts)."""
        if self._cluster:
            for keys, lease, unused in records:
                self._record_unused(keys=[keys.leases], args=[lease, unused])
            return
        pipe = cast(redis.Redis, self._client).pipeline(transaction=False)
        for keys, lease, unused in records:
            self._record_unused(keys=[keys.leases], args=[lease, unused], client=pipe)
        pipe.execute()

    def take_back(
        self, keys: CounterKeys, run_id: str, executed_at: int, undo: str, window_us: int = 0
    ) -> bool:
        """Uncount a call counted at Redis time `executed_at` (µs) that does not count, if the
        counter life that counted it is still in place, and from its burst window (of `window_us`
        µs; 0: none) while that is current; True if it did.

        `undo` names this take-back: running it again (a client's retry) takes back nothing more.
        """
        found = self._uncount(
            keys=[keys.counter, keys.run, keys.seeded, undo, keys.takebacks, keys.burst],
            args=[run_id, executed_at, UNDO_SECONDS, window_us],
        )
        return bool(found)

    def release_fence(self, account_id: uuid.UUID, period: Period) -> None:
        """Let go of the account's rebuild fence if this process holds it."""
        self.release_fence_of(counter_keys(account_id, period))

    def release_fence_of(self, keys: CounterKeys) -> None:
        """Let go of a counter's rebuild fence if this process holds it."""
        self._release(keys=[keys.fence], args=[self._fence_token])

    def raise_to(
        self, account_id: uuid.UUID, period: Period, used: int, run_id: str, takebacks: int
    ) -> tuple[int, int] | None:
        """Raise a counter of server life `run_id` to `used` unless it is higher: (before, after).

        None when the counter is missing or from another server life (the rebuild's business),
        or when a call was taken back from it since it had `takebacks` (`used` may count it).
        """
        keys = counter_keys(account_id, period)
        before, after = self._raise(
            keys=[keys.counter, keys.run, keys.takebacks], args=[used, run_id, takebacks]
        )
        return None if before < 0 else (int(before), int(after))


@dataclass(frozen=True)
class CounterReading:
    """One counter as read: its value and server life (None when missing), and its take-backs."""

    used: int | None
    run_id: str | None
    takebacks: int


def read_counters(
    client: AnyRedis, account_ids: list[uuid.UUID], period: Period
) -> dict[uuid.UUID, CounterReading]:
    """Each account's counter, read in pipelines of 500 accounts per server."""
    found: dict[uuid.UUID, CounterReading] = {}
    all_keys = [counter_keys(account_id, period) for account_id in account_ids]
    for server, positions in group_by_node(client, [k.counter for k in all_keys]):
        for start in range(0, len(positions), 500):
            chunk = positions[start : start + 500]
            pipe = server.pipeline(transaction=False)
            for position in chunk:
                keys = all_keys[position]
                pipe.mget(keys.counter, keys.run, keys.takebacks)
            for position, (used, run, takebacks) in zip(chunk, pipe.execute(), strict=True):
                found[account_ids[position]] = CounterReading(
                    None if used is None else int(used),
                    None if run is None else run.decode(),
                    int(takebacks or 0),
                )
    return found
