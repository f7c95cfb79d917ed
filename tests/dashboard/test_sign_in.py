"""Accounts for people: signup, sign-in, sessions, sign-out, password changes, throttling."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from api import close_app, create_app
from tests.support import dashboard as ui
from tests.support.log_capture import captured
from timo_hub.people import sign_in_throttle, store
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

LOGIN_FAILED = "That email and password do not match an account."


def _page_text(answer: object) -> str:
    text: str = answer.get_data(as_text=True)  # type: ignore[attr-defined]
    # Every page carries a fresh CSRF token; everything else must be the same.
    return re.sub(r'name="csrf_token" value="[^"]+"', "", text)


def test_signup_opens_a_free_account_with_its_owner_signed_in(
    client: FlaskClient, runtime: Runtime
) -> None:
    email = ui.sign_up(client)
    overview = client.get("/dashboard")
    assert overview.status_code == 200
    assert "Free" in overview.get_data(as_text=True)
    with runtime.database.connection() as conn:
        user = store.find_user_by_email(conn, email)
        assert user is not None and user.role == "owner"
        assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
        plan, keys = conn.execute(
            "SELECT a.plan, (SELECT count(*) FROM api_keys k WHERE k.account_id = a.id) "
            "FROM accounts a WHERE a.id = %s",
            (user.account_id,),
        ).fetchone()
    # No key is made behind the owner's back: the first one is made, and shown, on the page.
    assert (plan, keys) == ("free", 0)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short pass", "at least 12 characters"),
        ("qwerty123456", "most common"),
        ("password2024!", "most common"),
        ("qwertyqwerty", "most common"),
        ("aaaaaaaaaaaaaaaa", "single character"),
    ],
)
def test_signup_refuses_weak_passwords(client: FlaskClient, password: str, why: str) -> None:
    answer = ui.post_form(client, "/signup", {"email": ui.new_email(), "password": password})
    assert answer.status_code == 422
    assert why in answer.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302  # nobody signed in


def test_signup_refuses_a_password_made_of_the_email(client: FlaskClient) -> None:
    answer = ui.post_form(
        client,
        "/signup",
        {"email": "margaret.hamilton@example.com", "password": "margaret.hamilton99"},
    )
    assert answer.status_code == 422
    assert "must not contain your email" in answer.get_data(as_text=True)


def test_signup_with_a_taken_email_says_so_without_signing_in(
    client: FlaskClient, app: Flask
) -> None:
    email = ui.sign_up(client)
    other = app.test_client()
    answer = ui.post_form(other, "/signup", {"email": email.upper(), "password": ui.PASSWORD})
    assert answer.status_code == 422
    assert "exists" in answer.get_data(as_text=True)
    assert other.get("/dashboard").status_code == 302


def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: FlaskClient, app: Flask
) -> None:
    email = ui.sign_up(client)
    wrong_password = ui.sign_in(app.test_client(), email, "not the password at all")
    unknown_email = ui.sign_in(app.test_client(), "nobody@example.com", "not the password at all")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert LOGIN_FAILED in wrong_password.get_data(as_text=True)
    # The same page, but for the email echoed back in its field.
    assert _page_text(wrong_password).replace(email, "EMAIL") == _page_text(unknown_email).replace(
        "nobody@example.com", "EMAIL"
    )


def test_session_cookie_is_httponly_and_samesite_lax(client: FlaskClient) -> None:
    answer = client.get("/login")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("timo_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development serves plain http on 127.0.0.1


def test_session_cookie_is_secure_in_production(runtime: Runtime, settings: Settings) -> None:
    production = settings.model_copy(
        update={"env": "production", "secret_key": "s" * 40, "key_pepper": settings.key_pepper}
    )
    app = create_app({"SETTINGS": production, "TESTING": True})
    try:
        cookie = app.test_client().get("/login").headers["Set-Cookie"]
    finally:
        close_app(app)
    # `__Host-`: no sibling subdomain or plain-http page can plant a session in the browser.
    assert cookie.startswith("__Host-timo_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie


def test_signing_in_gives_a_new_session_id(client: FlaskClient, app: Flask) -> None:
    """Session fixation: a session id planted before sign-in must not become a signed-in one."""
    email = ui.sign_up(app.test_client())
    client.get("/login")
    planted = ui.session_cookie(client)
    assert planted is not None
    assert ui.sign_in(client, email).status_code == 303
    assert ui.session_cookie(client) != planted
    attacker = app.test_client()
    attacker.set_cookie("timo_session", planted)
    assert attacker.get("/dashboard").status_code == 302


def test_sign_out_ends_the_session_on_the_server(client: FlaskClient, app: Flask) -> None:
    ui.sign_up(client)
    stolen = ui.session_cookie(client)
    assert stolen is not None
    answer = ui.post_form(client, "/logout", {}, page="/dashboard")
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    assert client.get("/dashboard").status_code == 302
    replay = app.test_client()
    replay.set_cookie("timo_session", stolen)
    assert replay.get("/dashboard").status_code == 302
    assert client.get("/logout").status_code == 405  # signing out takes a form, not a link


def test_a_password_change_ends_every_other_session(app: Flask) -> None:
    here, elsewhere = app.test_client(), app.test_client()
    email = ui.sign_up(here)
    assert ui.sign_in(elsewhere, email).status_code == 303
    new_password = "a completely different passphrase"
    answer = ui.post_form(
        here,
        "/dashboard/password",
        {"current_password": ui.PASSWORD, "password": new_password},
    )
    assert answer.status_code == 303
    assert here.get("/dashboard").status_code == 200
    assert elsewhere.get("/dashboard").status_code == 302
    assert ui.sign_in(app.test_client(), email).status_code == 401
    assert ui.sign_in(app.test_client(), email, new_password).status_code == 303


def test_a_password_change_needs_the_current_password(client: FlaskClient) -> None:
    ui.sign_up(client)
    answer = ui.post_form(
        client,
        "/dashboard/password",
        {"current_password": "not my password", "password": "another long passphrase"},
    )
    assert answer.status_code == 422
    assert "current password is not right" in answer.get_data(as_text=True)


def _client_at(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failed_sign_ins_are_throttled_per_email_and_address_without_locking_others_out(
    app: Flask,
) -> None:
    email = ui.sign_up(app.test_client())
    other_email = ui.sign_up(app.test_client())
    guesser = _client_at(app, "203.0.113.7")
    for _ in range(sign_in_throttle.PAIR_LIMIT):
        assert ui.sign_in(guesser, email, "wrong guess number x").status_code == 401
    # Now even the right password is refused from there: guessing learns nothing more.
    throttled = ui.sign_in(guesser, email)
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= sign_in_throttle.WINDOW_SECONDS
    assert "Too many failed sign-ins" in throttled.get_data(as_text=True)
    # The owner at their own address is not locked out, nor is another account from there.
    assert ui.sign_in(_client_at(app, "198.51.100.1"), email).status_code == 303
    assert ui.sign_in(_client_at(app, "203.0.113.7"), other_email).status_code == 303


def test_an_address_guessing_many_accounts_is_throttled_alone(app: Flask) -> None:
    victim = ui.sign_up(app.test_client())
    spray = _client_at(app, "203.0.113.9")
    for n in range(sign_in_throttle.ADDRESS_LIMIT):
        assert ui.sign_in(spray, f"target{n}@example.com", "password guess x").status_code == 401
    assert ui.sign_in(spray, victim).status_code == 429
    assert ui.sign_in(_client_at(app, "198.51.100.2"), victim).status_code == 303


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(app: Flask) -> None:
    email = ui.sign_up(app.test_client())
    client = app.test_client()
    assert client.get("/dashboard/usage?period=7d").headers["Location"] == (
        "/login?next=/dashboard/usage?period%3D7d"
    )
    answer = ui.post_form(
        client, "/login?next=/dashboard/usage", {"email": email, "password": ui.PASSWORD}
    )
    assert answer.headers["Location"] == "/dashboard/usage"
    for target in ("https://evil.example/", "//evil.example/dashboard", "/\\evil.example"):
        visitor = app.test_client()
        answer = ui.post_form(
            visitor, f"/login?next={target}", {"email": email, "password": ui.PASSWORD}
        )
        assert answer.headers["Location"] == "/dashboard", target


@pytest.fixture
def invited(run: object, runtime: Runtime) -> Iterator[tuple[str, str]]:
    result = run(
        "accounts", "create", "--email", "ops-made@example.com", "--plan", "starter", "--invite"
    )  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    link = re.search(r"(http://\S+/invitations/(\S+))", result.output)
    assert link, result.output
    yield link.group(1), link.group(2)


def test_an_invitation_link_sets_the_password_once(app: Flask, invited: tuple[str, str]) -> None:
    _, token = invited
    client = app.test_client()
    page = client.get(f"/invitations/{token}")
    assert page.status_code == 200 and "ops-made@example.com" in page.get_data(as_text=True)
    answer = ui.post_form(client, f"/invitations/{token}", {"password": ui.PASSWORD})
    assert answer.status_code == 303
    assert client.get("/dashboard").status_code == 200
    assert "Starter" in client.get("/dashboard").get_data(as_text=True)
    # Once only.
    assert app.test_client().get(f"/invitations/{token}").status_code == 404
    assert ui.sign_in(app.test_client(), "ops-made@example.com").status_code == 303


def test_an_expired_or_replaced_invitation_does_not_work(
    app: Flask, invited: tuple[str, str], run: Callable[..., Result], runtime: Runtime
) -> None:
    _, first = invited
    with runtime.database.connection() as conn:
        account_id = conn.execute(
            "SELECT id FROM accounts WHERE email = 'ops-made@example.com'"
        ).fetchone()[0]
    result = run("accounts", "invite", str(account_id))
    second = re.search(r"/invitations/(\S+)", result.output)
    assert second, result.output
    assert app.test_client().get(f"/invitations/{first}").status_code == 404
    assert app.test_client().get(f"/invitations/{second.group(1)}").status_code == 200
    with runtime.database.connection() as conn:
        conn.execute("UPDATE user_invitations SET expires_at = now() - interval '1 second'")
    assert app.test_client().get(f"/invitations/{second.group(1)}").status_code == 404
    assert app.test_client().get("/invitations/not-a-token").status_code == 404


def test_control_characters_in_an_email_are_refused_not_a_500(app: Flask) -> None:
    """The defect: PostgreSQL refuses NUL in text, so an email with one (signup's insert, or
    sign-in's lookup) answered 500."""
    for email in ("nul\x00@example.com", "bell\x07@example.com"):
        signup = ui.post_form(
            app.test_client(), "/signup", {"email": email, "password": ui.PASSWORD}
        )
        assert signup.status_code == 422, email
        login = ui.sign_in(app.test_client(), email, "some password here")
        assert login.status_code == 401, email
        assert LOGIN_FAILED in login.get_data(as_text=True)


def test_a_distributed_attack_on_one_email_does_not_keep_its_owner_out(app: Flask) -> None:
    """The defect: 11 addresses failing 5 times each reached the per-email limit, and the owner
    was refused (429) with the right password for the rest of the window, renewable at will."""
    owner = _client_at(app, "198.51.100.20")
    email = ui.sign_up(owner)  # this browser is now a known device for the email
    ui.post_form(owner, "/logout", {}, page="/dashboard")
    per_email_limit = sign_in_throttle.PERSON_LIMIT
    for n in range(per_email_limit // sign_in_throttle.PAIR_LIMIT + 1):
        attacker = _client_at(app, f"203.0.113.{100 + n}")
        for _ in range(sign_in_throttle.PAIR_LIMIT):
            ui.sign_in(attacker, email, "a wrong guess again")
    # A new browser (no device cookie) is held back, as it should be under such an attack...
    assert ui.sign_in(_client_at(app, "198.51.100.21"), email).status_code == 429
    # ...but the owner's own browser, from anywhere, is not.
    owner.environ_base["REMOTE_ADDR"] = "198.51.100.22"
    assert ui.sign_in(owner, email).status_code == 303


def test_a_forged_device_cookie_does_not_lift_the_limits(app: Flask) -> None:
    email = ui.sign_up(app.test_client())
    for n in range(sign_in_throttle.PERSON_LIMIT // sign_in_throttle.PAIR_LIMIT + 1):
        attacker = _client_at(app, f"203.0.113.{150 + n}")
        for _ in range(sign_in_throttle.PAIR_LIMIT):
            ui.sign_in(attacker, email, "a wrong guess again")
    forger = _client_at(app, "198.51.100.30")
    forger.set_cookie("timo_device", "WyJhYmMiXQ.forged", path="/login")
    assert ui.sign_in(forger, email).status_code == 429


def test_signups_are_limited_per_address(app: Flask) -> None:
    """The defect: signups were unlimited, and each costs an argon2 hash and an account."""
    for _ in range(sign_in_throttle.SIGNUP_LIMIT):
        ui.sign_up(_client_at(app, "203.0.113.200"))
    refused = ui.post_form(
        _client_at(app, "203.0.113.200"),
        "/signup",
        {"email": ui.new_email(), "password": ui.PASSWORD},
    )
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many accounts opened from this address" in refused.get_data(as_text=True)
    ui.sign_up(_client_at(app, "203.0.113.201"))  # another address is not affected


def test_an_invitation_token_reaches_no_log_line(app: Flask, invited: tuple[str, str]) -> None:
    """The defect: the access log wrote `GET /invitations/<token>` whole, and the token signs
    in as the account's owner for 72 hours."""
    _, token = invited
    with captured("api.access", "json") as access, captured("api", "plain") as app_lines:
        client = app.test_client()
        assert client.get(f"/invitations/{token}").status_code == 200
        ui.post_form(client, f"/invitations/{token}", {"password": "short"})
        logging.getLogger("api.probe").warning("failed on /invitations/%s?x=1", token)
    assert token not in access.getvalue() and access.getvalue().count("\n") == 3
    assert "/invitations/[redacted]" in access.getvalue()
    assert token not in app_lines.getvalue() and "/invitations/[redacted]" in app_lines.getvalue()


def test_a_next_with_control_characters_goes_to_the_dashboard(app: Flask) -> None:
    """The defect: a CR/LF in `next` reached the Location header: a 500 (after signing in)."""
    email = ui.sign_up(app.test_client())
    client = app.test_client()
    answer = ui.post_form(
        client, "/login?next=/dashboard%0d%0aX-Evil:%201", {"email": email, "password": ui.PASSWORD}
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard"
    assert client.get("/login?next=/dashboard%0a").headers["Location"] == "/dashboard"


def test_invitations_need_the_public_url_in_production(
    run: Callable[..., Result], runtime: Runtime, settings: Settings
) -> None:
    """A production operator would print a link to http://127.0.0.1:8000 (this machine)."""
    from click.testing import CliRunner

    from timo_hub.cli import cli

    env = {
        "TIMO_ENV": "production",
        "TIMO_HOME": str(settings.home),
        "TIMO_DATABASE_URL": settings.database_url or "",
        "TIMO_REDIS_URL": settings.redis_url or "",
        "TIMO_KEY_PEPPER": "p" * 40,
        "TIMO_SECRET_KEY": "s" * 40,
    }
    args = ["accounts", "create", "--email", "prod@example.com", "--plan", "free", "--invite"]
    refused = CliRunner().invoke(cli, args, env=env)
    assert refused.exit_code == 1 and "TIMO_PUBLIC_URL" in refused.output
    with runtime.database.connection() as conn:  # refused before anything was made
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (0,)
    made = CliRunner().invoke(cli, args, env={**env, "TIMO_PUBLIC_URL": "https://hub.example/"})
    assert made.exit_code == 0, made.output
    assert "https://hub.example/invitations/" in made.output


class _NoIds:
    log_ids = ("-", "-", "-")


def test_invitation_tokens_are_cut_on_the_access_logs_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect: production's access log (which writes lines itself, skipping the redactors)
    cut only paths starting `/invitations/`, so `GET /./invitations/<token>` was logged whole."""
    from api import access_log

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in production: ours only
    with captured("api.access", "json") as access:
        assert access_log._handlers() is not None  # the fast path, not logging's
        for path in ("/./invitations/SECRETTOKEN", "/dashboard/../invitations/SECRETTOKEN"):
            access_log.log_request("GET", path, None, 404, 0.001, _NoIds())  # type: ignore[arg-type]
    assert "SECRETTOKEN" not in access.getvalue()
    assert access.getvalue().count("/invitations/[redacted]") == 2


def test_spellings_of_one_email_are_one_person_to_the_throttle(app: Flask) -> None:
    """The defect: counts were keyed by the email's casefold, PostgreSQL finds users by lower():
    `admİn@` signed in as `admin@` on counts of its own (a fresh allowance per spelling)."""
    ui.sign_up(app.test_client(), "admin@example.com")
    guesser = _client_at(app, "203.0.113.60")
    for _ in range(sign_in_throttle.PAIR_LIMIT):
        assert ui.sign_in(guesser, "admin@example.com", "wrong guess here").status_code == 401
    for spelling in ("ADMIN@example.com", "adm\u0130n@example.com", " admin@example.com"):
        assert ui.sign_in(guesser, spelling, ui.PASSWORD).status_code == 429, spelling


def test_a_look_alike_account_gives_no_device_mark_for_its_twin(app: Flask) -> None:
    """The defect: `\ufb06ella@` (a ligature) is another account to PostgreSQL but was the same
    email to the throttle, so signing in as it gave a device cookie that lifted the limits on
    `stella@`'s sign-ins."""
    ui.sign_up(app.test_client(), "stella@example.com")
    attacker = _client_at(app, "203.0.113.70")
    ui.sign_up(attacker, "\ufb06ella@example.com")  # a known device of the twin
    ui.post_form(attacker, "/logout", {}, page="/dashboard")
    for n in range(sign_in_throttle.PERSON_LIMIT // sign_in_throttle.PAIR_LIMIT + 1):
        other = _client_at(app, f"203.0.113.{80 + n}")
        for _ in range(sign_in_throttle.PAIR_LIMIT):
            ui.sign_in(other, "stella@example.com", "a wrong guess again")
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.99"
    assert ui.sign_in(attacker, "stella@example.com", ui.PASSWORD).status_code == 429


def test_a_page_in_flight_does_not_bring_a_signed_out_session_back(
    app: Flask, runtime: Runtime
) -> None:
    """The defect: every signed-in answer re-SET its session in Redis, so a page that began
    before a sign-out (another tab, a stolen cookie's request) recreated it as it ended."""
    client = app.test_client()
    ui.sign_up(client)
    cookie = ui.session_cookie(client)
    assert cookie is not None
    interface = app.session_interface
    with app.test_request_context("/dashboard", headers={"Cookie": f"timo_session={cookie}"}):
        from flask import request

        in_flight = interface.open_session(app, request)
        assert in_flight is not None and in_flight.get("user_id")
        ui.post_form(client, "/logout", {}, page="/dashboard")  # meanwhile, signed out
        answer = app.response_class("page")
        interface.save_session(app, in_flight, answer)
    assert list(runtime.redis.scan_iter("timo:session:*")) == []
    assert "timo_session=;" in answer.headers["Set-Cookie"]  # and the cookie is dropped
    replay = app.test_client()
    replay.set_cookie("timo_session", cookie)
    assert replay.get("/dashboard").status_code == 302


def test_password_change_guesses_are_limited_per_user_and_spare_sign_in(app: Flask) -> None:
    """The defect: a stolen session rotating addresses guessed the current password 5 times per
    address without end, and its failures used up the owner's per-email sign-in allowance."""
    client = _client_at(app, "203.0.113.40")
    email = ui.sign_up(client)
    for n in range(sign_in_throttle.PASSWORD_CHANGE_LIMIT):
        client.environ_base["REMOTE_ADDR"] = f"203.0.113.{41 + n}"
        answer = ui.post_form(
            client,
            "/dashboard/password",
            {"current_password": f"guess {n} is wrong", "password": "a brand new passphrase"},
        )
        assert answer.status_code == 422
    client.environ_base["REMOTE_ADDR"] = "203.0.113.50"
    refused = ui.post_form(
        client,
        "/dashboard/password",
        {"current_password": ui.PASSWORD, "password": "a brand new passphrase"},
    )
    assert refused.status_code == 429
    assert ui.sign_in(_client_at(app, "198.51.100.60"), email).status_code == 303
