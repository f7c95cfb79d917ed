"""Quota events noticed at admission, in the web process that admitted the call.

The admission already knows the month's count and limit, so noticing a crossing costs the request
two multiplications and a comparison (one dictionary lookup past the first threshold). What was
noticed is handed to a background thread, which records it in PostgreSQL (once, whoever else
noticed it too: `notifications`) and queues its deliveries: the request never waits for either.
Each process hands each crossing on once; the catch-up run (`catch_up`) records any crossing a
process noticed and died before recording.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from timo_hub.platform.db import Database
from timo_hub.webhooks import notifications
from timo_hub.webhooks.dispatch import DeliveryQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Noticed:
    account_id: uuid.UUID
    first_day: date
    limit: int
    used: int
    thresholds: tuple[int, ...]
    """Thresholds reached; empty for the month's first refusal."""
    at: datetime


class QuotaWatch:
    """Notices threshold crossings and first refusals; records and queues them off the request."""

    def __init__(
        self,
        database: Database,
        deliveries: DeliveryQueue,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._database = database
        self._deliveries = deliveries
        self._clock = clock or (lambda: datetime.now(UTC))
        # (account, month) -> the highest threshold this process has handed on; and the months
        # whose first refusal it has. Only this month's are kept.
        self._handed: dict[tuple[uuid.UUID, date], int] = {}
        self._refused: set[tuple[uuid.UUID, date]] = set()
        self._month: date | None = None
        self._queue: queue.SimpleQueue[_Noticed | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def admitted(
        self,
        account_id: uuid.UUID,
        thresholds: Sequence[int],
        first_day: date,
        limit: int | None,
        used: int,
    ) -> None:
        """After an admitted call: note any threshold `used` reached that was not handed on."""
        if not limit or not thresholds or used * 100 < thresholds[0] * limit:
            return
        key = (account_id, first_day)
        handed = self._handed.get(key, 0)
        if thresholds[-1] <= handed:
            return
        reached = tuple(t for t in thresholds if t > handed and used * 100 >= t * limit)
        if not reached:
            return
        with self._lock:
            self._new_month(first_day)
            if self._handed.get(key, 0) >= reached[-1]:
                return
            self._handed[key] = reached[-1]
        self._hand_on(_Noticed(account_id, first_day, limit, used, reached, self._clock()))

    def refused(self, account_id: uuid.UUID, first_day: date, limit: int | None, used: int) -> None:
        """After a call refused by the quota: note the month's first refusal."""
        if limit is None or used < limit:
            return
        key = (account_id, first_day)
        if key in self._refused:
            return
        with self._lock:
            self._new_month(first_day)
            if key in self._refused:
                return
            self._refused.add(key)
        self._hand_on(_Noticed(account_id, first_day, limit, used, (), self._clock()))

    def close(self, timeout: float = 5.0) -> None:
        """Record what was noticed and stop the thread (at shutdown)."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._queue.put(None)
            thread.join(timeout)
        self._thread = None

    def _new_month(self, first_day: date) -> None:
        if self._month != first_day:
            self._month = first_day
            self._handed = {k: v for k, v in self._handed.items() if k[1] == first_day}
            self._refused = {k for k in self._refused if k[1] == first_day}

    def _hand_on(self, noticed: _Noticed) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # After a fork the parent's thread is not ours, nor what it had queued.
                    self._queue = queue.SimpleQueue()
                    self._thread = threading.Thread(
                        target=self._run, name="timo-quota-watch", daemon=True
                    )
                    self._thread.start()
                    self._pid = os.getpid()
        self._queue.put(noticed)

    def _run(self) -> None:
        while True:
            noticed = self._queue.get()
            if noticed is None:
                return
            try:
                self._record(noticed)
            except Exception:
                # The catch-up run records it within a minute from what PostgreSQL counted.
                logger.exception(
                    "webhooks: could not record a quota event of account %s (catch-up will)",
                    noticed.account_id,
                )

    def _record(self, noticed: _Noticed) -> None:
        ids: list[str] = []
        with self._database.connection() as conn:
            if not noticed.thresholds:
                ids += notifications.exhausted(
                    conn,
                    noticed.account_id,
                    noticed.first_day,
                    noticed.limit,
                    noticed.used,
                    noticed.at,
                )
            for threshold in noticed.thresholds:
                ids += notifications.threshold_reached(
                    conn,
                    noticed.account_id,
                    noticed.first_day,
                    noticed.limit,
                    noticed.used,
                    threshold,
                    noticed.at,
                )
        self._deliveries.send(ids)
