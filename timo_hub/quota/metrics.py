"""Counters of quota bookkeeping (exposed to Prometheus by the web and worker metrics endpoints)."""

from __future__ import annotations

from prometheus_client import Counter

COUNTERS_REBUILT = Counter(
    "timo_quota_counters_rebuilt",
    "Redis quota counters seeded by a web process (a new month, or a counter Redis lost)",
)
REBUILD_WAITS_ABANDONED = Counter(
    "timo_quota_rebuild_waits_abandoned",
    "Calls answered 503 because their account's counter was still being rebuilt",
)
ADMISSIONS_EXPIRED = Counter(
    "timo_quota_admissions_expired",
    "Calls answered 503 because Redis ran their admission after its deadline (nothing counted)",
)
LATE_ADMISSIONS_TAKEN_BACK = Counter(
    "timo_quota_late_admissions_taken_back",
    "Calls counted by Redis after their caller had given up and answered 503, then uncounted",
)
ADMISSIONS_UNCERTAIN = Counter(
    "timo_quota_admissions_uncertain",
    "Calls answered 503 whose admission may have been counted (connection cut after sending)",
)
CALLS_REFUNDED = Counter(
    "timo_quota_calls_refunded",
    "Admitted calls taken back because their answer does not count (the handler answered 503)",
)
RECONCILE_RUNS = Counter("timo_quota_reconcile_runs", "Scheduled quota reconcile runs completed")
COUNTERS_REPAIRED = Counter(
    "timo_quota_counters_repaired",
    "Redis quota counters that reconcile found below what PostgreSQL proves, and raised",
)
CALLS_RESTORED = Counter(
    "timo_quota_calls_restored",
    "Calls added to Redis quota counters by reconcile (the sum of every repair's difference)",
)
LEASES_GRANTED = Counter(
    "timo_quota_leases_granted",
    "Batches of a busy account's calls counted in Redis at once, to admit in-process",
)
LEASED_CALLS_RETURNED = Counter(
    "timo_quota_leased_calls_returned",
    "Calls counted in a lease but not used, returned to their counter when the lease ended",
)
DEAD_LEASES_ENDED = Counter(
    "timo_quota_dead_leases_ended",
    "Leases of web processes gone without ending them, ended by reconcile",
)
