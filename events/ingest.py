"""Ingesting a batch of event payloads: parse, append exactly once, dead-letter the unreadable.

This is what the `timo.events.ingest` task runs, and what `events import` runs on its chunks. One
batch is one PostgreSQL transaction: the log rows, their `usage_daily` increments and the batch's
dead letters commit together or not at all, and the worker acknowledges the message only after.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg

from events import event_log, pipeline_metrics
from events.model import ApiCallRecorded, InvalidEventError
from events.partitions import PartitionRegistry, UnpartitionableMonthError
from events.retention import retention_floor
from timo_hub.platform.db import Database
from timo_hub.platform.months import month_start

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What one batch did."""

    received: int
    appended: int
    duplicates: int
    dead_lettered: int
    rejections: tuple[str, ...] = ()


def parse_lines(lines: Iterable[object]) -> tuple[list[ApiCallRecorded], list[tuple[str, str]]]:
    """Split payloads into events and (payload, reason) pairs for the unreadable ones."""
    events, rejected = [], []
    for line in lines:
        if not isinstance(line, str | bytes):
            rejected.append((repr(line)[:10_000], "not a JSON text"))
            continue
        try:
            events.append(ApiCallRecorded.parse(line))
        except InvalidEventError as exc:
            text = line if isinstance(line, str) else line.decode("utf-8", errors="replace")
            rejected.append((text[:10_000], str(exc)))
    return events, rejected


def append_batch(
    database: Database,
    partitions: PartitionRegistry,
    events: list[ApiCallRecorded],
    *,
    dead_letters: Sequence[tuple[str, str]] = (),
    source: str = "queue",
) -> event_log.AppendResult:
    """One transaction: append `events` (exactly once) and record `dead_letters`."""
    with database.connection() as conn:
        return _Batch(conn, partitions, source, None, events, list(dead_letters)).append_whole()


def ingest(
    database: Database,
    partitions: PartitionRegistry,
    lines: Iterable[object],
    *,
    source: str = "queue",
    batch_id: str | None = None,
) -> IngestResult:
    """Append a batch of event payloads to the log and the projection, exactly once; with
    `batch_id`, leave the batch's receipt for the web process that shipped it."""
    lines = list(lines)
    events, rejected = parse_lines(lines)
    # One connection for the floor check and the append: no second checkout per batch.
    with database.connection() as conn:
        batch = _Batch(conn, partitions, source, batch_id, events, rejected)
        batch.drop_below_floor()
        try:
            result = batch.append_or_look_again()
        except _REFUSED as exc:
            # Something in the batch the model let through, the database refuses: find it, line
            # by line, rather than drop the batch (the broker would not redeliver it and the
            # web process would ship it again forever).
            logger.warning("batch refused whole (%s); appending it event by event", exc)
            result = batch.append_one_by_one()
    pipeline_metrics.EVENTS_INGESTED.inc(result.appended)
    pipeline_metrics.EVENTS_DUPLICATE.inc(result.duplicates)
    pipeline_metrics.EVENTS_DEAD_LETTERED.inc(batch.letters_written)
    pipeline_metrics.INGEST_BATCH_SIZE.observe(len(lines))
    if batch.events and result.appended:
        oldest = min(event.occurred_at for event in batch.events)
        pipeline_metrics.INGEST_LAG.observe(max((datetime.now(UTC) - oldest).total_seconds(), 0.0))
    return IngestResult(
        received=len(lines),
        appended=result.appended,
        duplicates=result.duplicates,
        dead_lettered=len(batch.rejected),
        rejections=tuple(reason for _, reason in batch.rejected),
    )


# What is wrong with a batch's content rather than with the database (unlike OperationalError,
# which the task retries): a value it cannot store, a constraint an event breaks, or a month no
# partition can be made for.
_REFUSED = (psycopg.DataError, psycopg.IntegrityError, UnpartitionableMonthError)


@dataclass
class _Batch:
    """One batch on its way into the log: its events, its dead letters, and its receipt."""

    conn: psycopg.Connection
    partitions: PartitionRegistry
    source: str
    batch_id: str | None
    events: list[ApiCallRecorded]
    rejected: list[tuple[str, str]]
    letters_written: int = 0

    def drop_below_floor(self) -> None:
        """Refuse the events older than the retention floor, then end the read's transaction,
        so that a partition made for this batch is committed on its own (and remembered)."""
        floor = retention_floor(self.conn)
        self.events = _after_retention_floor(floor, self.events, self.rejected)
        self.conn.commit()

    def append_whole(self) -> event_log.AppendResult:
        """The events, the dead letters and the receipt in one transaction."""
        self.partitions.ensure(self.conn, {month_start(e.occurred_at) for e in self.events})
        with self.conn.transaction():
            result = event_log.append(self.conn, self.events)
            self._close()
        return result

    def append_or_look_again(self) -> event_log.AppendResult:
        """`append_whole`, once more if a partition the cache knew is gone."""
        try:
            return self.append_whole()
        except psycopg.errors.CheckViolation:
            # Another process dropped a partition (retention) since the cache saw it: forget
            # the cache, and apply the floor again, which moved with the drop, so that an event
            # below it does not bring its month back. A second refusal is the batch's own.
            self.partitions.forget()
            self.drop_below_floor()
            return self.append_whole()

    def append_one_by_one(self) -> event_log.AppendResult:
        """Each event in its own transaction, dead-lettering those the database refuses; then
        the dead letters and the receipt. Exactly once still: the log ignores what it has."""
        appended = duplicates = 0
        for event in self.events:
            try:
                self.partitions.ensure(self.conn, {month_start(event.occurred_at)})
                with self.conn.transaction():
                    one = event_log.append(self.conn, [event])
            except _REFUSED as exc:
                self.rejected.append((event.to_json(), f"refused by the database: {exc}"))
                continue
            appended += one.appended
            duplicates += one.duplicates
        with self.conn.transaction():
            self._close()
        return event_log.AppendResult(appended=appended, duplicates=duplicates)

    def _close(self) -> None:
        # In the batch's transaction. The receipt exists exactly when the batch is in the log;
        # a batch that already has one was delivered before (a redelivery, or a re-shipping
        # that raced the first), and its dead letters were written then.
        fresh = self.batch_id is None or event_log.record_receipt(self.conn, self.batch_id)
        if fresh:
            for payload, reason in self.rejected:
                event_log.record_dead_letter(self.conn, self.source, payload, reason)
            self.letters_written = len(self.rejected)


def _after_retention_floor(
    floor: date | None, events: list[ApiCallRecorded], rejected: list[tuple[str, str]]
) -> list[ApiCallRecorded]:
    """Events older than the retention floor are refused: their month's raw data is gone and a
    lone late event must not bring the partition back."""
    if floor is None:
        return events
    kept = []
    for event in events:
        if event.occurred_at.date() < floor:
            rejected.append((event.to_json(), f"occurred before the retention floor {floor}"))
        else:
            kept.append(event)
    return kept


def ingest_message(
    database: Database, partitions: PartitionRegistry, payload: object, batch: object = None
) -> IngestResult:
    """Ingest one broker message body; anything but a list of lines is dead-lettered whole.

    `batch` is the shipping web process's name for the batch (messages from before receipts
    carry none); anything but a short string is ignored.
    """
    if not isinstance(payload, list):
        with database.connection() as conn:
            event_log.record_dead_letter(
                conn, "queue", repr(payload)[:10_000], "message is not a list"
            )
        pipeline_metrics.EVENTS_DEAD_LETTERED.inc()
        return IngestResult(1, 0, 0, 1, ("message is not a list",))
    batch_id = batch if isinstance(batch, str) and 0 < len(batch) <= 200 else None
    return ingest(database, partitions, payload, batch_id=batch_id)
