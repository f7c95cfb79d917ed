"""Compare each account's Redis counter with what PostgreSQL proves, and raise the ones behind.

PostgreSQL proves two lower bounds of the true count: the ledger (every process's written tallies)
and the event log's count of admitted calls. A correct counter is never below either, so raising
a counter to the larger of them can only repair, never change a correct count, with or without
traffic. Nothing else is touched:

* the ledger is never raised to Redis (web processes still hold tallies they will add on top, so
  the copy would count those calls twice);
* a counter that is above both is normal (tallies and events in flight) and is left alone;
* a missing counter, or one from another Redis server life, is left to the rebuild its next call
  starts (`timo_hub.quota.rebuild`): only that can add the tallies still held in memory.

What this repairs is a counter lowered within one server life (an operator's `SET`, a bug), and
a counter short of events whose web process was killed before it wrote its tally.

Before comparing, it ends the leases (`timo_hub.quota.leases`) of web processes that are gone
without ending them (killed): their unused calls would otherwise hold the counter high for the
rest of the month. What goes back is what Redis has on record as unused, which the process kept
at or below what it had really not used (`timo_hub.quota.leases`): the counter may stay a few
calls high, never low.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from timo_hub.accounts import store
from timo_hub.platform.redis_client import group_by_node
from timo_hub.platform.runtime import Runtime
from timo_hub.quota import metrics
from timo_hub.quota.admission import Admitter, RunIds, counter_keys, read_counters
from timo_hub.quota.counting import counted_calls
from timo_hub.quota.ledger import period_usage, prune_window_usage
from timo_hub.quota.period import Period

# A web process silent this long is taken for gone and its leases are ended. Much longer than a
# rebuild's patience (`rebuild.WRITER_LIVENESS_SECONDS`): a process only late with its beat must
# never lose a lease it may still be using; a dead one's unused calls wait a minute more.
DEAD_LEASE_SECONDS = 60.0
LIVE_WRITERS = """
SELECT writer_id FROM quota_writers WHERE seen_at > now() - make_interval(secs => %(live)s)
"""
STALE_WRITERS = "DELETE FROM quota_writers WHERE seen_at < now() - interval '1 day'"


class CounterState(enum.StrEnum):
    """How a counter stands against PostgreSQL's proof."""

    IN_STEP = "in_step"
    AHEAD = "ahead"
    """Above both durable counts: calls whose tallies and events are still in flight."""
    BEHIND = "behind"
    """Below what PostgreSQL proves: raised by repair."""
    MISSING = "missing"
    """Rebuilt by the next call for the account."""
    FOREIGN = "foreign"
    """Seeded in another Redis server life (a restart or failover): rebuilt by the next call."""


@dataclass(frozen=True)
class CounterCheck:
    """One account's counter against its durable counts for a period."""

    account_id: uuid.UUID
    redis: int | None
    ledger: int
    log: int
    state: CounterState
    takebacks: int = 0
    """Calls taken back from the counter when it was read (see `Admitter.raise_to`)."""

    @property
    def proven(self) -> int:
        """The count PostgreSQL proves: the larger durable one."""
        return max(self.ledger, self.log)


@dataclass(frozen=True)
class Repair:
    """A counter raised: from what to what."""

    account_id: uuid.UUID
    before: int
    after: int


def check(runtime: Runtime, period: Period) -> list[CounterCheck]:
    """Every account with usage in `period` in Redis or PostgreSQL, with its state."""
    with runtime.database.connection() as conn:
        accounts = [a.id for a in store.list_accounts(conn)]
    # Counters before and after the durable counts: a refund lowers the ledger and then the
    # counter, so a counter that had a call taken back meanwhile may be compared with a proof
    # that still counts that call. Such a counter is left to the next run.
    before = read_counters(runtime.redis, accounts, period)
    with runtime.database.connection() as conn:
        ledger = period_usage(conn, period.first_day)
        logged = counted_calls(conn, period.first_day, period.end.date())
    run_ids = RunIds(runtime.redis)
    counters = read_counters(runtime.redis, accounts, period)
    checks = []
    for account_id in accounts:
        reading = counters[account_id]
        counter = reading.used
        stored, in_log = ledger.get(account_id, 0), logged.get(account_id, 0)
        if counter is None and stored == 0 and in_log == 0:
            continue
        if reading.takebacks != before[account_id].takebacks:
            continue
        proven = max(stored, in_log)
        if counter is None:
            state = CounterState.MISSING
        elif reading.run_id != run_ids.of(counter_keys(account_id, period).counter):
            state = CounterState.FOREIGN
        elif counter < proven:
            state = CounterState.BEHIND
        elif counter > proven:
            state = CounterState.AHEAD
        else:
            state = CounterState.IN_STEP
        checks.append(CounterCheck(account_id, counter, stored, in_log, state, reading.takebacks))
    return checks


def repair(runtime: Runtime, period: Period, checks: list[CounterCheck]) -> list[Repair]:
    """Raise every counter that is behind to what PostgreSQL proves; return what changed.

    Each raise is conditional in Redis (`Admitter.raise_to`): a counter that moved meanwhile is
    raised only if it is still below, and one replaced by another server life, or with a call
    taken back since it was read, is left alone.
    """
    admitter = Admitter(runtime.redis, fence_token="reconcile")
    run_ids = RunIds(runtime.redis)
    repairs = []
    for item in checks:
        if item.state is not CounterState.BEHIND:
            continue
        run_id = run_ids.of(counter_keys(item.account_id, period).counter)
        changed = admitter.raise_to(item.account_id, period, item.proven, run_id, item.takebacks)
        if changed is not None and changed[0] != changed[1]:
            repairs.append(Repair(item.account_id, *changed))
    return repairs


@dataclass(frozen=True)
class Reconciliation:
    """One reconcile run: what was checked and what was raised."""

    period: Period
    checks: list[CounterCheck]
    repairs: list[Repair]
    dead_leases_ended: int = 0


def end_dead_leases(runtime: Runtime, period: Period) -> int:
    """End every lease of `period` whose web process is gone (silent for `DEAD_LEASE_SECONDS`);
    return how many.

    A lease is only used while its process writes to PostgreSQL (`ledger.FRESH_SECONDS`), far
    inside that silence. The leases are read before the writers, so that a process that got a
    lease after the writers were read (a worker just started) is never taken for dead.
    """
    with runtime.database.connection() as conn:
        accounts = [a.id for a in store.list_accounts(conn)]
    found: dict[uuid.UUID, list[str]] = {}
    lease_keys = [counter_keys(account_id, period).leases for account_id in accounts]
    for server, positions in group_by_node(runtime.redis, lease_keys):
        for start in range(0, len(positions), 500):
            chunk = positions[start : start + 500]
            pipe = server.pipeline(transaction=False)
            for position in chunk:
                pipe.hkeys(lease_keys[position])
            for position, names in zip(chunk, pipe.execute(), strict=True):
                if names:
                    found[accounts[position]] = [raw.decode() for raw in names]
    if not found:
        return 0
    with runtime.database.connection() as conn:
        rows = conn.execute(LIVE_WRITERS, {"live": DEAD_LEASE_SECONDS})
        live = {str(row[0]) for row in rows}
    admitter = Admitter(runtime.redis, fence_token="reconcile")
    run_ids = RunIds(runtime.redis)
    ended = 0
    for account_id, names in found.items():
        keys = counter_keys(account_id, period)
        run_id = run_ids.of(keys.counter)
        for name in names:
            if name.partition(":")[0] not in live and admitter.settle(keys, name, run_id, -1) >= 0:
                ended += 1
    metrics.DEAD_LEASES_ENDED.inc(ended)
    return ended


def reconcile(runtime: Runtime, period: Period, *, dry_run: bool = False) -> Reconciliation:
    """End dead processes' leases, check every counter of `period` and raise those behind
    (`dry_run`: only check); also forget the ledger's tallies of burst windows long over.

    Burst windows are not compared: one lasts a minute, so a window lost with its counter is
    rebuilt with it (`timo_hub.quota.rebuild`), and one left a few calls high by a dead
    process's lease reopens at its end anyway.
    """
    if not dry_run:
        with runtime.database.connection() as conn:
            prune_window_usage(conn)
    ended = 0 if dry_run else end_dead_leases(runtime, period)
    checks = check(runtime, period)
    repairs = [] if dry_run else repair(runtime, period, checks)
    return Reconciliation(period, checks, repairs, ended)


def forget_departed_writers(runtime: Runtime) -> int:
    """Delete registry rows of web processes silent for a day (killed without a clean exit)."""
    with runtime.database.connection() as conn:
        return conn.execute(STALE_WRITERS).rowcount
