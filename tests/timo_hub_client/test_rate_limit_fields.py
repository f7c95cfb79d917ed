"""How the client reads the rate-limit headers: every window, and nothing it cannot read."""

from __future__ import annotations

from timo_hub_client import RateLimitWindow
from timo_hub_client.rate_limit_fields import number, read, windows

SENT = "Tue, 01 Dec 2026 09:00:00 GMT"
SENT_EPOCH = 1796115600


def test_both_windows_joined_by_policy_name() -> None:
    found = read(
        {
            "X-RateLimit-Limit": "1000",
            "X-RateLimit-Remaining": "420",
            "X-RateLimit-Reset": "1798761600",
            "RateLimit-Policy": '"month";q=1000;w=2678400, "burst";q=60;w=60',
            # The draft lets the state list the windows in another order.
            "RateLimit": '"burst";r=59;t=42, "month";r=420;t=2646000',
            "Date": SENT,
        },
        received_at=0,
    )
    assert found is not None
    assert (found.limit, found.remaining, found.reset) == (1000, 420, 1798761600)
    assert found.month == RateLimitWindow(
        policy="month",
        limit=1000,
        window_seconds=2678400,
        remaining=420,
        reset_after=2646000,
        reset=SENT_EPOCH + 2646000,
    )
    assert found.burst == RateLimitWindow(
        policy="burst",
        limit=60,
        window_seconds=60,
        remaining=59,
        reset_after=42,
        reset=SENT_EPOCH + 42,
    )
    assert list(found.windows) == ["month", "burst"]


def test_without_a_date_the_reset_counts_from_when_the_answer_arrived() -> None:
    (burst,) = windows('"burst";q=60;w=60', '"burst";r=0;t=7', 1000.6).values()
    assert (burst.reset_after, burst.reset) == (7, 1007)


def test_only_the_month_headers() -> None:
    """An unlimited plan (or a server older than burst windows): no window is described."""
    found = read(
        {
            "X-RateLimit-Limit": "unlimited",
            "X-RateLimit-Remaining": "unlimited",
            "X-RateLimit-Reset": "1798761600",
        },
        received_at=0,
    )
    assert found is not None and (found.limit, found.remaining) == (None, None)
    assert found.windows == {} and found.month is None and found.burst is None
    assert read({"Content-Type": "application/json"}, received_at=0) is None


def test_structured_field_syntax_is_honoured() -> None:
    # A Token for a name, parameters the client does not know, a comma and a semicolon inside a
    # String (so no splitting on them), a policy without a state and one with no `t`.
    found = windows(
        '"burst";q=60;w=60;qu="requests", acme;q=5;w=1;acme-note="a, b;c", "x, y";q=1',
        'acme;r=4;t=1, "x, y";r=0',
        0,
    )
    assert list(found) == ["burst", "acme", "x, y"]
    assert found["burst"].limit == 60 and found["burst"].remaining is None
    assert (found["acme"].limit, found["acme"].window_seconds, found["acme"].remaining) == (5, 1, 4)
    assert (found["x, y"].limit, found["x, y"].remaining, found["x, y"].reset) == (1, 0, None)


def test_what_cannot_be_read_is_left_out_not_guessed() -> None:
    # A trailing comma makes the whole policy field invalid: only the state is known.
    assert windows('"burst";q=60;w=60,', '"burst";r=1', 0) == {
        "burst": RateLimitWindow(
            policy="burst",
            limit=None,
            window_seconds=None,
            remaining=1,
            reset_after=None,
            reset=None,
        )
    }
    assert windows("burst;q=60", "burst;r=é", 0)["burst"].remaining is None
    # Parameters that are not non-negative Integers: a bare `q` is the Boolean true.
    odd = windows('"burst";q;w=-60', '"burst";r=1.5;t="3"', 0)["burst"]
    assert (odd.limit, odd.window_seconds, odd.remaining, odd.reset_after) == (None,) * 4
    # Members that are not names of policies.
    assert windows('1;q=5, :AQID:;q=5, ("a" "b");q=5', None, 0) == {}


def test_numbers() -> None:
    assert [number(v) for v in ("42", "0", "unlimited", "-1", "4.5", "²", "", None)] == [
        42,
        0,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
