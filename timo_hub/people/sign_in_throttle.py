"""Failed sign-ins, counted in Redis per person, per address and per pair of the two.

Refusing is by window, never by lock: once a count passes its limit, sign-ins it covers are
refused (before any password is checked, so guessing learns nothing) until its window ends. Three
counts, so that one attacker cannot lock anyone else out:

* per person and address: the owner mistyping, or one address guessing one password (5);
* per address: one address guessing many accounts' passwords (30);
* per person: many addresses guessing one account's password (50).

A "person" is who the email names: the user's id when there is one (so every spelling that signs
in as the same user, `ADMIN@`, `admİn@`, shares its counts), else the email itself, normalized.
A successful sign-in clears its person-and-address count. A browser that has signed in as the
user before (a "known device", OWASP's device cookie: the dashboard says which) is held only by
its own person-and-address count, so not even a distributed attack on one account keeps its owner
out. Nothing here locks an account, and a throttled person or address never affects another.

Two more counts stand alone: wrong current passwords on the password page, per user (5 per 15
minutes whatever the address: a stolen session cannot guess faster than that), and signups per
address (10 an hour: each costs an argon2 hash and an account).
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from dataclasses import dataclass

from timo_hub.platform.redis_client import AnyRedis

WINDOW_SECONDS = 15 * 60
PAIR_LIMIT = 5
ADDRESS_LIMIT = 30
PERSON_LIMIT = 50
PASSWORD_CHANGE_LIMIT = 5
SIGNUP_WINDOW_SECONDS = 3600
SIGNUP_LIMIT = 10

# KEYS: the counts to check. ARGV: the window, then each count's limit. Returns the seconds until
# every count is below its limit (0: allowed now).
CHECK_LUA = """
local wait = 0
for i = 1, #KEYS do
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
# KEYS: the counts to add one to. ARGV: the window. A count without an expiry gets one, so none
# lasts beyond a window after its first failure.
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
    person: str


class SignInThrottle:
    """Counts failed sign-ins (and signups) and says when a person or address must wait."""

    def __init__(self, client: AnyRedis) -> None:
        self._redis = client
        self._check = client.register_script(CHECK_LUA)
        self._count = client.register_script(COUNT_LUA)

    def wait_seconds(self, person: str, address: str | None, *, known_device: bool = False) -> int:
        """Seconds until a sign-in as `person` (see `person_of`) from `address` may be tried (0:
        now); a known device answers only to its own person-and-address count."""
        keys = _keys(person, address)
        if known_device:
            return self._wait([keys.pair], [PAIR_LIMIT], WINDOW_SECONDS)
        return self._wait(
            [keys.pair, keys.address, keys.person],
            [PAIR_LIMIT, ADDRESS_LIMIT, PERSON_LIMIT],
            WINDOW_SECONDS,
        )

    def count_failure(self, person: str, address: str | None) -> None:
        """Record one failed sign-in."""
        keys = _keys(person, address)
        self._count(keys=[keys.pair, keys.address, keys.person], args=[WINDOW_SECONDS])

    def clear(self, person: str, address: str | None) -> None:
        """Forget this person-and-address pair's failures (it just signed in)."""
        self._redis.delete(_keys(person, address).pair)

    def password_change_wait_seconds(self, user_id: uuid.UUID) -> int:
        """Seconds until the user's current password may be tried again on the password page."""
        return self._wait([_password_change_key(user_id)], [PASSWORD_CHANGE_LIMIT], WINDOW_SECONDS)

    def count_password_change_failure(self, user_id: uuid.UUID) -> None:
        """Record one wrong current password given to change it."""
        self._count(keys=[_password_change_key(user_id)], args=[WINDOW_SECONDS])

    def signup_wait_seconds(self, address: str | None) -> int:
        """Seconds until `address` may open another account (0: now)."""
        return self._wait([_signup_key(address)], [SIGNUP_LIMIT], SIGNUP_WINDOW_SECONDS)

    def count_signup(self, address: str | None) -> None:
        """Record one signup attempt from `address`."""
        self._count(keys=[_signup_key(address)], args=[SIGNUP_WINDOW_SECONDS])

    def _wait(self, keys: list[str], limits: list[int], window: int) -> int:
        return int(self._check(keys=keys, args=[window, *limits]))


def person_of(user_id: uuid.UUID | None, email: str) -> str:
    """Who a sign-in is for: the user's id if the email names one, else the email, normalized.

    A digest: an email is personal data, and Redis keys show up in monitoring and dumps.
    """
    if user_id is not None:
        name = f"user:{user_id}"
    else:
        name = "email:" + unicodedata.normalize("NFKC", email.strip()).casefold()
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _keys(person: str, address: str | None) -> _Keys:
    where = address or "unknown"
    # One hash tag: the check runs over three of these keys at once, so on a Redis Cluster they
    # must share a slot (sign-ins are few; one slot carries them all easily).
    return _Keys(
        pair=f"timo:{{signin}}:pair:{person}:{where}",
        address=f"timo:{{signin}}:addr:{where}",
        person=f"timo:{{signin}}:person:{person}",
    )


def _password_change_key(user_id: uuid.UUID) -> str:
    return f"timo:{{signin}}:pwchange:{user_id}"


def _signup_key(address: str | None) -> str:
    return f"timo:signup:addr:{address or 'unknown'}"
