"""Delivering webhooks against a real receiver on 127.0.0.1 and real PostgreSQL, the clock driven.

Signatures are checked with the `standardwebhooks` reference library, never with our own code.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.webhook_receiver import PlannedAnswer, WebhookReceiver
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks import delivery, endpoints, notifications, retention, store
from timo_hub.webhooks.delivery import RETRY_DELAYS_SECONDS, attempt_delivery

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """Settings with a 1 s attempt timeout, so that timeouts cost the suite little."""
    return settings.model_copy(update={"webhook_timeout_seconds": 1.0})


class Clock:
    """A settable clock for the delivery engine."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def register(
    runtime: Runtime, account_id: uuid.UUID, url: str, events: list[str] | None = None
) -> store.Endpoint:
    return endpoints.create(
        runtime.database,
        runtime.settings,
        account_id,
        url=url,
        events=events or ["quota.threshold_reached", "key.created", "key.revoked"],
        description="test",
        now=T0,
    )


def threshold_delivery(runtime: Runtime, account_id: uuid.UUID, percent: int = 80) -> str:
    with runtime.database.connection() as conn:
        made = notifications.threshold_reached(
            conn, account_id, T0.date().replace(day=1), 1000, 10 * percent, percent, T0
        )
    assert len(made) == 1
    return made[0]


def state_of(runtime: Runtime, delivery_id: str) -> tuple[str, int, datetime | None]:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT state, attempts, next_attempt_at FROM webhook_deliveries WHERE id = %s",
            (delivery_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_a_delivery_verifies_with_the_reference_library(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)

    # The reference verifier checks the timestamp against its own clock: sign at real time.
    outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id)

    assert outcome is not None and outcome.state == "succeeded"
    (request,) = receiver.wait_for(1)
    assert request.headers["webhook-id"] == delivery_id
    assert request.headers["content-type"] == "application/json"
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == "quota.threshold_reached"
    assert payload["data"]["threshold"] == 80
    assert payload["data"]["used"] == 800 and payload["data"]["limit"] == 1000
    assert payload["data"]["remaining"] == 200
    assert payload["data"]["account_id"] == str(account_id)
    assert set(payload) == {"type", "timestamp", "data"}
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoints.signing.new_secret()).verify(request.body, request.headers)


def test_retries_on_500_and_timeouts_then_stop_on_success(
    runtime: Runtime, quick: Settings, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against giving up early, retrying without a schedule, or retrying after success."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)
    receiver.plan(PlannedAnswer(500), PlannedAnswer(200, delay=3.0), PlannedAnswer(200))
    clock = Clock(T0)

    first = attempt_delivery(runtime.database, quick, delivery_id, clock=clock)
    assert first is not None and first.state == "pending" and first.status == 500
    assert first.retry_in is not None
    assert 5 * 0.8 <= first.retry_in <= 5 * 1.2
    # Not due before its time, whoever asks.
    assert attempt_delivery(runtime.database, quick, delivery_id, clock=clock) is None

    clock.now = T0 + timedelta(seconds=7)
    second = attempt_delivery(runtime.database, quick, delivery_id, clock=clock)
    assert second is not None and second.state == "pending" and second.status is None
    assert second.retry_in is not None and 240 <= second.retry_in <= 360

    clock.now = T0 + timedelta(minutes=7)
    third = attempt_delivery(runtime.database, quick, delivery_id, clock=clock)
    assert third is not None and third.state == "succeeded" and third.status == 200

    clock.now = T0 + timedelta(days=1)
    assert attempt_delivery(runtime.database, quick, delivery_id, clock=clock) is None
    ids = {r.headers["webhook-id"] for r in receiver.wait_for(3)}
    assert ids == {delivery_id}  # one logical delivery, one id, across retries
    log = endpoints.deliveries(
        runtime.database, account_id, uuid.UUID(str(_endpoint_of(runtime, delivery_id))), limit=5
    )
    attempts = log[0].attempts
    assert [a.status_code for a in attempts] == [500, None, 200]
    assert attempts[1].error is not None and "timed out" in attempts[1].error
    assert all(a.latency_ms is not None for a in attempts)


def test_the_schedule_spans_about_three_days_then_gives_up(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against peers' complaint: deliveries that give up after three tries."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)
    receiver.default_status = 503
    clock = Clock(T0)
    outcomes = []
    while True:
        outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=clock)
        assert outcome is not None
        outcomes.append(outcome)
        if outcome.retry_in is None:
            break
        clock.now += timedelta(seconds=outcome.retry_in)
    assert len(outcomes) == len(RETRY_DELAYS_SECONDS) + 1
    assert outcomes[-1].state == "failed"
    span = clock.now - T0
    assert timedelta(days=2.2) <= span <= timedelta(days=3.4)
    assert state_of(runtime, delivery_id)[0] == "failed"


def test_an_endpoint_answering_410_is_disabled_and_its_owner_told(
    runtime: Runtime, customer: object, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    first = threshold_delivery(runtime, account_id, 50)
    second = threshold_delivery(runtime, account_id, 80)
    receiver.plan(PlannedAnswer(410))

    with caplog.at_level(logging.WARNING, logger="timo_hub.webhooks.delivery"):
        outcome = attempt_delivery(runtime.database, runtime.settings, first, clock=Clock(T0))

    assert outcome is not None and outcome.state == "failed"
    assert state_of(runtime, second)[0] == "failed"  # nothing more is sent to it
    found = endpoints.get(runtime.database, account_id, endpoint.id)
    assert found.disabled_at is not None and "410" in (found.disabled_reason or "")
    assert any(str(endpoint.id) in r.getMessage() for r in caplog.records)
    assert endpoints.disabled(runtime.database, account_id)[0].id == endpoint.id
    # New events are not fanned out to it.
    assert threshold_delivery_count(runtime, account_id, 100) == 0


def threshold_delivery_count(runtime: Runtime, account_id: uuid.UUID, percent: int) -> int:
    with runtime.database.connection() as conn:
        return len(
            notifications.threshold_reached(
                conn, account_id, T0.date().replace(day=1), 1000, 10 * percent, percent, T0
            )
        )


def test_an_endpoint_failing_for_five_days_is_disabled(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against an endpoint that fails for ever being retried for ever."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    receiver.default_status = 500
    clock = Clock(T0)
    early = threshold_delivery(runtime, account_id, 50)
    assert attempt_delivery(runtime.database, runtime.settings, early, clock=clock) is not None
    # A later event, still failing, four days on: not yet.
    clock.now = T0 + timedelta(days=4)
    later = threshold_delivery(runtime, account_id, 80)
    outcome = attempt_delivery(runtime.database, runtime.settings, later, clock=clock)
    assert outcome is not None and outcome.state == "pending"
    assert endpoints.get(runtime.database, account_id, endpoint.id).disabled_at is None
    clock.now = T0 + timedelta(days=5, minutes=1)
    outcome = attempt_delivery(runtime.database, runtime.settings, later, clock=clock)
    assert outcome is not None and outcome.state == "failed"
    disabled = endpoints.get(runtime.database, account_id, endpoint.id)
    assert disabled.disabled_at is not None and "5 days" in (disabled.disabled_reason or "")


def test_a_success_ends_the_failure_streak(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    receiver.plan(PlannedAnswer(500), PlannedAnswer(200))
    clock = Clock(T0)
    delivery_id = threshold_delivery(runtime, account_id)
    attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=clock)
    assert endpoints.get(runtime.database, account_id, endpoint.id).failing_since == T0
    clock.now += timedelta(seconds=10)
    attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=clock)
    assert endpoints.get(runtime.database, account_id, endpoint.id).failing_since is None


def test_rotation_signs_with_both_secrets_for_24_hours(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    account_id = customer.account.id  # type: ignore[attr-defined]
    old = register(runtime, account_id, receiver.url)
    now = datetime.now(UTC)
    new = endpoints.rotate_secret(runtime.database, account_id, old.id, now)
    assert new.secret != old.secret

    first = threshold_delivery(runtime, account_id, 50)
    attempt_delivery(runtime.database, runtime.settings, first, clock=lambda: now)
    (request,) = receiver.wait_for(1)
    Webhook(old.secret).verify(request.body, request.headers)
    Webhook(new.secret).verify(request.body, request.headers)

    # A day later the old secret no longer signs. (The reference verifier checks the
    # timestamp against the real clock, so the signatures are recomputed here for that moment.)
    later = now + timedelta(hours=24, seconds=1)
    assert store.Endpoint.signing_secrets(
        endpoints.get(runtime.database, account_id, old.id), later
    ) == [new.secret]


def test_a_replay_resends_under_the_same_id_and_is_idempotent(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against replays that mint a new webhook-id (receivers could not deduplicate) or
    that, repeated, send the delivery several times at once."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)
    clock = Clock(T0)
    attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=clock)

    clock.now = T0 + timedelta(hours=1)
    endpoints.replay(runtime.database, account_id, endpoint.id, delivery_id, clock.now)
    endpoints.replay(runtime.database, account_id, endpoint.id, delivery_id, clock.now)
    assert attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=clock)
    assert attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=clock) is None
    requests = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in requests] == [delivery_id, delivery_id]
    assert json.loads(requests[0].body) == json.loads(requests[1].body)
    assert state_of(runtime, delivery_id)[:2] == ("succeeded", 2)


def test_a_worker_that_died_mid_send_leaves_the_delivery_due_again_under_its_id(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against a claimed attempt that never finishes (its worker was killed) stranding
    the delivery: once the claim lapses it is due again, with the same id."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)
    with runtime.database.connection() as conn:
        # What a worker does before sending; then it is "killed" (never records an outcome).
        claimed = store.claim_delivery(
            conn, delivery_id, T0, T0 + timedelta(seconds=delivery.CLAIM_SECONDS)
        )
    assert claimed is not None
    assert delivery.due(runtime.database, T0 + timedelta(seconds=1)) == []
    later = T0 + timedelta(seconds=delivery.CLAIM_SECONDS + 1)
    assert delivery.due(runtime.database, later) == [delivery_id]
    outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=Clock(later))
    assert outcome is not None and outcome.state == "succeeded" and outcome.attempt == 2
    record = endpoints.deliveries(runtime.database, account_id, claimed[1].id, limit=1)[0]
    assert [(a.attempt, a.status_code) for a in record.attempts] == [(1, None), (2, 200)]


def test_each_occurrence_is_recorded_once(runtime: Runtime, customer: object) -> None:
    account_id = customer.account.id  # type: ignore[attr-defined]
    register(runtime, account_id, "http://127.0.0.1:9/")
    assert threshold_delivery_count(runtime, account_id, 80) == 1
    assert threshold_delivery_count(runtime, account_id, 80) == 0
    assert threshold_delivery_count(runtime, account_id, 100) == 1


def _endpoint_of(runtime: Runtime, delivery_id: str) -> uuid.UUID:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT endpoint_id FROM webhook_deliveries WHERE id = %s", (delivery_id,)
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def test_an_answer_holding_nul_is_recorded(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against a receiver's body with a NUL byte (PostgreSQL text refuses it) leaving the
    attempt unrecorded and the delivery claimed and retried for ever."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)
    receiver.plan(PlannedAnswer(500, body=b"bad\x00answer"))
    outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=Clock(T0))
    assert outcome is not None and outcome.state == "pending"
    endpoint_id = _endpoint_of(runtime, delivery_id)
    (record,) = endpoints.deliveries(runtime.database, account_id, endpoint_id, limit=1)
    assert record.attempts[0].response == "bad\ufffdanswer"


def test_the_dispatch_run_does_not_queue_a_backlog_again_every_run(
    runtime: Runtime, customer: object
) -> None:
    """Guards against the dispatch run queueing the same due delivery on each run while the
    workers are behind (a backlog growing by up to 500 messages every 5 s)."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    register(runtime, account_id, "http://127.0.0.1:9/hook")
    delivery_id = threshold_delivery(runtime, account_id)
    now = T0 + timedelta(seconds=10)
    assert delivery.due(runtime.database, now) == [delivery_id]
    assert delivery.due(runtime.database, now + timedelta(seconds=5)) == []
    # A message lost in the broker: queued again once `REQUEUE_AFTER` has passed.
    later = now + delivery.REQUEUE_AFTER + timedelta(seconds=1)
    assert delivery.due(runtime.database, later) == [delivery_id]


def test_events_while_an_endpoint_is_disabled_can_be_replayed_once_enabled(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against events of a disabled endpoint's downtime being lost for good (no delivery
    made, so nothing to replay after enabling it)."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    with runtime.database.connection() as conn:
        store.disable_endpoint(conn, endpoint.id, "The endpoint answered 410 Gone.", T0)
    assert threshold_delivery_count(runtime, account_id, 80) == 0  # nothing sent now
    endpoints.enable(runtime.database, account_id, endpoint.id)
    (missed,) = endpoints.deliveries(runtime.database, account_id, endpoint.id, limit=5)
    assert missed.delivery.state == "failed" and missed.attempts == []
    endpoints.replay(runtime.database, account_id, endpoint.id, missed.delivery.id, T0)
    outcome = attempt_delivery(
        runtime.database, runtime.settings, missed.delivery.id, clock=Clock(T0)
    )
    assert outcome is not None and outcome.state == "succeeded"
    assert receiver.wait_for(1)[0].headers["webhook-id"] == missed.delivery.id


def test_the_delivery_log_pages_past_its_first_page(runtime: Runtime, customer: object) -> None:
    """Guards against a log that says `has_more` and offers no way to the older deliveries."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, "http://127.0.0.1:9/hook")
    for _ in range(7):
        endpoints.send_test(runtime.database, account_id, endpoint.id, T0)  # same created_at
    first = endpoints.deliveries(runtime.database, account_id, endpoint.id, limit=4)
    rest = endpoints.deliveries(
        runtime.database, account_id, endpoint.id, limit=4, before=first[-1].delivery.id
    )
    ids = [r.delivery.id for r in first + rest]
    assert len(ids) == 7 and len(set(ids)) == 7


def test_a_second_rotation_keeps_the_first_secret_signing_its_24_hours(
    runtime: Runtime, customer: object
) -> None:
    """Guards against a second rotation within a day cutting the original secret off at once
    (receivers still on it would fail every delivery)."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    original = register(runtime, account_id, "http://127.0.0.1:9/hook")
    middle = endpoints.rotate_secret(runtime.database, account_id, original.id, T0)
    newest = endpoints.rotate_secret(
        runtime.database, account_id, original.id, T0 + timedelta(minutes=5)
    )
    at = T0 + timedelta(minutes=6)
    assert newest.signing_secrets(at) == [newest.secret, middle.secret, original.secret]
    assert newest.signing_secrets(T0 + timedelta(hours=24, minutes=1)) == [
        newest.secret,
        middle.secret,
    ]
    assert newest.signing_secrets(T0 + timedelta(hours=24, minutes=6)) == [newest.secret]


def test_an_attempt_of_an_earlier_round_cannot_settle_a_replay(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against a replay answered 202 and then silently cancelled: an attempt still in
    flight from before (disable, enable, replay meanwhile) settled the new round as failed."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    delivery_id = threshold_delivery(runtime, account_id)
    with runtime.database.connection() as conn:
        claimed = store.claim_delivery(conn, delivery_id, T0, T0 + timedelta(seconds=30))
        assert claimed is not None
        store.disable_endpoint(conn, endpoint.id, "The endpoint answered 410 Gone.", T0)
    endpoints.enable(runtime.database, account_id, endpoint.id)
    replayed = endpoints.replay(runtime.database, account_id, endpoint.id, delivery_id, T0)
    assert replayed.state == "pending"
    with runtime.database.connection() as conn:
        old = claimed[0]
        assert not store.settle_delivery(
            conn, delivery_id, old.attempts, old.round, "failed", None, T0
        )
    outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=Clock(T0))
    assert outcome is not None and outcome.state == "succeeded"


def test_old_delivery_logs_are_pruned_and_pending_ones_kept(
    runtime: Runtime, customer: object
) -> None:
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, "http://127.0.0.1:9/hook")
    done = endpoints.send_test(runtime.database, account_id, endpoint.id, T0)
    pending = threshold_delivery(runtime, account_id)
    with runtime.database.connection() as conn:
        conn.execute(
            "UPDATE webhook_deliveries SET state = 'succeeded', next_attempt_at = NULL "
            "WHERE id = %s",
            (done.id,),
        )
    pruned = retention.prune(runtime.database, T0 + timedelta(days=91))
    assert pruned.deliveries == 1
    remaining = endpoints.deliveries(runtime.database, account_id, endpoint.id, limit=5)
    assert [r.delivery.id for r in remaining] == [pending]
    assert retention.prune(runtime.database, T0 + timedelta(days=500)).notifications == 0


def test_a_delivery_made_while_its_endpoint_was_being_disabled_is_not_sent(
    runtime: Runtime, customer: object, receiver: WebhookReceiver
) -> None:
    """Guards against a fan-out that read the endpoint before a concurrent disable committed:
    its delivery stayed pending, and was sent (and retried for days) to a disabled endpoint."""
    account_id = customer.account.id  # type: ignore[attr-defined]
    endpoint = register(runtime, account_id, receiver.url)
    with runtime.database.connection() as fanning_out:
        made = notifications.threshold_reached(
            fanning_out, account_id, T0.date().replace(day=1), 1000, 800, 80, T0
        )
        with runtime.database.connection() as disabling:
            assert store.disable_endpoint(disabling, endpoint.id, "Gone.", T0)
    (delivery_id,) = made
    outcome = attempt_delivery(runtime.database, runtime.settings, delivery_id, clock=Clock(T0))
    assert outcome is None
    assert state_of(runtime, delivery_id)[0] == "failed"  # replayable once enabled
    assert receiver.requests == []
