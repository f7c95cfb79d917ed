"""Counters of webhook delivery (exposed to Prometheus by the worker and web metrics endpoints)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ATTEMPTS = Counter(
    "timo_webhook_attempts",
    "Webhook delivery attempts, by outcome: succeeded, retrying, failed (given up or disabled)",
    ["outcome"],
)
ENDPOINTS_DISABLED = Counter(
    "timo_webhook_endpoints_disabled",
    "Webhook endpoints disabled (they answered 410 Gone or failed every attempt for 5 days)",
)
ATTEMPT_SECONDS = Histogram(
    "timo_webhook_attempt_seconds",
    "How long webhook attempts took, answered or not",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
QUOTA_EVENTS_CAUGHT_UP = Counter(
    "timo_webhook_quota_events_caught_up",
    "Quota events recorded by the catch-up run because no web process had (one was killed)",
)
