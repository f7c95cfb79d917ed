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
from events.partitions import PartitionRegistry
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
        return _append(conn, partitions, events, dead_letters, source)


def _append(
    conn: psycopg.Connection,
    partitions: PartitionRegistry,
    events: list[ApiCallRecorded],
    dead_letters: Iterable[tuple[str, str]],
    source: str,
    batch_id: str | None = None,
) -> event_log.AppendResult:
    partitions.ensure(conn, {month_start(e.occurred_at) for e in events})
    with conn.transaction():
        result = event_log.append(conn, events)
        for payload, reason in dead_letters:
            event_log.record_dead_letter(conn, source, payload, reason)
        if batch_id is not None:
            # In the same transaction: a receipt exists exactly when the batch is in the log.
            event_log.record_receipt(conn, batch_id)
    return result


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
        events = _after_retention_floor(retention_floor(conn), events, rejected)
        # End the read's transaction, so that a partition made for this batch is committed on
        # its own (and remembered) before the batch's transaction starts.
        conn.commit()
        try:
            result = _append_or_look_again(conn, partitions, events, rejected, source, batch_id)
        except _REFUSED_BY_THE_DATABASE as exc:
            # Something in the batch the model let through, the database refuses: find it, line
            # by line, rather than drop the batch (the broker would not redeliver it and the
            # web process would ship it again forever).
            logger.warning("batch refused whole (%s); appending it event by event", exc)
            result = _append_one_by_one(conn, partitions, events, rejected, source, batch_id)
    pipeline_metrics.EVENTS_INGESTED.inc(result.appended)
    pipeline_metrics.EVENTS_DUPLICATE.inc(result.duplicates)
    pipeline_metrics.EVENTS_DEAD_LETTERED.inc(len(rejected))
    pipeline_metrics.INGEST_BATCH_SIZE.observe(len(lines))
    if events and result.appended:
        oldest = min(event.occurred_at for event in events)
        pipeline_metrics.INGEST_LAG.observe(max((datetime.now(UTC) - oldest).total_seconds(), 0.0))
    return IngestResult(
        received=len(lines),
        appended=result.appended,
        duplicates=result.duplicates,
        dead_lettered=len(rejected),
        rejections=tuple(reason for _, reason in rejected),
    )


# What is wrong with a batch's content rather than with the database (unlike OperationalError,
# which the task retries): a value it cannot store, a constraint the event breaks, or a month no
# partition can be made for (the year 9999's December ends past the last date Python has).
_REFUSED_BY_THE_DATABASE = (psycopg.DataError, psycopg.IntegrityError, ValueError)


def _append_or_look_again(
    conn: psycopg.Connection,
    partitions: PartitionRegistry,
    events: list[ApiCallRecorded],
    rejected: list[tuple[str, str]],
    source: str,
    batch_id: str | None,
) -> event_log.AppendResult:
    try:
        return _append(conn, partitions, events, rejected, source, batch_id)
    except psycopg.errors.CheckViolation:
        # No partition for a month the cache knew: another process dropped it (retention).
        # Look again, once; a second refusal is the batch's own.
        partitions.forget()
        return _append(conn, partitions, events, rejected, source, batch_id)


def _append_one_by_one(
    conn: psycopg.Connection,
    partitions: PartitionRegistry,
    events: list[ApiCallRecorded],
    rejected: list[tuple[str, str]],
    source: str,
    batch_id: str | None,
) -> event_log.AppendResult:
    """Append each event in its own transaction, dead-lettering those the database refuses;
    then the dead letters and the receipt. Exactly once still: the log ignores what it has."""
    appended = duplicates = 0
    for event in events:
        try:
            one = _append(conn, partitions, [event], (), source)
        except _REFUSED_BY_THE_DATABASE as exc:
            rejected.append((event.to_json(), f"refused by the database: {exc}"))
            continue
        appended += one.appended
        duplicates += one.duplicates
    with conn.transaction():
        for payload, reason in rejected:
            event_log.record_dead_letter(conn, source, payload, reason)
        if batch_id is not None:
            event_log.record_receipt(conn, batch_id)
    return event_log.AppendResult(appended=appended, duplicates=duplicates)


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
