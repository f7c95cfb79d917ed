"""The nightly forecast run: planned once per UTC day, computed in chunks, resumable, observable.

A run (`forecast_runs`) covers the accounts active when it is planned, in id order, split into
chunks of `chunk_size` (`forecast_run_chunks`, each with its account ids). Planning is idempotent:
the day is unique, so planning it again (beat firing twice, a redelivered `forecast_all`, the CLI
while workers run) finds the run. Workers compute a chunk a task at a time; the CLI computes them
in-process with the same function (`run_chunk`).

**Resume rule.** An account is done for a run once its default forecast of the run's day
(`DEFAULT_HORIZON_DAYS`, `DEFAULT_MODEL`) has been stored since the run started. An execution of a
chunk starts at the chunk's cursor (`settled`: accounts from its start that are done, failed or
skipped, written at checkpoints every `CHECKPOINT_SECONDS`) and skips the accounts after it that
the rule finds done, so one killed mid-chunk (its message redelivered) redoes none of the
accounts it finished and leaves none out.

**Ownership.** Claiming a chunk counts an attempt; a checkpoint applies only while no later
execution has claimed it. A redelivered or re-queued copy of a chunk that is still running thus
takes it over, and the older execution stops at its next checkpoint: at most one checkpoint's
worth of accounts is computed twice, and every count is written by exactly one execution.

**Time budget.** An execution starts no account after `CHUNK_SECONDS` and leaves the rest to a
new task (`ChunkOutcome.state == "unfinished"`), so no chunk task runs long enough for the Redis
broker to hand its message to another worker while it still runs (`visibility_timeout`,
`workers.celery_app`).

**Sweep.** Messages can still be lost outright (a Redis consumer killed between taking a message
and recording it as unacknowledged, a Redis without persistence restarting). `chunks_to_queue`
names the chunks never queued, and, once a run has gone quiet for `QUIET_AFTER` (no claim,
checkpoint or queueing), every chunk not done: those have no live message.

Owns `forecast_runs` and `forecast_run_chunks`; reads `accounts` and `forecasts`; computes
through `forecasts.run_all`. Does not touch the broker: the tasks queue what it names.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import psycopg
from psycopg.rows import class_row

from analytics.parameters import DEFAULT_HORIZON_DAYS, DEFAULT_MODEL
from timo_hub.platform.db import Database
from timo_hub.usage import forecasts, metrics

logger = logging.getLogger(__name__)

# Accounts per chunk unless configured (`TIMO_FORECAST_CHUNK_SIZE`): a chunk is one task's work
# (a second or two of CPU, `forecasts.BATCH_ACCOUNTS` at a time), and a million accounts make
# 2,000 chunks.
DEFAULT_CHUNK_SIZE = 500
# An execution starts no new account after this long: half the Redis broker's visibility
# timeout (60 s), leaving the other half for the account in progress.
CHUNK_SECONDS = 30.0
# How often an execution writes its cursor down (and shows it is alive).
CHECKPOINT_SECONDS = 2.0
# A run with no claim, checkpoint or queueing for this long has no live chunk message left.
QUIET_AFTER = timedelta(minutes=10)
# Runs are kept as long as the forecasts they made.
RUN_RETENTION_DAYS = forecasts.FORECAST_RETENTION_DAYS

RUN_COLUMNS = "id, for_day, started_at, finished_at, chunk_size, accounts, chunks"
INSERT_RUN = """
INSERT INTO forecast_runs (for_day, started_at, chunk_size)
VALUES (%(day)s, %(now)s, %(size)s)
ON CONFLICT (for_day) DO NOTHING
RETURNING id
"""
# The accounts `accounts.store.active_account_ids` lists, in id order (the primary key's), split
# in the database: a million ids never travel to Python.
INSERT_CHUNKS = f"""
WITH chunked AS (
    INSERT INTO forecast_run_chunks (run_id, chunk, account_ids)
    SELECT %(run)s, chunk, array_agg(id ORDER BY id)
    FROM (
        SELECT id, (row_number() OVER (ORDER BY id) - 1) / %(size)s AS chunk
        FROM accounts WHERE status = 'active'
    ) AS active
    GROUP BY chunk
    RETURNING cardinality(account_ids) AS accounts
)
UPDATE forecast_runs
SET accounts = (SELECT coalesce(sum(accounts), 0) FROM chunked),
    chunks = (SELECT count(*) FROM chunked),
    finished_at = CASE WHEN NOT EXISTS (SELECT FROM chunked) THEN started_at END
WHERE id = %(run)s
RETURNING {RUN_COLUMNS}
"""
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM forecast_runs WHERE for_day = %(day)s"
DELETE_RUN = "DELETE FROM forecast_runs WHERE for_day = %(day)s"
DELETE_RUNS_BEFORE = "DELETE FROM forecast_runs WHERE for_day < %(day)s"

CLAIM_CHUNK = """
UPDATE forecast_run_chunks AS c
SET attempts = c.attempts + 1, started_at = coalesce(c.started_at, %(now)s), touched_at = %(now)s
FROM forecast_runs AS r
WHERE c.run_id = %(run)s AND c.chunk = %(chunk)s AND c.done_at IS NULL
  AND r.id = c.run_id AND r.for_day = %(today)s
RETURNING c.attempts, c.settled, c.account_ids, r.for_day, r.started_at
"""
# Why a chunk could not be claimed.
CHUNK_STANDING = """
SELECT c.done_at IS NOT NULL, r.for_day
FROM forecast_run_chunks c JOIN forecast_runs r ON r.id = c.run_id
WHERE c.run_id = %(run)s AND c.chunk = %(chunk)s
"""
# The resume rule: these accounts' default forecasts of the run's day, stored since it started.
# Read by the primary key of `forecasts` (account, day, horizon, model).
ALREADY_FORECAST = """
SELECT account_id FROM forecasts
WHERE account_id = ANY(%(accounts)s) AND generated_on = %(day)s AND horizon_days = %(days)s
  AND requested_model = %(model)s AND generated_at >= %(since)s
"""
# Applies only for the execution that claimed the chunk last (`attempts`), from where it left it.
CHECKPOINT = """
UPDATE forecast_run_chunks
SET settled = %(to)s, succeeded = succeeded + %(succeeded)s, failed = failed + %(failed)s,
    skipped = skipped + %(skipped)s, touched_at = %(now)s,
    done_at = CASE WHEN %(to)s = cardinality(account_ids) THEN %(now)s::timestamptz END
WHERE run_id = %(run)s AND chunk = %(chunk)s AND attempts = %(attempt)s AND settled = %(from)s
"""
# Its own statement, after the chunk's commit: of two last chunks finishing at once, the later
# statement sees both done.
FINISH_RUN = """
UPDATE forecast_runs SET finished_at = %(now)s
WHERE id = %(run)s AND finished_at IS NULL
  AND NOT EXISTS (SELECT FROM forecast_run_chunks WHERE run_id = %(run)s AND done_at IS NULL)
"""
# Chunks never queued, and every unfinished one once the run has gone quiet. The subquery is
# uncorrelated: it runs once.
CHUNKS_TO_QUEUE = """
SELECT c.chunk FROM forecast_run_chunks c
WHERE c.run_id = %(run)s AND c.done_at IS NULL
  AND (c.queued_at IS NULL OR (
      SELECT greatest(min(r.started_at), max(a.touched_at), max(a.queued_at)) < %(quiet_since)s
      FROM forecast_runs r JOIN forecast_run_chunks a ON a.run_id = r.id
      WHERE r.id = %(run)s
  ))
ORDER BY c.chunk
"""
MARK_QUEUED = """
UPDATE forecast_run_chunks SET queued_at = %(now)s
WHERE run_id = %(run)s AND chunk = ANY(%(chunks)s)
"""
UNFINISHED_CHUNKS = """
SELECT chunk FROM forecast_run_chunks WHERE run_id = %(run)s AND done_at IS NULL ORDER BY chunk
"""
STATUS = """
SELECT r.id AS run_id, r.for_day, r.started_at, r.finished_at, r.chunk_size, r.accounts,
       r.chunks, count(c.done_at) AS chunks_done,
       count(c.started_at) FILTER (WHERE c.done_at IS NULL) AS chunks_in_progress,
       coalesce(sum(c.succeeded), 0) AS succeeded, coalesce(sum(c.failed), 0) AS failed,
       coalesce(sum(c.skipped), 0) AS skipped, max(c.touched_at) AS last_progress_at
FROM forecast_runs r LEFT JOIN forecast_run_chunks c ON c.run_id = r.id
WHERE r.for_day = %(day)s
GROUP BY r.id
"""

ChunkState = Literal["done", "unfinished", "superseded", "already_done", "expired", "gone"]


@dataclass(frozen=True)
class Run:
    """One day's nightly forecast run."""

    id: int
    for_day: date
    started_at: datetime
    finished_at: datetime | None
    chunk_size: int
    accounts: int
    chunks: int


@dataclass(frozen=True)
class ChunkOutcome:
    """How one execution of a chunk ended, and what it settled.

    `unfinished`: the time budget ran out, the rest is for a new task. `superseded`: a later
    execution claimed the chunk, the rest is its. `already_done`, `expired` (its run's day is
    over) and `gone` (its run was discarded): nothing was done.
    """

    state: ChunkState
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    alerts_raised: int = 0


@dataclass(frozen=True)
class RunStatus:
    """A run's progress, added up over its chunks."""

    run_id: int
    for_day: date
    started_at: datetime
    finished_at: datetime | None
    chunk_size: int
    accounts: int
    chunks: int
    chunks_done: int
    chunks_in_progress: int
    succeeded: int
    failed: int
    skipped: int
    last_progress_at: datetime | None

    @property
    def done(self) -> int:
        """Accounts forecast by this run (in this execution or one interrupted before)."""
        return self.succeeded + self.skipped

    @property
    def pending(self) -> int:
        """Accounts not settled yet."""
        return self.accounts - self.done - self.failed

    @property
    def chunks_waiting(self) -> int:
        """Chunks no execution has started."""
        return self.chunks - self.chunks_done - self.chunks_in_progress

    def rate(self, now: datetime) -> float:
        """Accounts settled per second since the run started (until it finished)."""
        elapsed = ((self.finished_at or now) - self.started_at).total_seconds()
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def eta(self, now: datetime) -> timedelta | None:
        """Time left at the rate so far; None when finished or nothing is settled yet."""
        rate = self.rate(now)
        if self.finished_at is not None or rate <= 0:
            return None
        return timedelta(seconds=self.pending / rate)


def plan(database: Database, now: datetime, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Run:
    """Today's run (`now`'s UTC day): planned now, or the one planned before."""
    day = now.astimezone(UTC).date()
    with database.connection() as conn, conn.transaction():
        row = conn.execute(INSERT_RUN, {"day": day, "now": now, "size": chunk_size}).fetchone()
        if row is not None:
            with conn.cursor(row_factory=class_row(Run)) as cur:
                run = cur.execute(INSERT_CHUNKS, {"run": row[0], "size": chunk_size}).fetchone()
            assert run is not None
            logger.info(
                "forecast run %s for %s planned: %d account(s) in %d chunk(s)",
                run.id,
                day,
                run.accounts,
                run.chunks,
            )
            return run
    # Planned before (or just now, by a planner whose insert this one waited for).
    found = find(database, day)
    if found is None:  # pragma: no cover - the conflicting run was deleted in between
        return plan(database, now, chunk_size=chunk_size)
    return found


def find(database: Database, day: date) -> Run | None:
    """The run of `day`, if planned."""
    with database.connection() as conn, conn.cursor(row_factory=class_row(Run)) as cur:
        return cur.execute(SELECT_RUN, {"day": day}).fetchone()


def discard(database: Database, day: date) -> bool:
    """Delete the run of `day` and its chunks (to start the day over); True if there was one.

    Executions still running stop at their next checkpoint; queued chunk tasks find nothing.
    """
    with database.connection() as conn:
        return conn.execute(DELETE_RUN, {"day": day}).rowcount > 0


def prune(database: Database, today: date) -> int:
    """Delete runs past retention; returns how many."""
    with database.connection() as conn:
        before = today - timedelta(days=RUN_RETENTION_DAYS)
        return conn.execute(DELETE_RUNS_BEFORE, {"day": before}).rowcount


def chunks_to_queue(
    database: Database, run_id: int, now: datetime, *, quiet_after: timedelta = QUIET_AFTER
) -> list[int]:
    """Chunks of the run that need a task: never queued, or (the run quiet since `quiet_after`
    before `now`) every one not done."""
    with database.connection() as conn:
        rows = conn.execute(CHUNKS_TO_QUEUE, {"run": run_id, "quiet_since": now - quiet_after})
        return [row[0] for row in rows]


def mark_queued(database: Database, run_id: int, chunks: Sequence[int], now: datetime) -> None:
    """Note that a task was queued for each of `chunks` at `now`."""
    if chunks:
        with database.connection() as conn:
            conn.execute(MARK_QUEUED, {"run": run_id, "chunks": list(chunks), "now": now})


def unfinished_chunks(database: Database, run_id: int) -> list[int]:
    """The run's chunks not done, in order."""
    with database.connection() as conn:
        return [row[0] for row in conn.execute(UNFINISHED_CHUNKS, {"run": run_id})]


def finish_if_complete(database: Database, run_id: int, now: datetime) -> bool:
    """Mark the run finished if every chunk is done and it is not marked yet; True if marked."""
    with database.connection() as conn:
        return conn.execute(FINISH_RUN, {"run": run_id, "now": now}).rowcount > 0


def status(database: Database, day: date) -> RunStatus | None:
    """The progress of the run of `day`, if planned."""
    with database.connection() as conn, conn.cursor(row_factory=class_row(RunStatus)) as cur:
        return cur.execute(STATUS, {"day": day}).fetchone()


def publish_status(database: Database, day: date) -> RunStatus | None:
    """Read the run of `day` and show it in this process's gauges (`timo_hub.usage.metrics`)."""
    found = status(database, day)
    if found is not None:
        metrics.RUN_ACCOUNTS.labels("done").set(found.done)
        metrics.RUN_ACCOUNTS.labels("failed").set(found.failed)
        metrics.RUN_ACCOUNTS.labels("pending").set(found.pending)
        metrics.RUN_CHUNKS.labels("done").set(found.chunks_done)
        metrics.RUN_CHUNKS.labels("in_progress").set(found.chunks_in_progress)
        metrics.RUN_CHUNKS.labels("waiting").set(found.chunks_waiting)
        metrics.RUN_STARTED.set(found.started_at.timestamp())
        metrics.RUN_FINISHED.set(found.finished_at.timestamp() if found.finished_at else 0)
    return found


@dataclass(frozen=True)
class _Claim:
    attempt: int
    settled: int
    account_ids: list[uuid.UUID]
    for_day: date
    started_at: datetime


class _Cursor:
    """An execution's view of its chunk: which accounts are settled, and writing that down."""

    def __init__(
        self,
        database: Database,
        run_id: int,
        chunk: int,
        claim: _Claim,
        already: set[uuid.UUID],
        clock: Callable[[], float],
    ) -> None:
        self.database = database
        self.run_id = run_id
        self.chunk = chunk
        self.claim = claim
        self.pending = claim.account_ids[claim.settled :]
        self.index = {account_id: i for i, account_id in enumerate(self.pending)}
        self.results: list[str | None] = ["skipped" if a in already else None for a in self.pending]
        self.written = 0  # of `pending`, settled in the database
        self.lost = False
        self.totals: Counter[str] = Counter()
        self.alerts = 0
        self.clock = clock
        self.last_write = clock()

    def settle(self, account_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
        """Note one account's outcome; write the cursor down when a checkpoint is due."""
        i = self.index.get(account_id)
        if i is not None:
            self.results[i] = "failed" if outcome is None else "succeeded"
            if outcome is not None:
                self.alerts += len(outcome.alerts_raised)
        if self.clock() - self.last_write >= CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write down the accounts settled in order since the last checkpoint, while this
        execution still owns the chunk (else it is `lost`)."""
        if self.lost:
            return
        end = self.written
        while end < len(self.results) and self.results[end] is not None:
            end += 1
        tally = Counter(result for result in self.results[self.written : end] if result)
        with self.database.connection() as conn:
            written = conn.execute(
                CHECKPOINT,
                {
                    "run": self.run_id,
                    "chunk": self.chunk,
                    "attempt": self.claim.attempt,
                    "from": self.claim.settled + self.written,
                    "to": self.claim.settled + end,
                    "succeeded": tally["succeeded"],
                    "failed": tally["failed"],
                    "skipped": tally["skipped"],
                    "now": datetime.now(UTC),
                },
            ).rowcount
        self.last_write = self.clock()
        if not written:
            logger.info(
                "forecast run %s chunk %s taken over by another execution; leaving it",
                self.run_id,
                self.chunk,
            )
            self.lost = True
            return
        for outcome, n in tally.items():
            metrics.ACCOUNTS_SETTLED.labels(outcome).inc(n)
        self.totals += tally
        self.written = end

    @property
    def complete(self) -> bool:
        """Every account of the chunk is settled and written down."""
        return self.written == len(self.pending)


def run_chunk(
    database: Database,
    run_id: int,
    chunk: int,
    *,
    budget_seconds: float | None = CHUNK_SECONDS,
    on_done: Callable[[uuid.UUID, forecasts.NightlyOutcome | None], None] | None = None,
    on_skipped: Callable[[int], None] | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ChunkOutcome:
    """Claim the chunk and forecast its accounts not yet done by the run, from its cursor on.

    Starts no account after `budget_seconds` (None: no limit). `on_done` is called per account
    computed (outcome None: failed), `on_skipped` with the number of accounts found done already.
    A failure of one account is settled as failed and the rest go on; a database outage raises
    (the cursor keeps what was written down before it).
    """
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    with database.connection() as conn:
        claimed = _claim(conn, run_id, chunk, now, today)
        if isinstance(claimed, str):
            metrics.CHUNK_EXECUTIONS.labels(claimed).inc()
            if claimed == "expired":
                logger.warning(
                    "forecast run %s chunk %s not computed: its day is over", run_id, chunk
                )
            return ChunkOutcome(claimed)
        claim = claimed
        already = {
            row[0]
            for row in conn.execute(
                ALREADY_FORECAST,
                {
                    "accounts": claim.account_ids[claim.settled :],
                    "day": claim.for_day,
                    "days": DEFAULT_HORIZON_DAYS,
                    "model": DEFAULT_MODEL,
                    "since": claim.started_at,
                },
            )
        }
    cursor = _Cursor(database, run_id, chunk, claim, already, clock)
    if already and on_skipped is not None:
        on_skipped(len(already))

    def settle(account_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
        cursor.settle(account_id, outcome)
        if on_done is not None:
            on_done(account_id, outcome)

    def to_compute() -> Iterator[uuid.UUID]:
        deadline = None if budget_seconds is None else clock() + budget_seconds
        for account_id in cursor.pending:
            if cursor.lost:
                return
            if account_id in already:
                continue
            if deadline is not None and clock() >= deadline:
                return
            yield account_id

    forecasts.run_all(database, to_compute(), now, on_done=settle)
    cursor.checkpoint()
    state: ChunkState
    if cursor.lost:
        state = "superseded"
    elif cursor.complete:
        state = "done"
        if finish_if_complete(database, run_id, datetime.now(UTC)):
            logger.info("forecast run %s finished", run_id)
    else:
        state = "unfinished"
    metrics.CHUNK_EXECUTIONS.labels(state).inc()
    return ChunkOutcome(
        state,
        cursor.totals["succeeded"],
        cursor.totals["failed"],
        cursor.totals["skipped"],
        cursor.alerts,
    )


def _claim(
    conn: psycopg.Connection, run_id: int, chunk: int, now: datetime, today: date
) -> _Claim | ChunkState:
    """Claim the chunk for a new execution, or say why not."""
    row = conn.execute(
        CLAIM_CHUNK, {"run": run_id, "chunk": chunk, "now": now, "today": today}
    ).fetchone()
    if row is not None:
        return _Claim(*row)
    standing = conn.execute(CHUNK_STANDING, {"run": run_id, "chunk": chunk}).fetchone()
    if standing is None:
        return "gone"
    done, for_day = standing
    if done:
        return "already_done"
    return "expired" if for_day != today else "gone"
