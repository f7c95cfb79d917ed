"""How our queues are declared, and how we publish to them, for each kind of broker.

With RabbitMQ (`amqp://`, `amqps://`, `pyamqp://`) every queue is a durable quorum queue, and every
publisher (web, worker, beat, CLI) waits for the broker's confirm of each persistent message. A
confirmed message is on disk on a majority of the cluster's nodes, so neither a `kill -9` of the
broker nor the loss of a node (the leader included) loses it. Each queue is bound to a topic
exchange of its own name by its own name: it routes like a direct exchange, and Celery's native
delayed delivery (how countdown tasks wait on quorum queues, which have no global QoS to hold them
in a worker) cannot route through a direct one.

With Redis the queues are what they always were (kombu's virtual direct exchanges; the transport
has neither queue types nor confirms), so nothing changes for the embedded default.

This module owns the shape of a queue, not its name: `events.publisher` and
`timo_hub.webhooks.dispatch` name theirs. It also owns the upgrade of a RabbitMQ that still holds
an older Timo Hub's classic queues and direct exchanges of the same names (`upgrade_queues`, run
by `timo-hub broker migrate`): RabbitMQ refuses to declare a quorum queue over a classic one
(PRECONDITION_FAILED, "inequivalent arg 'x-queue-type'"), so the queue must be emptied into a
holding queue, deleted, declared again and refilled.

Platform code: imports nothing else of the product.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.exceptions import OperationalError

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
QUORUM_ARGUMENTS = {"x-queue-type": "quorum"}
# Where `upgrade_queues` keeps a queue's messages while the queue is replaced.
HOLDING_SUFFIX = ".upgrading"
UPGRADE_COMMAND = "timo-hub broker migrate"
# AMQP reply codes of the channel errors RabbitMQ answers with (py-amqp raises them as
# NotFound and PreconditionFailed).
NOT_FOUND = 404
PRECONDITION_FAILED = 406
# The properties a message keeps when `upgrade_queues` moves it (besides body, content type and
# encoding, headers and priority).
_MESSAGE_PROPERTIES = (
    "delivery_mode",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)


class QueueUpgradeError(Exception):
    """A queue could not be upgraded (it is in use, or keeps receiving messages)."""


def uses_amqp(broker_url: str) -> bool:
    """True when `broker_url` names RabbitMQ (any AMQP scheme kombu accepts from settings)."""
    return urlsplit(broker_url).scheme in AMQP_SCHEMES


def task_queue(name: str, broker_url: str) -> Queue:
    """The durable queue `name` as the broker of `broker_url` declares it.

    Bound to its own exchange by its own name: a bare `Queue(name)` would share Celery's default
    exchange and key with the "celery" queue and receive what is meant for it (and vice versa).
    """
    if not uses_amqp(broker_url):
        return Queue(name, Exchange(name, type="direct"), routing_key=name)
    return Queue(
        name,
        Exchange(name, type="topic", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=dict(QUORUM_ARGUMENTS),
    )


def publishing_settings(broker_url: str, **transport_options: object) -> dict[str, object]:
    """Celery settings for an app that publishes to `broker_url`, with its `transport_options`.

    Persistent delivery everywhere (Celery's default, said once here); with AMQP also publisher
    confirms, so that a send returns only once the broker has the message on disk (a send that
    raises was not confirmed, and its caller keeps the work: the spool, PostgreSQL's due
    deliveries, the next beat tick).
    """
    options = dict(transport_options)
    if uses_amqp(broker_url):
        options["confirm_publish"] = True
    return {"broker_transport_options": options, "task_default_delivery_mode": "persistent"}


def mismatch_advice(exc: BaseException) -> str | None:
    """What to do about `exc` when it is RabbitMQ refusing our declaration of an existing queue or
    exchange of another type (an older Timo Hub's); None for any other error."""
    if _reply_code(exc) != PRECONDITION_FAILED or "inequivalent arg" not in str(exc):
        return None
    return (
        f"the broker holds a queue or exchange declared differently by an older Timo Hub ({exc}); "
        f"stop the workers and beat, then run `{UPGRADE_COMMAND}` once to turn the classic "
        "queues into quorum queues (their messages are kept)"
    )


def outdated_declaration(
    broker_url: str, queues: Iterable[Queue], timeout: float = 5.0
) -> str | None:
    """Declare `queues` as a worker or beat is about to: what to do, when an older declaration is
    in the way; None when all is well or the broker cannot be reached now (the process's own
    connection retries report that)."""
    if not uses_amqp(broker_url):
        return None
    options = {"read_timeout": timeout, "write_timeout": timeout}
    conn = Connection(broker_url, connect_timeout=timeout, transport_options=options)
    try:
        with conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            for queue in queues:
                refusal = _declare(conn, queue)
                if refusal is not None:
                    return mismatch_advice(refusal) or str(refusal)
            for queue in queues:
                # An interrupted migration's messages wait there, and only a run of it moves
                # them back: starting without them would leave them unconsumed, silently.
                holding = f"{queue.name}{HOLDING_SUFFIX}"
                if _exists(conn, holding):
                    return (
                        f"an interrupted `{UPGRADE_COMMAND}` left messages in {holding!r}; "
                        "run it again (it resumes), then start the workers and beat"
                    )
    except (OSError, OperationalError, *conn.connection_errors):
        return None
    return None


@dataclass(frozen=True)
class QueueUpgrade:
    """What `upgrade_queues` did to one queue."""

    name: str
    upgraded: bool
    messages_moved: int


def upgrade_queues(
    broker_url: str,
    queues: Iterable[Queue],
    *,
    timeout: float = 10.0,
    progress: Callable[[str], None] = lambda line: None,
) -> list[QueueUpgrade]:
    """Make each of `queues` exist as declared, moving the messages of an older declaration.

    A queue already declared as asked (or absent) is declared and left alone. Otherwise its
    messages are moved (confirmed before acknowledged, so a crash at any point duplicates a message
    at worst, which our tasks tolerate) into a quorum holding queue; the queue and its exchange
    are deleted, declared anew, and refilled from the holding queue. Running it again resumes
    an interrupted run. Nothing may consume the old queues meanwhile: it refuses, naming the
    queue, while a consumer (an older worker) is attached.
    """
    if not uses_amqp(broker_url):
        return [QueueUpgrade(queue.name, False, 0) for queue in queues]
    results = []
    with Connection(
        broker_url, connect_timeout=timeout, transport_options={"confirm_publish": True}
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        for queue in queues:
            results.append(_upgrade(conn, queue, progress))
    return results


def _upgrade(conn: Connection, queue: Queue, progress: Callable[[str], None]) -> QueueUpgrade:
    name = queue.name
    assert name is not None and queue.exchange is not None
    holding = name + HOLDING_SUFFIX
    interrupted = _exists(conn, holding)
    if _declare(conn, queue) is None:
        if not interrupted:
            return QueueUpgrade(name, False, 0)
    else:
        progress(f"{name}: replacing the queue and its exchange (messages kept in {holding})")
        with _channel(conn) as channel:
            channel.queue_declare(
                holding, durable=True, auto_delete=False, arguments=QUORUM_ARGUMENTS
            )
        # The old exchange goes first: an older web process still publishing then gets an error,
        # not a confirm, for a message no queue would have taken, and keeps it to send again.
        with _channel(conn) as channel:
            channel.exchange_delete(queue.exchange.name)
        if _exists(conn, name):
            _empty_and_delete(conn, name, holding)
        with _channel(conn) as channel:
            queue(channel).declare()
    with _channel(conn) as channel:
        kept = _move(channel, holding, exchange=queue.exchange.name, routing_key=queue.routing_key)
        # Only this function publishes to the holding queue, so empty now is empty for good
        # (quorum queues refuse the `if_empty` flag of a delete).
        _, left, _ = channel.queue_declare(holding, passive=True)
        if left:
            raise QueueUpgradeError(f"{holding!r} still holds {left} message(s); run again")
        channel.queue_delete(holding)
    progress(f"{name}: a quorum queue, with {kept} message(s) kept")
    return QueueUpgrade(name, True, kept)


def _empty_and_delete(conn: Connection, name: str, holding: str, attempts: int = 5) -> None:
    """Move the old queue's messages to `holding` and delete it, unless something consumes it;
    an older web process may still publish to it, so a new message between the last move and
    the delete is moved on the next attempt."""
    for _ in range(attempts):
        with _channel(conn) as channel:
            _move(channel, name, exchange="", routing_key=holding)
            try:
                channel.queue_delete(name, if_unused=True, if_empty=True)
                return
            except conn.channel_errors as exc:
                if _reply_code(exc) != PRECONDITION_FAILED:
                    raise
                if "in use" in str(exc):
                    raise QueueUpgradeError(
                        f"queue {name!r} has consumers: stop the workers of the older version, "
                        f"then run `{UPGRADE_COMMAND}` again"
                    ) from None
    raise QueueUpgradeError(
        f"queue {name!r} keeps receiving messages; stop the older version's beat and workers, "
        f"then run `{UPGRADE_COMMAND}` again"
    )


@contextmanager
def _channel(conn: Connection) -> Iterator[Any]:
    """A py-amqp channel of its own: RabbitMQ closes a channel on the error it answers with."""
    channel = conn.channel()
    try:
        yield channel
    finally:
        with suppress(Exception):
            channel.close()


def _declare(conn: Connection, queue: Queue) -> Exception | None:
    """Declare `queue` (exchange, queue, binding); the broker's refusal if an older declaration
    is in the way."""
    with _channel(conn) as channel:
        try:
            queue(channel).declare()
        except conn.channel_errors as exc:
            if _reply_code(exc) != PRECONDITION_FAILED:
                raise
            return exc
    return None


def _exists(conn: Connection, name: str) -> bool:
    """Whether a queue `name` exists, whatever its type."""
    with _channel(conn) as channel:
        try:
            channel.queue_declare(name, passive=True)
        except conn.channel_errors as exc:
            if _reply_code(exc) != NOT_FOUND:
                raise
            return False
    return True


def _reply_code(exc: BaseException) -> int | None:
    """The AMQP reply code of a channel error (py-amqp's `reply_code`), else None."""
    code = getattr(exc, "reply_code", None)
    return code if isinstance(code, int) else None


def _move(channel: Any, source: str, *, exchange: str, routing_key: str | None) -> int:
    """Move every ready message of `source` to `exchange` by `routing_key`, each one confirmed
    by the broker before it is acknowledged at the source."""
    moved = 0
    while True:
        message = channel.basic_get(source, no_ack=False)
        if message is None:
            return moved
        properties = message.properties
        copy = channel.prepare_message(
            message.body,
            priority=properties.get("priority"),
            content_type=properties.get("content_type"),
            content_encoding=properties.get("content_encoding"),
            headers=properties.get("application_headers"),
            properties={k: v for k, v in properties.items() if k in _MESSAGE_PROPERTIES},
        )
        # With `confirm_publish`, py-amqp returns once the broker confirmed; `mandatory` makes a
        # message no queue would take an error rather than a confirmed loss.
        channel.basic_publish(
            copy,
            exchange=exchange,
            routing_key=routing_key or "",
            mandatory=True,
        )
        channel.basic_ack(message.delivery_tag)
        moved += 1
