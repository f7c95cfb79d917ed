"""Failed sign-ins, counted in Redis per email, per address and per pair of the two.

Refusing is by window, never by lock: once a count passes its limit, sign-ins it covers are
refused (before any password is checked, so guessing learns nothing) until its window ends. Three
counts, so that one attacker cannot lock anyone else out:

* per email and address: the owner mistyping, or one address guessing one password (5);
* per address: one address guessing many accounts' passwords (30);
* per email: many addresses guessing one account's password (50). An attacker can hold a
  victim's sign-in back with this one only by sending 50 failures every 15 minutes, and then only
  that one account's.

A successful sign-in clears its email-and-address count. A browser that has signed in to an
account before (a "known device", OWASP's device cookie: the dashboard says which) is held only
by its own email-and-address count, so not even a distributed attack on one email keeps its owner
out. Nothing here locks an account, and a throttled email or address never affects another.

Signups are counted too, per address (10 an hour): each costs an argon2 hash and an account.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

WINDOW_SECONDS = 15 * 60
PAIR_LIMIT = 5
ADDRESS_LIMIT = 30
EMAIL_LIMIT = 50
SIGNUP_WINDOW_SECONDS = 3600
SIGNUP_LIMIT = 10

# KEYS: the pair, address and email counts. ARGV: the window, then the three limits.
# Returns the seconds until sign-ins are allowed again (0: allowed now).
CHECK_LUA = """
local wait = 0
for i = 1, 3 do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl < 0 then
      redis.call('EXPIRE', KEYS[i], ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    if ttl > wait then wait = ttl end
  end
end
return wait
"""
_UNBOUNDED = 2**62
_SIGNUP_KEY = "timo:signup:addr:{address}"

# KEYS: the counts to add one to. ARGV: the window. A count without an expiry gets one, so none
# lasts beyond a window after its last failure's window began.
COUNT_LUA = """
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
end
return 1
"""


@dataclass(frozen=True)
class _Keys:
    pair: str
    address: str
    email: str

    def all(self) -> list[str]:
        return [self.pair, self.address, self.email]


class SignInThrottle:
    """Counts failed sign-ins and says when an email or address must wait."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._check = client.register_script(CHECK_LUA)
        self._count = client.register_script(COUNT_LUA)

    def wait_seconds(self, email: str, address: str | None, *, known_device: bool = False) -> int:
        """Seconds until a sign-in for `email` from `address` may be tried (0: now); a known
        device answers only to its own email-and-address count."""
        keys = _keys(email, address)
        if known_device:
            # The other two limits, out of reach: a count never reaches an unbounded limit.
            limits = [PAIR_LIMIT, _UNBOUNDED, _UNBOUNDED]
        else:
            limits = [PAIR_LIMIT, ADDRESS_LIMIT, EMAIL_LIMIT]
        return int(self._check(keys=keys.all(), args=[WINDOW_SECONDS, *limits]))

    def count_failure(self, email: str, address: str | None) -> None:
        """Record one failed sign-in."""
        self._count(keys=_keys(email, address).all(), args=[WINDOW_SECONDS])

    def clear(self, email: str, address: str | None) -> None:
        """Forget this email-and-address pair's failures (it just signed in)."""
        self._redis.delete(_keys(email, address).pair)

    def signup_wait_seconds(self, address: str | None) -> int:
        """Seconds until `address` may open another account (0: now)."""
        key = _SIGNUP_KEY.format(address=address or "unknown")
        count = int(self._redis.get(key) or 0)
        if count < SIGNUP_LIMIT:
            return 0
        return max(int(self._redis.ttl(key)), 1)

    def count_signup(self, address: str | None) -> None:
        """Record one signup attempt from `address`."""
        key = _SIGNUP_KEY.format(address=address or "unknown")
        self._count(keys=[key], args=[SIGNUP_WINDOW_SECONDS])


def email_digest(email: str) -> str:
    """The email as the throttle and a known-device mark name it (not the address itself)."""
    return hashlib.sha256(email.strip().casefold().encode()).hexdigest()[:32]


def _keys(email: str, address: str | None) -> _Keys:
    # Hashed: an email is personal data, and Redis keys show up in monitoring and dumps.
    who = email_digest(email)
    where = address or "unknown"
    return _Keys(
        pair=f"timo:signin:pair:{who}:{where}",
        address=f"timo:signin:addr:{where}",
        email=f"timo:signin:email:{who}",
    )
