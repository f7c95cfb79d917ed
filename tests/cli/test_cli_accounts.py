"""`timo-hub accounts …` and `timo-hub keys …` against the test servers."""

from __future__ import annotations

import json
import uuid

import pytest
from flask.testing import FlaskClient

from tests.support.waiting import eventually
from timo_hub.accounts import cache, service
from timo_hub.accounts import key_format as key_format


def _create(run, email: str = "ops@example.com", plan: str = "starter") -> dict:  # type: ignore[no-untyped-def]
    result = run("accounts", "create", "--email", email, "--plan", plan, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_create_prints_the_account_and_a_working_key(run, client: FlaskClient) -> None:  # type: ignore[no-untyped-def]
    created = _create(run)
    assert set(created) == {"account_id", "api_key", "key_id"}
    assert key_format.is_well_formed(created["api_key"])
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    account = client.get("/api/v1/account", headers=auth).get_json()
    assert account["id"] == created["account_id"]
    assert account["plan"]["name"] == "starter"

    human = run("accounts", "create", "--email", "second@example.com", "--plan", "free")
    assert human.exit_code == 0
    assert "second@example.com" in human.output and "timo_live_" in human.output


def test_duplicate_emails_are_refused_whatever_the_case(run) -> None:  # type: ignore[no-untyped-def]
    _create(run, "Dup@Example.com")
    result = run("accounts", "create", "--email", "dup@example.COM", "--plan", "free")
    assert result.exit_code == 1
    assert "exists" in result.output


def test_unknown_plans_are_refused_with_the_choices(run) -> None:  # type: ignore[no-untyped-def]
    result = run("accounts", "create", "--email", "x@example.com", "--plan", "gold")
    assert result.exit_code == 1
    assert "free, starter, developer, business, enterprise" in result.output
    bad_email = run("accounts", "create", "--email", "not-an-email", "--plan", "free")
    assert bad_email.exit_code == 1


def test_list_and_show(run) -> None:  # type: ignore[no-untyped-def]
    created = _create(run)
    listing = run("accounts", "list")
    assert created["account_id"] in listing.output
    as_json = json.loads(run("accounts", "list", "--json").output)
    assert [a["id"] for a in as_json] == [created["account_id"]]
    shown = run("accounts", "show", created["account_id"])
    assert shown.exit_code == 0
    assert created["key_id"] in shown.output
    assert created["api_key"] not in shown.output


def test_set_plan_suspend_and_activate_reach_the_api(run, client: FlaskClient) -> None:  # type: ignore[no-untyped-def]
    created = _create(run)
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    assert client.get("/api/v1/account", headers=auth).status_code == 200  # cached now

    assert run("accounts", "set-plan", created["account_id"], "business").exit_code == 0
    assert run("accounts", "suspend", created["account_id"]).exit_code == 0
    eventually(lambda: client.get("/api/v1/account", headers=auth).status_code == 403)
    assert run("accounts", "activate", created["account_id"]).exit_code == 0
    eventually(lambda: client.get("/api/v1/account", headers=auth).status_code == 200)
    plan = client.get("/api/v1/account", headers=auth).get_json()["plan"]["name"]
    assert plan == "business"
    assert run("accounts", "set-plan", created["account_id"], "gold").exit_code == 1


def test_keys_create_and_revoke(run, client: FlaskClient) -> None:  # type: ignore[no-untyped-def]
    created = _create(run)
    result = run("keys", "create", created["account_id"], "--name", "Deploy bot", "--json")
    assert result.exit_code == 0, result.output
    issued = json.loads(result.output)
    auth = {"Authorization": f"Bearer {issued['api_key']}"}
    assert client.get("/api/v1/account", headers=auth).status_code == 200

    revoked = run("keys", "revoke", issued["key_id"])
    assert revoked.exit_code == 0
    assert issued["api_key"] not in revoked.output
    eventually(lambda: client.get("/api/v1/account", headers=auth).status_code == 401)
    assert run("keys", "revoke", issued["key_id"]).exit_code == 0  # idempotent


def test_a_revoke_redis_cannot_announce_is_reported_truthfully(  # type: ignore[no-untyped-def]
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the CLI printing a traceback (and failing) for a revoke that had committed, when
    # only the announcement to the web processes failed.
    created = _create(run)
    made = run("keys", "create", created["account_id"], "--name", "spare", "--json")
    issued = json.loads(made.output)
    monkeypatch.setattr(cache, "publish_invalidation", lambda *args, **kwargs: False)
    monkeypatch.setattr(service, "publish_invalidation", lambda *args, **kwargs: False)
    revoked = run("keys", "revoke", issued["key_id"])
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked key {issued['key_id']}" in revoked.output
    assert "could not be told" in revoked.output and "Traceback" not in revoked.output
    suspended = run("accounts", "suspend", created["account_id"])
    assert suspended.exit_code == 0 and "could not be told" in suspended.output


@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "show", str(uuid.uuid4())),
        ("accounts", "show", "nope"),
        ("accounts", "suspend", str(uuid.uuid4())),
        ("accounts", "activate", "123"),
        ("accounts", "set-plan", str(uuid.uuid4()), "free"),
        ("keys", "create", str(uuid.uuid4()), "--name", "x"),
        ("keys", "create", "nope", "--name", "x"),
        ("keys", "revoke", str(uuid.uuid4())),
        ("keys", "revoke", "nope"),
    ],
)
def test_unknown_ids_fail_clearly(run, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: No ")
