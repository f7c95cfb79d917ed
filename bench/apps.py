"""The two baselines of `hot_path.py`, served by gunicorn exactly like the product.

`bare_app()`: a Flask JSON endpoint with nothing in front of it. `limited_app()`: the same endpoint
behind Flask-Limiter with Redis storage, what a Flask user would otherwise reach for (it only rate
limits: no authentication, no durable ledger). Both read their Redis URL from `BENCH_REDIS_URL`.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify


def _payload() -> dict[str, object]:
    return {"limit": 1000000, "used": 1, "remaining": 999999, "reset": 1798761600}


def bare_app() -> Flask:
    """A bare JSON endpoint."""
    app = Flask("bare")

    @app.get("/bare")
    def bare():  # type: ignore[no-untyped-def]
        return jsonify(_payload())

    return app


def limited_app() -> Flask:
    """The same endpoint behind Flask-Limiter on Redis."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = Flask("limited")
    storage = os.environ["BENCH_REDIS_URL"].replace("unix://", "redis+unix://", 1)
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage, headers_enabled=True)

    @app.get("/bare")
    @limiter.limit("100000000 per month")
    def bare():  # type: ignore[no-untyped-def]
        return jsonify(_payload())

    return app
