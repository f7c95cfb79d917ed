"""`timo-hub migrate`: apply pending schema migrations (the Procfile's `release` line)."""

from __future__ import annotations

import click
import psycopg

from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.platform import migrate as migrations


@click.command()
@pass_cli
def migrate(ctx: CliContext) -> None:
    """Apply pending database migrations; safe to run twice or concurrently."""
    url = ctx.resolved.database_url
    assert url is not None
    try:
        applied = migrations.migrate(url)
    except (psycopg.Error, migrations.MigrationError) as exc:
        raise click.ClickException(f"migration failed: {exc}") from exc
    if not applied:
        click.echo("Database is up to date.")
    for migration in applied:
        click.echo(f"Applied {migration.version:04d}_{migration.name}")
