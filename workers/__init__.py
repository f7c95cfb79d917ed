"""Celery workers and beat: the app, thin tasks and the beat schedule.

The logic a task runs lives in `events/`, `analytics/` or `timo_hub/` and is tested without Celery.
"""
