"""The `timo-hub` command: operator tooling and the one-command development stack.

A thin layer over the domain packages, `events` and the platform (never `api`): each command
parses its arguments, calls one domain function and prints the result; domain errors become one
`Error: …` line (`cli.error_messages`).
"""

from __future__ import annotations

import sys

import click

from timo_hub.cli.accounts import accounts, keys
from timo_hub.cli.broker import broker
from timo_hub.cli.context import CliContext
from timo_hub.cli.dev import dev
from timo_hub.cli.events import events, projections_group
from timo_hub.cli.forecast import forecast
from timo_hub.cli.migrate import migrate
from timo_hub.cli.quota import quota
from timo_hub.cli.spool import spool
from timo_hub.platform.settings import Settings, SettingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="timo-hub")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Timo Hub metering backend."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = CliContext(settings)
    ctx.call_on_close(ctx.obj.close)


cli.add_command(accounts)
cli.add_command(keys)
cli.add_command(dev)
cli.add_command(migrate)
cli.add_command(events)
cli.add_command(projections_group, name="projections")
cli.add_command(quota)
cli.add_command(forecast)
cli.add_command(spool)
cli.add_command(broker)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="timo-hub", standalone_mode=True))
