"""The admission's own wire handling: what else may arrive on its connection."""

from __future__ import annotations

import time
import uuid

import pytest

from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admitter, State
from timo_hub.quota.period import PeriodClock


def test_a_push_frame_beside_a_reply_is_never_taken_for_an_answer(runtime: Runtime) -> None:
    # Guards against the hand-written reply reader returning a RESP3 push (here a client-tracking
    # invalidation of the counter the script itself increments, sent right after its reply) as
    # the next call's answer: that call failed, and every later one on the connection read the
    # answer meant for the call before it.
    admitter = Admitter(runtime.redis, uuid.uuid4().hex)
    account, period = uuid.uuid4(), PeriodClock().current(time.time())
    assert admitter.admit(account, 100, period).state is State.REBUILD  # a new month: fenced
    assert admitter.seed(account, period, 0)
    conn = admitter._link("any-key").conn
    if str(conn.protocol) != "3":
        pytest.skip("pushes need RESP3 on the admission connection")
    conn.send_command("CLIENT", "TRACKING", "ON")
    assert conn.read_response() in (b"OK", "OK")
    for expected in range(1, 6):
        outcome = admitter.admit(account, 100, period)
        assert (outcome.state, outcome.used) == (State.ADMITTED, expected)
    assert int(runtime.redis.get(f"timo:quota:{{{account}}}:{period.label}") or 0) == 5
