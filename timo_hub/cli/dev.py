"""`timo-hub dev`: the whole product on one laptop, in the foreground, until Ctrl-C.

Starts (or joins) embedded PostgreSQL and Redis when their URLs are unset, applies migrations,
makes sure a demo account with a working key exists, then runs the Procfile's `web`, `worker` and
`beat` under honcho with their output interleaved and prefixed. The children get concrete URLs in
their environment, so they never start servers of their own; the embedded servers stop when this
process exits (unless another `timo-hub` process still holds them).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click
from honcho.environ import parse_procfile
from honcho.manager import Manager

from timo_hub.accounts import store
from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.people import service as people
from timo_hub.platform import migrate as migrations
from timo_hub.platform.settings import Settings

DEV_PROCESSES = ("web", "worker", "beat")
DEMO_EMAIL = "demo@timo-hub.local"
DEMO_PLAN = "developer"
DEMO_KEY_FILE = "demo-key"
DEMO_PASSWORD_FILE = "demo-password"
PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


@click.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    envvar="PORT",
    default=8000,
    show_default=True,
    help="Port of the web process (env PORT).",
)
@click.option(
    "--host",
    envvar="HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the web process binds (env HOST).",
)
@pass_cli
def dev(ctx: CliContext, port: int, host: str) -> None:
    """Run web, worker and beat with embedded PostgreSQL and Redis until Ctrl-C."""
    settings = ctx.resolved
    assert settings.database_url is not None
    click.echo(f"PostgreSQL: {_describe_url(settings.database_url)}")
    click.echo(f"Redis:      {_describe_url(settings.redis_url or '')}")
    click.echo(f"Broker:     {_describe_url(settings.effective_broker_url)}")

    for migration in migrations.migrate(settings.database_url):
        click.echo(f"Applied migration {migration.version:04d}_{migration.name}")
    _announce_demo_key(ctx)
    password = ensure_demo_password(ctx)
    ctx.runtime.close()  # the children open their own connections

    manager = Manager()
    procfile = _read_procfile()
    env = _child_environment(settings, port=port, host=host)
    for name in DEV_PROCESSES:
        manager.add_process(name, procfile[name], env=env, cwd=str(PROCFILE.parent))
    click.echo(f"API on http://{host}:{port}/api/v1/health  (Ctrl-C stops everything)")
    if password is None:
        how = "with the password you set on the dashboard"
    else:
        how = f"with password {password} (saved in {ctx.resolved.home / DEMO_PASSWORD_FILE})"
    click.echo(
        f"Dashboard on http://{host}:{port}/dashboard: sign in as {DEMO_EMAIL} {how}, or sign up."
    )
    manager.loop()
    sys.exit(manager.returncode or 0)


def ensure_demo_key(ctx: CliContext) -> tuple[str, bool]:
    """Return the demo account's key, creating account and key if needed; True if new."""
    key_file = ctx.resolved.home / DEMO_KEY_FILE
    pepper = ctx.resolved.key_pepper
    with ctx.runtime.database.connection() as conn:
        if key_file.exists():
            saved = key_file.read_text().strip()
            if store.key_is_active(conn, saved, pepper):
                return saved, False
        account = store.find_account_by_email(conn, DEMO_EMAIL)
        if account is None:
            account = store.create_account(conn, DEMO_EMAIL, DEMO_PLAN)
        issued = store.insert_key(conn, account.id, "Demo key", pepper)
    _write_secret(key_file, issued.secret)
    return issued.secret, True


def ensure_demo_password(ctx: CliContext) -> str | None:
    """The demo account owner's dashboard password, made (and saved, 0600) on first use; None
    once someone changed it on the dashboard."""
    password_file = ctx.resolved.home / DEMO_PASSWORD_FILE
    with ctx.runtime.database.connection() as conn:
        account = store.find_account_by_email(conn, DEMO_EMAIL)
    assert account is not None, "ensure_demo_key makes the demo account first"
    if password_file.exists():
        saved = password_file.read_text().strip()
        if people.owner_signs_in_with(ctx.runtime, account.id, saved):
            return saved
        if people.owner_has_password(ctx.runtime, account.id):
            # Changed on the dashboard: theirs now, not ours to reset (nor its sessions to end).
            return None
    password = secrets.token_urlsafe(12)  # 16 random characters: within the policy
    people.set_owner_password(ctx.runtime, account.id, password)
    _write_secret(password_file, password)
    return password


def _announce_demo_key(ctx: CliContext) -> None:
    key, created = ensure_demo_key(ctx)
    key_file = ctx.resolved.home / DEMO_KEY_FILE
    if created:
        click.echo(f"Demo account {DEMO_EMAIL} ({DEMO_PLAN} plan). Its API key, shown once:")
        click.echo(f"\n    {key}\n")
        click.echo(f"Saved to {key_file} (mode 0600).")
    else:
        click.echo(f"Demo account {DEMO_EMAIL}: its API key is in {key_file}.")


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start: no moment where another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)


def _read_procfile() -> dict[str, str]:
    if not PROCFILE.exists():
        raise click.ClickException(f"no Procfile at {PROCFILE}; run from a source checkout")
    processes = parse_procfile(PROCFILE.read_text()).processes
    missing = [name for name in DEV_PROCESSES if name not in processes]
    if missing:
        raise click.ClickException(f"Procfile lacks {', '.join(missing)}")
    return dict(processes)


def _child_environment(settings: Settings, *, port: int, host: str) -> dict[str, str]:
    assert settings.database_url is not None and settings.redis_url is not None
    bin_dir = str(Path(sys.executable).parent)
    # honcho replaces the child's environment, so start from ours.
    return {
        **os.environ,
        "TIMO_DATABASE_URL": settings.database_url,
        "TIMO_REDIS_URL": settings.redis_url,
        "TIMO_BROKER_URL": settings.effective_broker_url,
        "TIMO_HOME": str(settings.home),
        "TIMO_ENV": settings.env,
        # A laptop's webhook receiver is on localhost; the operator's own setting still wins.
        "TIMO_WEBHOOKS_ALLOW_PRIVATE": os.environ.get("TIMO_WEBHOOKS_ALLOW_PRIVATE", "true"),
        "PORT": str(port),
        "HOST": host,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
    }


def _describe_url(url: str) -> str:
    # Passwords never reach the terminal.
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        url = url.replace(f":{parts.password}@", ":***@")
    return url
