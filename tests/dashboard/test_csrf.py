"""CSRF: every form POST of the dashboard is refused without its session's token."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import dashboard as ui
from timo_hub.platform.runtime import Runtime


def _dashboard_posts(app: Flask) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("dashboard.") and "POST" in (rule.methods or ()):
            paths.append(re.sub(r"<[^>]+>", "00000000-0000-0000-0000-000000000000", rule.rule))
    return sorted(paths)


def test_every_dashboard_post_is_listed_here(app: Flask) -> None:
    # A new form must be added to the refusal tests below by whoever adds it.
    assert _dashboard_posts(app) == [
        "/dashboard/keys",
        "/dashboard/keys/00000000-0000-0000-0000-000000000000/revoke",
        "/dashboard/password",
        "/invitations/00000000-0000-0000-0000-000000000000",
        "/login",
        "/logout",
        "/signup",
    ]


@pytest.mark.parametrize("token", [None, "forged", "from-another-session"])
def test_a_post_without_this_sessions_token_is_refused(
    app: Flask, client: FlaskClient, runtime: Runtime, token: str | None
) -> None:
    ui.sign_up(client)
    if token == "from-another-session":
        token = ui.csrf_token(app.test_client(), "/login")
    for path in _dashboard_posts(app):
        data = {"name": "sneaky", "email": "x@example.com", "password": "p" * 20}
        if token is not None:
            data["csrf_token"] = token
        answer = client.post(path, data=data)
        assert answer.status_code == 400, path
        assert "Form refused" in answer.get_data(as_text=True)
    # Nothing happened: still signed in, no key made.
    assert client.get("/dashboard").status_code == 200
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_a_cross_site_key_creation_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    """The defect this guards: a page elsewhere posting to /dashboard/keys with the victim's
    cookie would mint a key (its secret then shown to the victim only, but still a write)."""
    ui.sign_up(client)
    answer = client.post(
        "/dashboard/keys", data={"name": "evil"}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 400
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
