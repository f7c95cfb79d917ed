"""`timo-hub spool ship DIR`: drain an event spool left on a disk by a web host gone for good.

A web process spools each call's event before answering and ships it from its own spool; a
process that dies leaves its segments for the next process on the same host to adopt. A host
that never comes back leaves them on its disk: mount or copy that directory anywhere and ship it
from there. Idempotent: what a first run shipped and a second ships again, the log ignores.
"""

from __future__ import annotations

from pathlib import Path

import click

from events.publisher import EventPublisher
from events.spool import SEGMENT_SUFFIX
from timo_hub.cli.context import CliContext, pass_cli


@click.group()
def spool() -> None:
    """Work with event spools."""


@spool.command("ship")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path)
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 86_400),
    default=300.0,
    show_default=True,
    help="Seconds to wait for every event to be confirmed in the log.",
)
@pass_cli
def ship(ctx: CliContext, directory: Path, timeout: float) -> None:
    """Ship every event in DIRECTORY and delete each segment once the log has all of it.

    Needs the broker and running workers: a segment is deleted only when the receipts of its
    batches are in the log. Segments a live process still holds are left alone.
    """
    runtime = ctx.runtime
    publisher = EventPublisher(directory, runtime.broker_url, runtime.database)
    try:
        adopted = publisher.spool.adopt_orphans()
        backlog = publisher.spool.backlog_bytes(verified=True)
        drained = publisher.drain(timeout, verified=True)
        left = publisher.spool.backlog_bytes(verified=True)
    finally:
        publisher.close()
    held = sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))
    click.echo(
        f"adopted {adopted} segment(s) holding {backlog:,} bytes of events; "
        f"{backlog - left:,} bytes confirmed in the log"
    )
    if not drained:
        raise click.ClickException(
            f"{left:,} bytes not confirmed within {timeout:.0f} s (are workers running?); "
            "run this again: nothing is shipped twice into the log"
        )
    if held:
        click.echo(f"{len(held)} segment(s) are held by a live process and were left alone")
