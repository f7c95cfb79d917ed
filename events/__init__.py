"""The event-sourced core: usage events, their publisher, the append-only store, projections.

Imports neither `api` nor `workers`.
"""
