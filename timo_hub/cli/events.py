"""`timo-hub projections rebuild` and `timo-hub events import`: the log's operator tools."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, date, datetime
from typing import IO

import click
from tqdm import tqdm

from events import projection_rebuild
from events.importer import import_lines
from events.samples import SampleShape, sample_events
from timo_hub.accounts import store as accounts_store
from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.cli.dev import DEMO_EMAIL


@click.group()
def events() -> None:
    """Work with the usage event log."""


@events.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@pass_cli
def import_events(ctx: CliContext, source: IO[str]) -> None:
    """Append historical events from a JSON Lines FILE (`-` for stdin); idempotent."""
    total = None
    name = getattr(source, "name", "-")
    if name not in ("-", "<stdin>") and os.path.exists(name):
        total = os.path.getsize(name)
    with tqdm(total=total, unit="B", unit_scale=True, desc="import", file=sys.stderr) as bar:
        summary = import_lines(ctx.runtime.database, source, progress=bar.update)
    click.echo(
        f"read {summary.read}, appended {summary.appended}, "
        f"duplicates {summary.duplicates}, rejected {summary.rejected_total}"
    )
    for reason, count in summary.rejected.most_common():
        click.echo(f"  rejected {count}: {reason}")
    for example in summary.examples:
        click.echo(f"    {example}")


@events.command("sample")
@click.option("--account", "account_id", type=click.UUID, help="Account (default: the demo one).")
@click.option("--days", type=click.IntRange(1, 730), default=120, show_default=True)
@click.option(
    "--per-day",
    type=click.FloatRange(0, 1e7),
    default=300.0,
    show_default=True,
    help="Weekday calls per day at the start (it grows by half over the period).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same events.")
@pass_cli
def sample(
    ctx: CliContext, account_id: uuid.UUID | None, days: int, per_day: float, seed: int
) -> None:
    """Print synthetic JSON Lines history for an account (pipe it to `events import -`)."""
    with ctx.runtime.database.connection() as conn:
        if account_id is None:
            demo = accounts_store.find_account_by_email(conn, DEMO_EMAIL)
            if demo is None:
                raise click.UsageError("no demo account yet (run `timo-hub dev`); pass --account")
            account_id = demo.id
        if accounts_store.get_account(conn, account_id) is None:
            raise click.UsageError(f"no account {account_id}")
        key_ids = [k.id for k in accounts_store.list_keys(conn, account_id) if k.revoked_at is None]
    if not key_ids:
        raise click.UsageError("the account has no active key")
    shape = SampleShape(days=days, calls_per_day=per_day, seed=seed)
    for event in sample_events(account_id, key_ids, shape, datetime.now(UTC)):
        click.echo(event.to_json())


@click.group()
def projections_group() -> None:
    """Maintain the tables derived from the event log."""


@projections_group.command("rebuild")
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="First UTC day to rebuild."
)
@pass_cli
def rebuild(ctx: CliContext, since: datetime | None) -> None:
    """Recompute usage_daily from the event log (safe while workers ingest)."""
    first: date | None = since.date() if since is not None else None
    days = projection_rebuild.days_to_rebuild(ctx.runtime.database, first)
    with tqdm(total=len(days), unit="day", desc="rebuild", file=sys.stderr) as bar:
        result = projection_rebuild.rebuild(ctx.runtime.database, first, progress=bar.update)
    floor = projection_rebuild.retained_since(ctx.runtime.database)
    click.echo(f"rebuilt {result.days} day(s) of usage_daily from the event log")
    if first is not None and floor is not None and first < floor:
        click.echo(f"  days before {floor} have no raw events left (retention); kept as they were")
