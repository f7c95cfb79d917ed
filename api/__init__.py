"""The HTTP API: the Flask app factory, the request gate, the `/api/v1` blueprint, errors.

`create_app()` is what gunicorn serves (`api:create_app()`). It builds nothing at import time.
This package holds only HTTP: the rules it applies live in the domain packages (`timo_hub.accounts`,
`timo_hub.quota`, `timo_hub.usage`), `events` and `analytics`, which never import `api`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from api import authentication, current, gate, http_metrics, problems
from api.metering import EXTENSION as EVENTS
from timo_hub.accounts import key_format
from timo_hub.people import service as people
from timo_hub.platform import logs
from timo_hub.platform.embedded import resolve_services
from timo_hub.platform.logs import configure_logging
from timo_hub.platform.runtime import build_runtime
from timo_hub.platform.settings import Settings


class _ModelOrderJSON(DefaultJSONProvider):
    """Flask's JSON, with keys in the order the response models give them (not sorted)."""

    sort_keys = False


# OWASP API4: no body we accept comes near this; larger ones are refused with 413 unread.
MAX_BODY_BYTES = 16 * 1024


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then `config` (which may hold `SETTINGS`)."""
    overrides = dict(config or {})
    settings = overrides.pop("SETTINGS", None) or Settings.from_env()
    settings = resolve_services(settings)

    configure_logging(settings)
    logs.redact_with(key_format.redact)  # no API key reaches a log line whole
    logs.redact_with(people.redact_invitation_links)  # nor a sign-in link's token
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    app.config.update(overrides)
    app.json = _ModelOrderJSON(app)

    runtime = build_runtime(settings)
    current.init_app(app, runtime)
    gate.init_app(app, runtime)
    http_metrics.init_app(app)
    problems.init_app(app)

    from api import dashboard, docs
    from api.v1 import blueprint

    app.register_blueprint(blueprint)
    app.register_blueprint(docs.blueprint)
    dashboard.init_app(app, runtime)
    if settings.trusted_proxies:
        # Behind a proxy every caller would share its address (and the failed-authentication
        # throttle would lump them together); believe exactly as many hops as are ours.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


def close_app(app: Flask) -> None:
    """Release what `create_app` opened (connections, the cache listener); for tests and tools."""
    authenticator: authentication.Authenticator = app.extensions[authentication.EXTENSION]
    authenticator.cache.close()
    app.extensions[gate.QUOTA_EXTENSION].close()
    app.extensions[gate.WATCH_EXTENSION].close()
    app.extensions[gate.DELIVERIES_EXTENSION].close()
    app.extensions[EVENTS].close()
    app.extensions[current.EXTENSION].close()
