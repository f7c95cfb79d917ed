"""The rate-limit headers of every answer to an authenticated caller, from its admission.

`X-RateLimit-Limit/Remaining/Reset` are the month's, as the public API page defines them: the
month's limit, the calls it has left, and the epoch second the next UTC month starts. Unlimited
plans say `unlimited` rather than a number a client could mistake for a limit.

`RateLimit-Policy` and `RateLimit` describe every window in the syntax of the IETF httpapi
draft "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers-10): a List of
Items, each a String naming a policy (`"month"`, `"burst"`) with Integer parameters, `q` (quota)
and `w` (window, seconds) for the policy, `r` (remaining) and `t` (seconds until more quota is
made available) for its state. A window without a limit is not listed (the draft's `q` is a
number); an account with no limit at all gets neither field.
"""

from __future__ import annotations

import math

from timo_hub.quota.admission import BURST_POLICY, MONTH_POLICY, Admission, BurstWindow
from timo_hub.quota.period import Period

UNLIMITED = "unlimited"

_POLICIES: dict[tuple[int | None, int | None, int, int], str] = {}


def pairs(admission: Admission, now: float) -> list[tuple[str, str]]:
    """Every window's limit, what remains of it and when it resets, as (name, value) pairs for
    a WSGI header list, at epoch second `now` (the call's)."""
    period = admission.period
    reset = ("X-RateLimit-Reset", str(period.reset_epoch))
    limit, burst = admission.limit, admission.burst
    if limit is None:
        headers = [("X-RateLimit-Limit", UNLIMITED), ("X-RateLimit-Remaining", UNLIMITED), reset]
    else:
        headers = [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(admission.remaining)),
            reset,
        ]
    if limit is None and burst is None:
        return headers
    headers.append(("RateLimit-Policy", policy_field(limit, burst, period)))
    headers.append(("RateLimit", state_field(admission, now)))
    return headers


def policy_field(limit: int | None, burst: BurstWindow | None, period: Period) -> str:
    """`RateLimit-Policy`: each limited window's quota and length (the same for every call of
    the account this month, so made once)."""
    burst_limit = None if burst is None else burst.limit
    seconds = 0 if burst is None else burst.seconds
    cache_key = (limit, burst_limit, seconds, period.reset_epoch)  # ints: cheap to hash
    value = _POLICIES.get(cache_key)
    if value is None:
        items = []
        if limit is not None:
            month_seconds = int((period.end - period.start).total_seconds())
            items.append(f'"{MONTH_POLICY}";q={limit};w={month_seconds}')
        if burst is not None:
            items.append(f'"{BURST_POLICY}";q={burst.limit};w={burst.seconds}')
        value = ", ".join(items)
        if len(_POLICIES) > 4096:  # plans and contracts are few; never let it grow unbounded
            _POLICIES.clear()
        _POLICIES[cache_key] = value
    return value


def state_field(admission: Admission, now: float) -> str:
    """`RateLimit`: what each limited window has left and the seconds until it resets (rounded
    up, never 0)."""
    items = []
    if admission.limit is not None:
        month_reset = max(1, math.ceil(admission.period.reset_epoch - now))
        if admission.calls_parked and admission.refused_by == MONTH_POLICY:
            # Calls leased to web processes and not used come back within a second: quota is
            # made available then (and the refusal's Retry-After says 1; it may not say less).
            month_reset = 1
        items.append(f'"{MONTH_POLICY}";r={admission.remaining};t={month_reset}')
    burst = admission.burst
    if burst is not None:
        burst_reset = burst.reset_after
        if admission.calls_parked and admission.refused_by == BURST_POLICY:
            burst_reset = 1  # likewise, for calls leased in this window
        items.append(f'"{BURST_POLICY}";r={burst.remaining};t={burst_reset}')
    return ", ".join(items)
