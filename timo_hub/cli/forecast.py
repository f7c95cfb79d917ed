"""`timo-hub forecast run`: the nightly forecast job, by hand."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

import click
from tqdm import tqdm

from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.usage import forecasts


@click.group()
def forecast() -> None:
    """Compute and store usage forecasts."""


@forecast.command("run")
@click.option("--account", "account_id", type=click.UUID, help="Only this account.")
@pass_cli
def run(ctx: CliContext, account_id: uuid.UUID | None) -> None:
    """Forecast every active account (or one), store it and raise projected-quota alerts."""
    database = ctx.runtime.database
    account_ids = [account_id] if account_id else forecasts.active_account_ids(database)
    now = datetime.now(UTC)
    raised: list[str] = []
    with tqdm(total=len(account_ids), unit="account", desc="forecast", file=sys.stderr) as bar:

        def done(done_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
            bar.update(1)
            if outcome is None:
                tqdm.write(f"failed: {done_id} (see the log)", file=sys.stderr)
            else:
                raised.extend(f"{done_id} {kind}" for kind in outcome.alerts_raised)

        succeeded, failed = forecasts.run_all(database, account_ids, now, on_done=done)
    if account_id is None:
        forecasts.prune(database, now.date())
    click.echo(f"forecast {succeeded} account(s), {failed} failed, {len(raised)} alert(s) raised")
    for line in raised:
        click.echo(f"  alert {line}")
    if failed:
        sys.exit(1)
