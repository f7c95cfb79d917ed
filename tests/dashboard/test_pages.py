"""The signed-in pages: what they show, what they never show, and who may see it."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import close_app, create_app
from api.dashboard import blueprint
from tests.support import dashboard as ui
from tests.support.events import seed_calls
from timo_hub.people import store as people_store
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings, SettingsError

PAGES = (
    "/dashboard",
    "/dashboard/usage",
    "/dashboard/keys",
    "/dashboard/alerts",
    "/dashboard/plans",
    "/dashboard/password",
)
DASHBOARD = Path(blueprint.root_path)


def _account_id(runtime: Runtime, email: str) -> uuid.UUID:
    with runtime.database.connection() as conn:
        user = people_store.find_user_by_email(conn, email)
    assert user is not None
    return user.account_id


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_signed_in_session(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=/dashboard")


def test_every_page_renders_with_strict_headers(client: FlaskClient) -> None:
    ui.sign_up(client)
    for path in (*PAGES, "/login", "/signup"):
        answer = client.get(path)
        assert answer.status_code in (200, 302), path
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["Cache-Control"] == "no-store", path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_load_nothing_from_elsewhere_and_run_no_inline_code() -> None:
    for path in [*DASHBOARD.joinpath("templates").iterdir(), *_static_text_files()]:
        text = path.read_text()
        assert not re.search(r'(?:src|href|action)="(?:https?:)?//', text), path.name
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), path.name
            assert "style=" not in text and "<style" not in text, path.name
            assert not re.search(r"\son[a-z]+=", text), path.name


def _static_text_files() -> list[Path]:
    static = DASHBOARD / "static"
    return [p for p in static.rglob("*") if p.suffix in (".js", ".css") and "vendor" not in p.parts]


def test_the_chart_library_is_vendored_with_its_licence(client: FlaskClient) -> None:
    vendor = DASHBOARD / "static" / "vendor" / "uplot-1.6.32"
    assert "MIT" in (vendor / "LICENSE").read_text()
    for asset in ("uPlot.iife.min.js", "uPlot.min.css"):
        answer = client.get(f"/dashboard/static/vendor/uplot-1.6.32/{asset}")
        assert answer.status_code == 200 and len(answer.data) > 1000


def test_a_new_key_is_shown_once_and_works(client: FlaskClient) -> None:
    ui.sign_up(client)
    secret = ui.create_key(client, "CI")
    assert re.fullmatch(r"timo_live_\w+", secret)
    again = client.get("/dashboard/keys").get_data(as_text=True)
    assert secret not in again and "new-key-secret" not in again
    assert "CI" in again and secret[:14] in again  # listed by its prefix
    answer = client.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200


def test_the_one_time_key_page_has_the_warning_from_the_public_page(client: FlaskClient) -> None:
    ui.sign_up(client)
    ui.post_form(client, "/dashboard/keys", {"name": "CI"})
    page = client.get("/dashboard/keys")
    assert page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    assert "Store your API key securely! It will only be shown once." in text
    assert 'class="copy" data-copy-target="new-key-secret" hidden' in text


def test_key_names_are_checked(client: FlaskClient) -> None:
    ui.sign_up(client)
    for name, status in (("", 422), ("   ", 422), ("x" * 101, 422), ("bell\x07", 422)):
        answer = ui.post_form(client, "/dashboard/keys", {"name": name})
        assert answer.status_code == status, name
    assert "new-key-secret" not in client.get("/dashboard/keys").get_data(as_text=True)


def test_revoking_asks_first_then_the_key_is_refused(client: FlaskClient) -> None:
    ui.sign_up(client)
    secret = ui.create_key(client, "doomed")
    page = client.get("/dashboard/keys").get_data(as_text=True)
    revoke_path = re.search(r'href="(/dashboard/keys/[0-9a-f-]+/revoke)"', page)
    assert revoke_path
    confirm = client.get(revoke_path.group(1))
    assert confirm.status_code == 200 and "Revoke key “doomed”?" in confirm.get_data(as_text=True)
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/account", headers=auth).status_code == 200  # not yet
    answer = ui.post_form(client, revoke_path.group(1), {})
    assert answer.status_code == 303
    assert client.get("/api/v1/account", headers=auth).status_code == 401
    assert "revoked" in client.get("/dashboard/keys").get_data(as_text=True)


def test_a_session_sees_and_changes_only_its_own_account(app: Flask, runtime: Runtime) -> None:
    """BOLA: another account's key id, on every path that takes one, is simply not found."""
    alice, mallory = app.test_client(), app.test_client()
    ui.sign_up(alice)
    alice_secret = ui.create_key(alice, "alice-production")
    ui.sign_up(mallory)
    page = alice.get("/dashboard/keys").get_data(as_text=True)
    alice_key = re.search(r'data-key-id="([0-9a-f-]+)"', page)
    assert alice_key
    target = f"/dashboard/keys/{alice_key.group(1)}/revoke"
    assert mallory.get(target).status_code == 404
    assert ui.post_form(mallory, target, {}, page="/dashboard/keys").status_code == 404
    alice_auth = {"Authorization": f"Bearer {alice_secret}"}
    assert alice.get("/api/v1/account", headers=alice_auth).status_code == 200
    for path in PAGES:
        assert "alice-production" not in mallory.get(path).get_data(as_text=True), path
    # Nothing in a form or query names the account: there is no parameter to tamper with.
    alice_account = str(_account_id(runtime, _email_of_first_user(runtime)))
    forged = ui.post_form(mallory, "/dashboard/keys", {"name": "mine", "account_id": alice_account})
    assert forged.status_code == 303
    assert "alice" not in mallory.get("/dashboard/keys").get_data(as_text=True)
    with runtime.database.connection() as conn:
        owners = conn.execute("SELECT account_id FROM api_keys WHERE name = 'mine'").fetchall()
    assert [str(owner) for (owner,) in owners] != [alice_account]


def _email_of_first_user(runtime: Runtime) -> str:
    with runtime.database.connection() as conn:
        row = conn.execute("SELECT email FROM users ORDER BY created_at LIMIT 1").fetchone()
    assert row is not None
    return str(row[0])


def test_a_malformed_key_id_is_not_found(client: FlaskClient) -> None:
    ui.sign_up(client)
    assert client.get("/dashboard/keys/not-a-uuid/revoke").status_code == 404


def test_viewing_the_dashboard_is_never_counted(client: FlaskClient) -> None:
    ui.sign_up(client)
    secret = ui.create_key(client)
    auth = {"Authorization": f"Bearer {secret}"}
    before = client.get("/api/v1/account/quota", headers=auth).get_json()["used"]
    for _ in range(3):
        for path in PAGES:
            assert client.get(path).status_code == 200
    after = client.get("/api/v1/account/quota", headers=auth).get_json()["used"]
    assert after == before + 1  # the second quota call itself, nothing else
    overview = client.get("/dashboard").get_data(as_text=True)
    assert f"<strong>{after}</strong> of 1,000 calls used" in overview


def test_overview_shows_quota_forecast_and_accuracy(client: FlaskClient, runtime: Runtime) -> None:
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    today = datetime.now(UTC).date()
    # Sixty days of steady traffic: enough history for a forecast and its backtest.
    seed_calls(runtime, account_id, {today - timedelta(days=n): 20 for n in range(1, 61)})
    page = client.get("/dashboard")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="quota-gauge"' in text and "Resets at" in text and "UTC" in text
    assert 'id="projected-total"' in text and "80% range" in text
    assert "Quota runs out" in text and "chance this month" in text
    assert "Tested on this account&#39;s own past" in text
    assert "Recommended plan" in text
    rows = re.findall(r'<tr(?: class="today")?>\s*<td data-x="(\d+)"', text)
    first = today.replace(day=1)
    assert int(rows[0]) == int(datetime(first.year, first.month, 1, tzinfo=UTC).timestamp())
    # Yesterday's actual calls are in the month's table (when yesterday is in this month).
    if today.day > 1:
        assert 'data-y="20"' in text


def test_usage_page_shows_periods_and_breakdowns(client: FlaskClient, runtime: Runtime) -> None:
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    today = datetime.now(UTC).date()
    seed_calls(runtime, account_id, {today - timedelta(days=2): 7}, endpoint="/usage/stats")
    seed_calls(runtime, account_id, {today - timedelta(days=2): 3}, status=429)
    page = client.get("/dashboard/usage?period=7d").get_data(as_text=True)
    assert 'id="total-calls">10<' in page
    assert "/usage/stats" in page
    assert re.search(r"Rejected</span><span class=\"tile-value\">3<", page)
    assert client.get("/dashboard/usage?period=365d").status_code == 400


def test_plans_page_marks_the_current_plan(client: FlaskClient) -> None:
    ui.sign_up(client)
    text = client.get("/dashboard/plans").get_data(as_text=True)
    current = re.search(r'<tr class="current">\s*<td[^>]*>([^<]+)</td>', text)
    assert current and current.group(1) == "Free"
    for plan in ("Starter API", "$29/mo", "Developer API", "Business API", "Enterprise"):
        assert plan in text
    assert "operators" in text


def test_docs_page_links_to_the_settings_page(client: FlaskClient) -> None:
    docs = client.get("/docs").get_data(as_text=True)
    assert '<a href="/dashboard/keys">Settings page</a>' in docs


def test_vendored_files_are_byte_for_byte_what_vendor_md_records() -> None:
    static = DASHBOARD / "static"
    recorded = re.findall(
        r"\| `([^`]+)` \| `package/[^`]+` \| `([0-9a-f]{64})` \|",
        (static / "VENDOR.md").read_text(),
    )
    assert len(recorded) == 3
    for name, digest in recorded:
        data = (static / "vendor" / "uplot-1.6.32" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_api_calls_never_open_a_dashboard_session(client: FlaskClient, runtime: Runtime) -> None:
    """The API's hot path must not read cookies or touch Redis for sessions, even for a browser
    that carries a signed-in session cookie to the API."""
    ui.sign_up(client)
    secret = ui.create_key(client)
    sessions_before = sorted(runtime.redis.scan_iter("timo:session:*"))
    answer = client.get("/api/v1/account/quota", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers and "Cookie" not in answer.headers.get("Vary", "")
    assert sorted(runtime.redis.scan_iter("timo:session:*")) == sessions_before
    assert client.get("/api/v1/health").headers.get("Set-Cookie") is None


def test_the_new_key_waits_on_the_server_minutes_not_weeks(
    client: FlaskClient, runtime: Runtime
) -> None:
    """The defect: the secret waited in the session (14 days in Redis) for a page the browser
    might never load, and a HEAD of the page used it up unseen."""
    ui.sign_up(client)
    answer = ui.post_form(client, "/dashboard/keys", {"name": "CI"})
    assert answer.status_code == 303  # not followed
    for key in runtime.redis.scan_iter("timo:session:*"):
        assert b"timo_live_" not in (runtime.redis.get(key) or b"")
    held = list(runtime.redis.scan_iter("timo:once:*"))
    assert len(held) == 1 and 0 < runtime.redis.ttl(held[0]) <= 300
    assert client.head("/dashboard/keys").status_code == 200
    assert "new-key-secret" in client.get("/dashboard/keys").get_data(as_text=True)
    assert list(runtime.redis.scan_iter("timo:once:*")) == []


def test_visitors_who_never_sign_in_hold_nothing_in_redis(app: Flask, runtime: Runtime) -> None:
    """The defect: each anonymous visit to /login stored a session in Redis (the quota's Redis),
    so a flood of visits could fill it."""
    for _ in range(20):
        visitor = app.test_client()
        assert visitor.get("/login").status_code == 200
        assert visitor.get("/signup").status_code == 200
    assert list(runtime.redis.scan_iter("timo:session:*")) == []


def test_unknown_pages_and_wrong_methods_are_pages_under_the_dashboard(client: FlaskClient) -> None:
    """The defect: `GET /logout` or a mistyped dashboard address answered raw JSON problems
    without the pages' security headers."""
    for path, method, status in (
        ("/logout", "GET", 405),
        ("/dashboard/nope", "GET", 404),
        ("/dashboard/keys", "PUT", 405),
    ):
        answer = client.open(path, method=method)
        assert answer.status_code == status, path
        assert answer.mimetype == "text/html", path
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"
    assert "Sign out” button" in client.get("/logout").get_data(as_text=True)
    assert client.put("/dashboard/keys").headers["Allow"]
    # The API's own errors stay problems, and so do paths that only begin like a page's.
    for path in ("/api/v1/nope", "/dashboardX", "/login-foo", "/invitationsX/1"):
        other = client.get(path)
        assert other.status_code == 404 and other.mimetype == "application/problem+json", path
        assert "Set-Cookie" not in other.headers, path


def test_edge_accounts_render(client: FlaskClient, runtime: Runtime) -> None:
    """A plan that allows no calls was a 500 (0 taken for "no limit"); an unlimited account was
    recommended the Free plan; a suspended account could make keys its calls would never use."""
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO plans (name, display_name, monthly_limit, price_usd, sort_order) "
            "VALUES ('closed', 'Closed', 0, 0, 90)"
        )
        conn.execute("UPDATE accounts SET plan = 'closed' WHERE id = %s", (account_id,))
    closed = client.get("/dashboard")
    assert closed.status_code == 200
    shown = " ".join(closed.get_data(as_text=True).split())
    assert "<strong>0</strong> of 0 calls used (100.0%)" in shown
    with runtime.database.connection() as conn:
        conn.execute("UPDATE accounts SET plan = 'enterprise' WHERE id = %s", (account_id,))
    unlimited = client.get("/dashboard").get_data(as_text=True)
    assert "your plan has no monthly limit" in unlimited and "Free" not in unlimited
    with runtime.database.connection() as conn:
        conn.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (account_id,))
    assert "suspended" in client.get("/dashboard").get_data(as_text=True)
    refused = ui.post_form(client, "/dashboard/keys", {"name": "CI"})
    assert refused.status_code == 422 and "suspended" in refused.get_data(as_text=True)
    with runtime.database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)


def test_the_overview_counts_and_projects_what_the_quota_counts(
    client: FlaskClient, runtime: Runtime
) -> None:
    """Defects: the month table counted refused calls (429) beside a gauge and a forecast that
    do not; and the forecast stored in the morning was served all day, however far the month
    had moved on since."""
    email = ui.sign_up(client)
    account_id = _account_id(runtime, email)
    now = datetime.now(UTC)
    today = now.date()
    seed_calls(runtime, account_id, {today: 10})
    seed_calls(runtime, account_id, {today: 5}, status=429)
    page = client.get("/dashboard").get_data(as_text=True)
    today_row = re.search(
        r'<tr class="today">\s*<td[^>]*>[^<]*</td>\s*<td class="num" data-y="(\d+)"', page
    )
    assert today_row and today_row.group(1) == "10"
    assert "Counted calls" in page

    from timo_hub.usage import forecasts

    morning = forecasts.get_forecast(
        runtime.database, account_id, days=30, model="auto", now=now, live_used=10
    )
    assert morning.current_month.used == 10
    seed_calls(runtime, account_id, {today: 600})  # the afternoon's calls, ingested
    stale = forecasts.get_forecast(runtime.database, account_id, days=30, model="auto", now=now)
    assert stale.current_month.used == 10  # without the live count: today's stored one
    fresh = forecasts.get_forecast(
        runtime.database, account_id, days=30, model="auto", now=now, live_used=610
    )
    assert fresh.current_month.used == 610


def test_a_used_up_quota_says_so(client: FlaskClient, runtime: Runtime) -> None:
    email = ui.sign_up(client)
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO plans (name, display_name, monthly_limit, price_usd, sort_order) "
            "VALUES ('tiny', 'Tiny', 3, 0, 91)"
        )
        conn.execute(
            "UPDATE accounts SET plan = 'tiny' WHERE id = %s", (_account_id(runtime, email),)
        )
    secret = ui.create_key(client)
    for _ in range(4):
        client.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"})
    page = " ".join(client.get("/dashboard").get_data(as_text=True).split())
    assert "<strong>3</strong> of 3 calls used (100.0%)" in page
    assert 'id="exhaustion-date">Used up<' in page and "calls are refused until" in page


def test_the_gauge_says_100_percent_only_when_nothing_is_left() -> None:
    from api.dashboard import display
    from timo_hub.quota.admission import Admission
    from timo_hub.quota.period import period_containing

    period = period_containing(datetime.now(UTC))
    assert display.gauge(Admission(False, 49_990, 50_000, period)).percent == 99.9
    assert display.gauge(Admission(False, 50_000, 50_000, period)).percent == 100.0


def test_second_tabs_and_oversized_forms_get_pages_not_refusals(
    client: FlaskClient, app: Flask
) -> None:
    """A sign-out from a second tab (after the first signed out) was a 400 "Form refused"; a
    form over the body limit was a JSON problem."""
    ui.sign_up(client)
    stale_token = ui.csrf_token(client, "/dashboard")
    ui.post_form(client, "/logout", {}, page="/dashboard")
    second_tab = client.post("/logout", data={"csrf_token": stale_token})
    assert second_tab.status_code == 303 and second_tab.headers["Location"] == "/login"
    ui.sign_up(client)
    huge = client.post("/dashboard/keys", data={"name": "x" * 20_000, "csrf_token": "t"})
    assert huge.status_code == 413 and huge.mimetype == "text/html"
    assert "default-src 'none'" in huge.headers["Content-Security-Policy"]


def test_key_names_must_read_as_what_they_are(client: FlaskClient) -> None:
    ui.sign_up(client)
    for name in ("\u200b", "\u202eevil", "ok\u2066name"):
        answer = ui.post_form(client, "/dashboard/keys", {"name": name})
        assert answer.status_code == 422, repr(name)
    assert ui.create_key(client, "👩‍💻 laptop").startswith("timo_live_")


def test_revoking_a_revoked_key_says_so(client: FlaskClient) -> None:
    ui.sign_up(client)
    ui.create_key(client, "once")
    page = client.get("/dashboard/keys").get_data(as_text=True)
    path = re.search(r'href="(/dashboard/keys/[0-9a-f-]+/revoke)"', page)
    assert path
    assert ui.post_form(client, path.group(1), {}).status_code == 303
    again = client.get(path.group(1))
    assert again.status_code == 303
    assert "was revoked already" in client.get("/dashboard/keys").get_data(as_text=True)


def test_pages_name_the_support_address_when_there_is_one(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    own = settings.model_copy(
        update={"support_email": "help@hub.example", "home": tmp_path / "home"}
    )
    app = create_app({"SETTINGS": own, "TESTING": True})
    try:
        client = app.test_client()
        assert 'href="mailto:help@hub.example"' in client.get("/login").get_data(as_text=True)
        ui.sign_up(client)
        plans = client.get("/dashboard/plans").get_data(as_text=True)
        assert plans.count('href="mailto:help@hub.example"') == 2
    finally:
        close_app(app)
    with pytest.raises(SettingsError, match="TIMO_SUPPORT_EMAIL"):
        Settings.from_env({"TIMO_SUPPORT_EMAIL": "not an address"})


def test_keys_stack_as_cards_on_a_phone(client: FlaskClient) -> None:
    """On a phone the keys table scrolled sideways with Revoke off-screen; each cell now names
    its column so the phone stylesheet can stack a key's fields."""
    ui.sign_up(client)
    ui.create_key(client, "CI")
    page = client.get("/dashboard/keys").get_data(as_text=True)
    assert 'class="data stack-on-phone" id="keys-table"' in page
    for label in ("Name", "Key", "Created", "Last used", "Status"):
        assert f'data-label="{label}"' in page
