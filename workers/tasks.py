"""Thin Celery tasks: each names itself explicitly and calls a plain function."""

from __future__ import annotations

from celery import current_app, shared_task

from timo_hub.heartbeat import record_heartbeat


@shared_task(name="timo.workers.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Stamp the worker heartbeat that `/api/v1/health` reports."""
    return record_heartbeat(current_app.runtime.redis).isoformat()
