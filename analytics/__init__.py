"""Usage statistics and quota forecasts: pure functions over pandas data.

No Flask, Celery or psycopg imports: callers hand in DataFrames and get frozen dataclasses back.
"""
