"""Driving the dashboard's forms from a test client, as a browser would (tokens from the page)."""

from __future__ import annotations

import itertools
import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

PASSWORD = "correct horse battery staple"
_counter = itertools.count()
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def new_email() -> str:
    """An email no other test in this run uses."""
    return f"person{next(_counter)}@example.com"


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on `path` (which opens a session if there is none)."""
    page = client.get(path)
    found = _TOKEN.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path} ({page.status_code})"
    return found.group(1)


def post_form(
    client: FlaskClient, path: str, data: dict[str, str], page: str | None = None
) -> TestResponse:
    """POST `data` to `path` with the token of the form on `page` (default: `path`)."""
    token = csrf_token(client, page or path)
    return client.post(path, data={**data, "csrf_token": token})


def sign_up(client: FlaskClient, email: str | None = None, password: str = PASSWORD) -> str:
    """Sign up (and so sign in) a new person; their email."""
    email = email or new_email()
    answer = post_form(client, "/signup", {"email": email, "password": password})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return email


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> TestResponse:
    """Submit the sign-in form."""
    return post_form(client, "/login", {"email": email, "password": password})


def create_key(client: FlaskClient, name: str = "CI") -> str:
    """Create a key on the Settings page; the secret the page shows once."""
    answer = post_form(client, "/dashboard/keys", {"name": name})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    page = client.get("/dashboard/keys").get_data(as_text=True)
    found = re.search(r'id="new-key-secret">([^<]+)<', page)
    assert found, "the new key is not on the page"
    return found.group(1)


def session_cookie(client: FlaskClient) -> str | None:
    """The value of the client's session cookie, if it has one."""
    cookie = client.get_cookie("timo_session")
    return cookie.value if cookie else None
