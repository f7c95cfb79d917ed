"""The customer dashboard: sign up and sign in, usage and forecast pages, the Settings page,
the Alerts page with the account's webhook endpoints and their delivery logs.

Server-rendered pages for people, beside the API for programs. Forms work without JavaScript;
`static/dashboard.js` only enhances (charts drawn from the tables that carry their data, a copy
button, local times). Everything is served by this app under a strict Content-Security-Policy:
no CDN, no inline script or style.

The pages read the same domain services as the API (`timo_hub.accounts`, `timo_hub.usage`, the
quota enforcer's look without counting), and are never metered: viewing the dashboard is not an
API call. A session sees only its own account: every page and form takes the account from the
signed-in user, never from the URL or the form.

Sessions live server-side in Redis (`sessions`), CSRF tokens are checked on every POST here
(`security`), and each page sets its own security headers.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from timo_hub.platform.runtime import Runtime

blueprint = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)


def init_app(app: Flask, runtime: Runtime) -> None:
    """Configure sessions and CSRF for `app` and register the pages."""
    sessions.init_app(app, runtime)
    security.init_app(app)
    display.register_filters(app)
    error_pages.init_app(app)
    app.register_blueprint(blueprint)


# Route and handler modules register themselves on the blueprint when imported.
from api.dashboard import (  # noqa: E402
    account_pages,  # noqa: F401
    display,
    error_pages,
    security,
    sessions,
    sign_in_pages,  # noqa: F401
    webhook_pages,  # noqa: F401
)
