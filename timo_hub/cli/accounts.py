"""`timo-hub accounts …` and `timo-hub keys …`: operator management of accounts and API keys.

The commands call the same service functions as the HTTP API, so the rules (unique emails, known
plans, the active-key limit, cache invalidation on revoke, suspend and plan change) are one code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC

import click

from timo_hub.accounts import service, store
from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.cli.error_messages import operator_errors
from timo_hub.people import service as people
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import window_name
from timo_hub.webhooks import key_events
from timo_hub.webhooks.dispatch import DeliveryQueue


def _account_id(raw: str) -> uuid.UUID:
    with operator_errors():
        return service.parse_id(raw, service.AccountNotFoundError, "account")


def _describe(account: store.Account, overrides: dict[str, int | None] | None = None) -> str:
    monthly = "unlimited"
    if account.monthly_limit is not None:
        monthly = f"{account.monthly_limit:,} calls/month"
    burst = "no burst limit"
    if account.burst_limit is not None:
        burst = f"{account.burst_limit:,} calls/{window_name(account.burst_window_seconds)}"
    own = sorted(overrides or {})
    source = f" (set for this account: {', '.join(own)})" if own else ""
    return (
        f"Account {account.id}\n"
        f"  email:   {account.email}\n"
        f"  plan:    {account.plan}\n"
        f"  limits:  {monthly}, {burst}{source}\n"
        f"  status:  {account.status}\n"
        f"  created: {account.created_at.isoformat()}"
    )


def _limit_setting(raw: str | None, option: str) -> service.LimitSetting | None:
    if raw is None:
        return None
    text = raw.strip().lower().replace(",", "").replace("_", "")
    if text in (service.FOLLOW_PLAN, service.UNLIMITED):
        return text  # type: ignore[return-value]
    if not (text.isascii() and text.isdigit()):
        raise click.BadParameter(
            "a whole number of calls, 'unlimited', or 'plan' (the plan's limit)",
            param_hint=option,
        )
    return int(text)


@click.group()
def accounts() -> None:
    """Create and manage customer accounts."""


@accounts.command("create")
@click.option("--email", required=True, help="The account's email (unique, any letter case).")
@click.option("--plan", required=True, help="free, starter, developer, business or enterprise.")
@click.option(
    "--invite",
    is_flag=True,
    help="Also print a one-time link for the owner to set a password and sign in.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def create_account(ctx: CliContext, email: str, plan: str, invite: bool, as_json: bool) -> None:
    """Open an account and print its first API key (shown only now)."""
    if invite:
        _check_public_url(ctx)
    with operator_errors():
        account, issued = service.create_account(ctx.runtime, email, plan)
        invitation = people.invite_owner(ctx.runtime, account.id) if invite else None
    if as_json:
        document = {
            "account_id": str(account.id),
            "api_key": issued.secret,
            "key_id": str(issued.key.id),
        }
        if invitation is not None:
            document["invitation_url"] = invitation.url(ctx.resolved)
            document["invitation_expires_at"] = invitation.expires_at.isoformat()
        click.echo(json.dumps(document))
        return
    click.echo(_describe(account))
    click.echo(f"API key {issued.key.id} (shown once, store it now):\n  {issued.secret}")
    if invitation is not None:
        _print_invitation(ctx, invitation)


@accounts.command("invite")
@click.argument("account_id")
@pass_cli
def invite_owner(ctx: CliContext, account_id: str) -> None:
    """Print a one-time link for the account's owner to set a password (and sign in).

    A new link voids the owner's earlier ones; using it ends the owner's sessions, so it also
    resets a forgotten password.
    """
    _check_public_url(ctx)
    parsed = _account_id(account_id)
    with operator_errors():
        invitation = people.invite_owner(ctx.runtime, parsed)
    _print_invitation(ctx, invitation)


def _check_public_url(ctx: CliContext) -> None:
    """In production a link must name where people reach the server, not this machine."""
    if ctx.resolved.env == "production" and ctx.resolved.public_url is None:
        raise click.ClickException(
            "set TIMO_PUBLIC_URL (where people reach the dashboard) to print sign-in links"
        )


def _print_invitation(ctx: CliContext, invitation: people.Invitation) -> None:
    expires = f"{invitation.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    click.echo(
        f"Sign-in link for {invitation.user.email} (works once, until {expires}; shown only now):"
        f"\n  {invitation.url(ctx.resolved)}"
    )


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_cli
def list_accounts(ctx: CliContext, as_json: bool) -> None:
    """List every account, oldest first."""
    with ctx.runtime.database.connection() as conn:
        rows = store.list_accounts(conn)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": str(a.id),
                        "email": a.email,
                        "plan": a.plan,
                        "monthly_limit": a.monthly_limit,
                        "burst_limit": a.burst_limit,
                        "burst_window_seconds": a.burst_window_seconds,
                        "status": a.status,
                        "created_at": a.created_at.isoformat(),
                    }
                    for a in rows
                ]
            )
        )
        return
    click.echo(f"{'ID':<36}  {'EMAIL':<32}  {'PLAN':<10}  {'STATUS':<9}  CREATED")
    for a in rows:
        created = a.created_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{a.id!s:<36}  {a.email:<32}  {a.plan:<10}  {a.status:<9}  {created}")


@accounts.command("show")
@click.argument("account_id")
@pass_cli
def show_account(ctx: CliContext, account_id: str) -> None:
    """Show an account and its keys."""
    parsed = _account_id(account_id)
    with operator_errors():
        account = service.get_account(ctx.runtime, parsed)
        overrides = service.limit_overrides(ctx.runtime, parsed)
    click.echo(_describe(account, overrides))
    click.echo("  keys:")
    for key in service.list_keys(ctx.runtime, parsed):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        click.echo(f"    {key.id}  {key.prefix}…  {key.name!r}  {state}, {used}")


def _change(
    ctx: CliContext,
    account_id: str,
    action: Callable[[Runtime, uuid.UUID, str], store.Account],
    value: str,
) -> None:
    parsed = _account_id(account_id)
    with operator_errors():
        try:
            account = action(ctx.runtime, parsed, value)
        except service.ChangeNotAnnouncedError as exc:
            account = exc.committed  # done; only the web processes' caches lag
            click.echo(f"warning: {exc}", err=True)
    click.echo(_describe(account))


@accounts.command("set-plan")
@click.argument("account_id")
@click.argument("plan")
@pass_cli
def set_plan(ctx: CliContext, account_id: str, plan: str) -> None:
    """Move an account to another plan; effective on its next request."""
    _change(ctx, account_id, service.set_plan, plan)


@accounts.command("set-limit")
@click.argument("account_id")
@click.option(
    "--per-minute",
    "burst",
    metavar="N|unlimited|plan",
    help="Calls per burst window (a minute unless the plan says otherwise).",
)
@click.option(
    "--monthly",
    metavar="N|unlimited|plan",
    help="Calls per UTC month (an enterprise contract, for instance).",
)
@pass_cli
def set_limit(ctx: CliContext, account_id: str, burst: str | None, monthly: str | None) -> None:
    """Give an account its own limits in place of its plan's; effective on its next request.

    `plan` drops the account's own limit so that its plan's applies again. An account's own
    limits stay when it changes plan.
    """
    changes: dict[str, service.LimitSetting] = {}
    if (setting := _limit_setting(monthly, "--monthly")) is not None:
        changes["month"] = setting
    if (setting := _limit_setting(burst, "--per-minute")) is not None:
        changes["burst"] = setting
    if not changes:
        raise click.UsageError("Say which limit to set: --per-minute and/or --monthly.")
    parsed = _account_id(account_id)
    with operator_errors():
        try:
            account = service.set_limits(ctx.runtime, parsed, changes)
        except service.ChangeNotAnnouncedError as exc:
            account = exc.committed
            click.echo(f"warning: {exc}", err=True)
        overrides = service.limit_overrides(ctx.runtime, parsed)
    click.echo(_describe(account, overrides))


@accounts.command("suspend")
@click.argument("account_id")
@pass_cli
def suspend(ctx: CliContext, account_id: str) -> None:
    """Suspend an account: its keys get 403 until it is activated."""
    _change(ctx, account_id, service.set_status, "suspended")


@accounts.command("activate")
@click.argument("account_id")
@pass_cli
def activate(ctx: CliContext, account_id: str) -> None:
    """Reactivate a suspended account."""
    _change(ctx, account_id, service.set_status, "active")


@click.group()
def keys() -> None:
    """Create and revoke API keys."""


@keys.command("create")
@click.argument("account_id")
@click.option("--name", required=True, help="A label for the key (1-100 characters).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def create_key(ctx: CliContext, account_id: str, name: str, as_json: bool) -> None:
    """Create an API key for an account and print it (shown only now)."""
    parsed = _account_id(account_id)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise click.BadParameter("must be 1 to 100 characters", param_hint="--name")
    with operator_errors(), _deliveries(ctx) as deliveries:
        issued = key_events.issue_key(ctx.runtime, deliveries, parsed, name)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "account_id": str(parsed),
                    "api_key": issued.secret,
                    "key_id": str(issued.key.id),
                }
            )
        )
        return
    click.echo(f"API key {issued.key.id} for account {parsed} (shown once, store it now):")
    click.echo(f"  {issued.secret}")


@keys.command("revoke")
@click.argument("key_id")
@pass_cli
def revoke_key(ctx: CliContext, key_id: str) -> None:
    """Revoke an API key; every web process refuses it within a second."""
    with operator_errors():
        parsed = service.parse_id(key_id, service.KeyNotFoundError, "API key")
        try:
            with _deliveries(ctx) as deliveries:
                key = key_events.revoke_key(ctx.runtime, deliveries, parsed)
        except service.ChangeNotAnnouncedError as exc:
            key = exc.committed
            click.echo(f"warning: {exc}", err=True)
    click.echo(f"Revoked key {key.id} ({key.prefix}…, {key.name!r}) of account {key.account_id}.")


@contextmanager
def _deliveries(ctx: CliContext) -> Iterator[DeliveryQueue]:
    """Where the CLI queues the webhooks of what it changes; sent before the command ends."""
    deliveries = DeliveryQueue(ctx.runtime.broker_url)
    try:
        yield deliveries
    finally:
        deliveries.close()
