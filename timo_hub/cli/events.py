"""`timo-hub projections rebuild` and `timo-hub events import`: the log's operator tools."""

from __future__ import annotations

import os
import sys
from datetime import date

import click
from tqdm import tqdm

from events import projections
from events.importer import import_lines
from timo_hub.cli.context import CliContext, pass_cli


@click.group()
def events() -> None:
    """Work with the usage event log."""


@events.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@pass_cli
def import_events(ctx: CliContext, source: click.utils.LazyFile) -> None:
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


@click.group()
def projections_group() -> None:
    """Maintain the tables derived from the event log."""


@projections_group.command("rebuild")
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="First UTC day to rebuild."
)
@pass_cli
def rebuild(ctx: CliContext, since: object) -> None:
    """Recompute usage_daily from the event log (safe while workers ingest)."""
    first: date | None = since.date() if since is not None else None  # type: ignore[attr-defined]
    days = projections.days_to_rebuild(ctx.runtime.database, first)
    with tqdm(total=len(days), unit="day", desc="rebuild", file=sys.stderr) as bar:
        result = projections.rebuild(ctx.runtime.database, first, progress=bar.update)
    floor = projections.retained_since(ctx.runtime.database)
    click.echo(f"rebuilt {result.days} day(s) of usage_daily from the event log")
    if first is not None and floor is not None and first < floor:
        click.echo(f"  days before {floor} have no raw events left (retention); kept as they were")
