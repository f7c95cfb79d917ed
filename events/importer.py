"""Importing historical events from JSON Lines through the same exactly-once path as live ones.

Each chunk of lines is parsed with the one event parser and appended with `event_log.append`, so
importing a file twice changes nothing the second time (every event is a duplicate). Lines that
are not valid events, or name an account that does not exist, are rejected and reported with
their line numbers; they are not dead-lettered, so a re-import leaves every table as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from events.ingest import append_batch
from events.model import ApiCallRecorded, InvalidEventError
from events.partitions import PartitionRegistry
from events.retention import retention_floor
from timo_hub.platform.db import Database

CHUNK_LINES = 2000
MAX_EXAMPLES = 20
SELECT_KNOWN_ACCOUNTS = "SELECT id FROM accounts WHERE id = ANY(%s)"


@dataclass
class ImportSummary:
    """What an import did."""

    read: int = 0
    appended: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def rejected_total(self) -> int:
        """Lines refused, whatever the reason."""
        return sum(self.rejected.values())

    def reject(self, line_number: int, reason: str) -> None:
        """Count a refused line (keeping the first few as examples)."""
        kind = reason.split(":", 1)[0] if ":" in reason else reason
        self.rejected[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {line_number}: {reason}")


def import_lines(
    database: Database,
    lines: Iterable[str],
    progress: Callable[[int], object] | None = None,
) -> ImportSummary:
    """Append every valid event of `lines`; `progress(n)` is told of each chunk's bytes."""
    summary = ImportSummary()
    partitions = PartitionRegistry()
    for chunk in _chunks(enumerate(lines, start=1), CHUNK_LINES):
        events: list[ApiCallRecorded] = []
        numbers: list[int] = []
        for number, line in chunk:
            summary.read += 1
            if not line.strip():
                summary.read -= 1  # blank lines are not records
                continue
            try:
                events.append(ApiCallRecorded.parse(line))
                numbers.append(number)
            except InvalidEventError as exc:
                summary.reject(number, str(exc))
        events = _known_accounts_only(database, events, numbers, summary)
        result = append_batch(database, partitions, events)
        summary.appended += result.appended
        summary.duplicates += result.duplicates
        if progress is not None:
            progress(sum(len(line.encode()) for _, line in chunk))
    return summary


def _known_accounts_only(
    database: Database, events: list[ApiCallRecorded], numbers: list[int], summary: ImportSummary
) -> list[ApiCallRecorded]:
    if not events:
        return events
    with database.connection() as conn:
        floor = retention_floor(conn)
        known = {
            row[0] for row in conn.execute(SELECT_KNOWN_ACCOUNTS, ([e.account_id for e in events],))
        }
    kept = []
    for event, number in zip(events, numbers, strict=True):
        if event.account_id not in known:
            summary.reject(number, f"unknown account: {event.account_id}")
        elif floor is not None and event.occurred_at.date() < floor:
            summary.reject(number, f"before retention floor: {event.occurred_at.date()} < {floor}")
        else:
            kept.append(event)
    return kept


def _chunks(items: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    while chunk := list(islice(items, size)):
        yield chunk
