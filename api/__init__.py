"""The HTTP API: a Flask app factory, the `/api/v1` blueprint, error mapping.

`create_app()` is what gunicorn serves (`api:create_app()`). It builds nothing at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from api import access_log, authentication, http_metrics, metering, problems, request_ids
from api import current as app_runtime
from api.quota import enforcement as quota
from timo_hub.platform.embedded import resolve_services
from timo_hub.platform.logs import configure_logging
from timo_hub.platform.runtime import build_runtime
from timo_hub.platform.settings import Settings

# OWASP API4: no body we accept comes near this; larger ones are refused with 413 unread.
MAX_BODY_BYTES = 16 * 1024


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then `config` (which may hold `SETTINGS`)."""
    overrides = dict(config or {})
    settings = overrides.pop("SETTINGS", None) or Settings.from_env()
    settings = resolve_services(settings)

    configure_logging(settings.env)
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    app.config.update(overrides)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    runtime = build_runtime(settings)
    app_runtime.init_app(app, runtime)
    authentication.init_app(app, runtime)
    quota.init_app(app, runtime)
    metering.init_app(app, runtime)
    request_ids.init_app(app)
    access_log.init_app(app)
    http_metrics.init_app(app)
    problems.init_app(app)

    from api import docs
    from api.v1 import blueprint

    app.register_blueprint(blueprint)
    app.register_blueprint(docs.blueprint)
    return app


def close_app(app: Flask) -> None:
    """Release what `create_app` opened (connections, the cache listener); for tests and tools."""
    app.extensions[authentication.EXTENSION].cache.close()
    app.extensions[quota.EXTENSION].close()
    app.extensions[metering.EXTENSION].close()
    app.extensions[app_runtime.EXTENSION].close()
