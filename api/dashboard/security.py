"""The dashboard's defences: CSRF tokens on every POST, and the headers every page carries.

Every state-changing request here is a form POST, and every one is checked before its view runs
(Flask-WTF's signed token, bound to the session), so no view can forget. With `SameSite=Lax`
cookies a cross-site form cannot even carry the session; the token covers the rest (a sign-in
form posted from another site, an old browser).
"""

from __future__ import annotations

from flask import Flask, Response, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError

from api.dashboard import blueprint, sessions

# Only this origin: scripts, styles and data; forms post back here; nothing may frame a page.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Pages show a key once and per-account usage: never kept by a browser or a proxy.
    "Cache-Control": "no-store",
    # An invitation page's URL holds its token: no Referer may carry it, even to this site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CSRF_FIELD = "csrf_token"


def init_app(app: Flask) -> None:
    """CSRF settings (the token reaches templates as `{{ csrf_token() }}`)."""
    # A token lives as long as its session (which expires by itself): a page left open for a
    # day still signs out, instead of refusing the form and leaving the session signed in.
    app.config.update(WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_FIELD_NAME=CSRF_FIELD)


@blueprint.app_template_global("csrf_token")
def csrf_token() -> str:
    """The session's CSRF token, signed, for a form's hidden field."""
    return generate_csrf()


@blueprint.before_request
def check_csrf() -> ResponseReturnValue | None:
    """Refuse any POST without this session's valid CSRF token (400, before the view runs).

    First, a page whose session could not be opened (Redis down) is a 503, whatever its method.
    """
    sessions.raise_if_unavailable()
    if request.method != "POST":
        return None
    # A second tab's sign-out, or a sign-in from a second tab, after the first one finished:
    # there is nothing left to do, so nothing to refuse.
    if request.path == "/logout" and not sessions.has_user():
        return redirect(url_for("dashboard.login"), 303)
    if request.path in ("/login", "/signup") and sessions.has_user():
        return redirect(url_for("dashboard.overview"), 303)
    try:
        validate_csrf(request.form.get(CSRF_FIELD))
    except ValidationError as exc:
        raise CSRFError(str(exc.args[0]) if exc.args else "The CSRF token is invalid.") from None
    return None


@blueprint.after_request
def add_page_headers(response: Response) -> Response:
    """The security headers of every dashboard answer (pages, redirects, errors)."""
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
