"""`GET /docs`: the public API page with a "Try it out" console, served by the app itself.

Everything the page needs (HTML, CSS, JavaScript) is in `static/` and served from this app, so it
works offline and behind any firewall. The endpoint reference and the console's forms are built
in the browser from `/api/v1/openapi.json`, so the page documents exactly what the API enforces.
The key a visitor pastes stays in the page's memory: it is sent only to this server, in the
`Authorization` header of the calls the visitor runs.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"
# Only this origin: no CDN, no inline script, and nothing can frame the page.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

blueprint = Blueprint("docs", __name__, static_folder=str(STATIC), static_url_path="/docs/static")


@blueprint.get("/docs")
def docs_page() -> Response:
    """The API page and console."""
    response = send_from_directory(STATIC, "index.html", max_age=60)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
