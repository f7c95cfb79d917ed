"""Celery workers and beat: the app, thin tasks and the beat schedule.

The logic a task runs lives in `events/`, `analytics/` or the domain packages (`timo_hub.usage`)
and is tested without Celery. Imports neither `api` nor the CLI.
"""
