"""The rate-limit headers of a response, read into a `RateLimit`.

`X-RateLimit-Limit/Remaining/Reset` are the month's (`unlimited` or a number). `RateLimit-Policy`
and `RateLimit` describe every limited window in the syntax of the IETF httpapi draft "RateLimit
header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers-10): each is a Structured Field
List (RFC 9651) of Items, a policy name with Integer parameters, `q` (quota) and `w` (window,
seconds) in the policy, `r` (remaining) and `t` (seconds until more quota) in the state, e.g.

    RateLimit-Policy: "month";q=1000;w=2592000, "burst";q=60;w=60
    RateLimit: "month";r=420;t=12345, "burst";r=59;t=42

They are parsed with `http_sfv`, not by splitting on commas and semicolons: a String may hold
either, and the draft lets a server add parameters and split a List over several fields. What is
malformed or not understood is left out (a client must not fail a call over a header), never
guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from http_sfv.item import Item
from http_sfv.list import List as StructuredList

from timo_hub_client.models import RateLimit, RateLimitWindow

logger = logging.getLogger(__name__)

Parameters = Mapping[str, object]


def read(headers: Mapping[str, str], received_at: float) -> RateLimit | None:
    """The rate-limit headers of one response received at epoch second `received_at` (this
    client's clock); None when it has none (an answer to no one in particular: health, the
    OpenAPI document, a 401)."""
    limit = headers.get("X-RateLimit-Limit")
    policy_field = headers.get("RateLimit-Policy")
    state_field = headers.get("RateLimit")
    if limit is None and policy_field is None and state_field is None:
        return None
    return RateLimit(
        limit=number(limit),
        remaining=number(headers.get("X-RateLimit-Remaining")),
        reset=number(headers.get("X-RateLimit-Reset")),
        windows=windows(policy_field, state_field, _sent_at(headers, received_at)),
    )


def _sent_at(headers: Mapping[str, str], received_at: float) -> float:
    """When the server answered, by its own clock (`Date`), so that a window's `reset` is an
    epoch second of the server's clock like `X-RateLimit-Reset`, whatever this client's clock
    says; `received_at` when the answer has no usable `Date`."""
    date = headers.get("Date")
    if date:
        try:
            return parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return received_at


def windows(
    policy_field: str | None, state_field: str | None, sent_at: float
) -> dict[str, RateLimitWindow]:
    """Each window the two fields name, its policy (`RateLimit-Policy`) joined to its state
    (`RateLimit`) by the policy's name, in the order the server listed them; `sent_at` (epoch
    seconds) is when the server answered, which its `t` counts from."""
    policies = _items("RateLimit-Policy", policy_field)
    states = _items("RateLimit", state_field)
    found = {}
    for name in dict.fromkeys([*policies, *states]):
        policy, state = policies.get(name, {}), states.get(name, {})
        reset_after = _integer(state, "t")
        found[name] = RateLimitWindow(
            policy=name,
            limit=_integer(policy, "q"),
            window_seconds=_integer(policy, "w"),
            remaining=_integer(state, "r"),
            reset_after=reset_after,
            reset=None if reset_after is None else int(sent_at + reset_after),
        )
    return found


def _items(name: str, field: str | None) -> dict[str, Parameters]:
    """A List field's Items by their (String or Token) value: the first of each name."""
    if not field:
        return {}
    parsed = StructuredList()
    try:
        parsed.parse(field.encode("ascii"))
    except ValueError as exc:  # UnicodeEncodeError included: a field is ASCII
        logger.debug("ignoring a malformed %s header %r: %s", name, field, exc)
        return {}
    items: dict[str, Parameters] = {}
    for member in parsed:
        # An Inner List, or an Item that is not a name (a number, bytes), is not a policy.
        if isinstance(member, Item) and isinstance(member.value, str):
            items.setdefault(str(member.value), member.params)
    return items


def _integer(params: Parameters, key: str) -> int | None:
    """A parameter that must be a non-negative Integer (a bare `q`, which Structured Fields read
    as the Boolean true, is not one)."""
    value = params.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def number(value: str | None) -> int | None:
    """An `X-RateLimit-*` or `Retry-After` value; None for `unlimited`, absent or malformed."""
    if value is not None and value.isascii() and value.isdigit():
        return int(value)
    return None
