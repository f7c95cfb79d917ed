"""A call answered 503 is never counted: late answers are taken back, handler 503s refunded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis
from flask import Flask

from api.gate import QUOTA_EXTENSION
from events.ingest import ingest
from events.partitions import PartitionRegistry
from tests.support.accounts import new_customer, principal_of
from tests.support.events import make_event
from tests.support.redis_server import RedisServer
from tests.support.slow_proxy import SlowReplyProxy
from tests.support.waiting import eventually
from timo_hub.accounts import service
from timo_hub.platform.runtime import REDIS_SOCKET_TIMEOUT, Runtime
from timo_hub.quota import metrics
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.admission import Admitter, Outcome, State, counter_keys, server_run_id
from timo_hub.quota.period import period_containing

PERIOD = period_containing(datetime.now(UTC))


@pytest.fixture
def slow_redis(tmp_path: Path) -> Iterator[SlowReplyProxy]:
    """A Redis of the test's own behind a proxy that can hold its answers back."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    proxy = SlowReplyProxy(server.port)
    yield proxy
    proxy.close()
    server.kill()


def _state_and_used(outcome: Outcome) -> tuple[State, int]:
    return outcome.state, outcome.used


def _seeded(admitter: Admitter, account_id: uuid.UUID, used: int) -> None:
    assert admitter.admit(account_id, 100, PERIOD).state is State.REBUILD  # takes the fence
    assert admitter.seed(account_id, PERIOD, used)


@pytest.mark.slow
def test_a_call_counted_after_its_caller_gave_up_is_taken_back(
    slow_redis: SlowReplyProxy,
) -> None:
    """Guards against phantom usage from a late answer: Redis ran the admission in time but its
    answer arrived after the 2 s socket timeout, so the call was answered 503 and stayed counted.
    Also guards against each such timeout using up one of the Redis pool's connections (they were
    made by the pool and never given back): past `max_connections` a timed-out call raised
    `MaxConnectionsError`, its connection kept the unread answer, and the next call read it."""
    client = redis.Redis.from_url(
        slow_redis.url, socket_timeout=REDIS_SOCKET_TIMEOUT, max_connections=2
    )
    admitter = Admitter(client, fence_token="test")
    account_id = uuid.uuid4()
    _seeded(admitter, account_id, 10)
    assert _state_and_used(admitter.admit(account_id, 100, PERIOD)) == (State.ADMITTED, 11)
    taken_back = metrics.LATE_ADMISSIONS_TAKEN_BACK._value.get()

    for _ in range(3):  # more timeouts than the pool has connections
        slow_redis.reply_delay = REDIS_SOCKET_TIMEOUT + 1.0
        with pytest.raises(redis.TimeoutError):
            admitter.admit(account_id, 100, PERIOD)  # counted in Redis, answered too late
        slow_redis.reply_delay = 0.0
        # The thread goes on with a fresh connection, and gets its own answer.
        assert admitter.admit(account_id, 100, PERIOD).state is State.ADMITTED

    eventually(
        lambda: metrics.LATE_ADMISSIONS_TAKEN_BACK._value.get() == taken_back + 3, timeout=15
    )
    counter = client.get(counter_keys(account_id, PERIOD).counter)
    assert int(counter) == 11 + 3  # the three calls answered 200, none of the three 503s
    assert _state_and_used(admitter.admit(account_id, 100, PERIOD)) == (State.ADMITTED, 15)
    client.close()


@pytest.mark.slow
def test_a_lease_granted_after_its_caller_gave_up_is_returned_whole(
    slow_redis: SlowReplyProxy,
) -> None:
    """Guards against a late lease answer returning only what its record says is unused: the
    record keeps back the calls its process may use next, but nobody used any of these."""
    client = redis.Redis.from_url(slow_redis.url, socket_timeout=REDIS_SOCKET_TIMEOUT)
    admitter = Admitter(client, fence_token="test")
    account_id = uuid.uuid4()
    _seeded(admitter, account_id, 10)
    taken_back = metrics.LATE_ADMISSIONS_TAKEN_BACK._value.get()
    slow_redis.reply_delay = REDIS_SOCKET_TIMEOUT + 1.0
    with pytest.raises(redis.TimeoutError):
        admitter.admit(account_id, 1_000_000, PERIOD, wanted=8, lease="late:1")
    slow_redis.reply_delay = 0.0
    eventually(
        lambda: metrics.LATE_ADMISSIONS_TAKEN_BACK._value.get() == taken_back + 1, timeout=15
    )
    assert int(client.get(counter_keys(account_id, PERIOD).counter)) == 10
    assert client.hlen(counter_keys(account_id, PERIOD).leases) == 0
    client.close()


def test_a_take_back_sent_twice_takes_back_one_call(runtime: Runtime) -> None:
    """Guards against a take-back retried by redis-py after its answer was lost (both copies
    run once Redis answers again) uncounting two calls: the counter ended one below the truth,
    and one call more than the plan allows was served."""
    admitter = Admitter(runtime.redis, fence_token="test")
    account_id = uuid.uuid4()
    _seeded(admitter, account_id, 5)
    seconds, micros = runtime.redis.time()
    counted_at = seconds * 1_000_000 + micros  # a call counted after the seed
    keys = counter_keys(account_id, PERIOD)
    run_id = server_run_id(runtime.redis)
    undo = keys.undo()
    assert admitter.take_back(keys, run_id, counted_at, undo) is True
    assert admitter.take_back(keys, run_id, counted_at, undo) is False  # the retried copy
    assert int(runtime.redis.get(keys.counter)) == 4
    # A call counted before the counter was (re)seeded is not in it: nothing to take back.
    assert admitter.take_back(keys, run_id, counted_at - 60_000_000, keys.undo()) is False
    assert int(runtime.redis.get(keys.counter)) == 4


def _ledger(runtime: Runtime, account_id: uuid.UUID) -> int:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s AND period = %s",
            (account_id, PERIOD.first_day),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("handler_seconds", [0.0, 0.6], ids=["fast", "slower-than-a-sync-cycle"])
def test_a_call_the_handler_answered_503_is_refunded(
    app: Flask, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, handler_seconds: float
) -> None:
    """Guards against billing our own outage: a call admitted and then answered 503 by its
    handler (PostgreSQL unreachable) stayed counted in Redis and the ledger while its event,
    status 503, counts nothing, so the customer was refused before the limit. The slow handler
    guards the refund's own defects: its admission already written, the refund alone in a batch
    failed the ledger's `used >= 0` check on every write after it (the process's ledger stuck for
    good), and a reconcile between the Redis refund and the ledger's raised the counter back."""
    customer = new_customer(runtime, plan="free")
    account_id = customer.account.id
    client = app.test_client()
    enforcer = app.extensions[QUOTA_EXTENSION]
    assert client.get("/api/v1/account/quota", headers=customer.auth).get_json()["used"] == 1

    def database_down(*args: object, **kwargs: object) -> object:
        time.sleep(handler_seconds)  # the sync thread writes the admission meanwhile
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(service, "list_keys", database_down)
    failed = client.get("/api/v1/auth/keys", headers=customer.auth)
    assert failed.status_code == 503
    assert failed.headers["X-RateLimit-Remaining"] == "998"  # what admission said at the time
    monkeypatch.undo()

    # Whenever reconcile runs, it finds nothing behind: the counter is never below the ledger.
    for _ in range(20):
        assert reconciliation.reconcile(runtime, PERIOD).repairs == []
        time.sleep(0.02)
    enforcer.ledger.flush()
    assert _ledger(runtime, account_id) == 1
    assert int(runtime.redis.get(counter_keys(account_id, PERIOD).counter)) == 1
    after = client.get("/api/v1/account/quota", headers=customer.auth).get_json()
    assert after["used"] == 2  # the first call and this one; not the 503
    enforcer.ledger.flush()  # and the ledger goes on taking admissions
    assert _ledger(runtime, account_id) == 2


def test_a_refund_never_takes_a_rebuilt_counter_below_the_calls_that_count(
    app: Flask, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against a refund decrementing whatever counter it found: one rebuilt after the
    call was admitted, seeded from the event log (which never counted the call: its event says
    503), lost one more call and served one past the limit."""
    customer = new_customer(runtime, plan="free")
    account_id = customer.account.id
    client = app.test_client()
    enforcer = app.extensions[QUOTA_EXTENSION]
    rebuilt_meanwhile = False

    def rebuilt_then_down(*args: object, **kwargs: object) -> object:
        nonlocal rebuilt_meanwhile
        # While this handler runs, the log learns of 5 calls the ledger never got (a web
        # process killed before writing its tally), and Redis loses the counter.
        ingest(
            runtime.database,
            PartitionRegistry(),
            [make_event(account_id).to_json() for _ in range(5)],
        )
        runtime.redis.delete(counter_keys(account_id, PERIOD).counter)
        # Another call (not through this request's context, whose `g` a nested request shares).
        assert enforcer.admit(principal_of(runtime, customer), time.time()).used == 6
        rebuilt_meanwhile = True
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(service, "list_keys", rebuilt_then_down)
    assert client.get("/api/v1/auth/keys", headers=customer.auth).status_code == 503
    assert rebuilt_meanwhile
    enforcer.ledger.flush()
    # Counted: the 5 calls the log proves and the quota call above. The 503 never was.
    assert int(runtime.redis.get(counter_keys(account_id, PERIOD).counter)) == 6


def test_a_refund_redis_cannot_take_leaves_the_answer_a_503(
    app: Flask, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against the refund turning an outage's 503 into a 500: when Redis went away after
    admitting the call, the refund's own Redis error escaped the closing hook."""
    customer = new_customer(runtime)

    def redis_down(*args: object, **kwargs: object) -> object:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(service, "list_keys", redis_down)
    monkeypatch.setattr(Admitter, "take_back", redis_down)
    failed = app.test_client().get("/api/v1/auth/keys", headers=customer.auth)
    assert failed.status_code == 503
    assert failed.get_json()["type"] == "/problems/service-unavailable"
    app.extensions[QUOTA_EXTENSION].ledger.flush()  # runs the Redis refund, which fails quietly
