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
        "/dashboard/alerts/thresholds",
        "/dashboard/alerts/webhooks",
        "/dashboard/alerts/webhooks/00000000-0000-0000-0000-000000000000/delete",
        "/dashboard/alerts/webhooks/00000000-0000-0000-0000-000000000000/deliveries/"
        "00000000-0000-0000-0000-000000000000/replay",
        "/dashboard/alerts/webhooks/00000000-0000-0000-0000-000000000000/enable",
        "/dashboard/alerts/webhooks/00000000-0000-0000-0000-000000000000/rotate",
        "/dashboard/alerts/webhooks/00000000-0000-0000-0000-000000000000/test",
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
        if path in ("/login", "/signup"):
            # Signed in already (a second tab's form): sent on, nothing done.
            assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard"
            continue
        assert answer.status_code == 400, path
        assert "Form refused" in answer.get_data(as_text=True)
    # Nothing happened: still signed in, no key made.
    assert client.get("/dashboard").status_code == 200
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_signing_in_or_up_needs_the_token_too(app: Flask, runtime: Runtime) -> None:
    """Login CSRF: a form elsewhere signing the visitor in as the attacker."""
    email = ui.sign_up(app.test_client())
    for path, data in (
        ("/login", {"email": email, "password": ui.PASSWORD}),
        ("/signup", {"email": ui.new_email(), "password": ui.PASSWORD}),
    ):
        visitor = app.test_client()
        answer = visitor.post(path, data={**data, "csrf_token": "forged"})
        assert answer.status_code == 400, path
        assert visitor.get("/dashboard").status_code == 302
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


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
