"""`timo-hub quota reconcile`: Redis counters against the durable ledger, with repair."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click

from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.period import period_containing


@click.group()
def quota() -> None:
    """Inspect and repair monthly quota counters."""


@quota.command("reconcile")
@click.option("--month", metavar="YYYY-MM", help="The UTC month to check (default: this one).")
@click.option("--dry-run", is_flag=True, help="Report drift without repairing it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def reconcile(ctx: CliContext, month: str | None, dry_run: bool, as_json: bool) -> None:
    """Report each account's counter drift and raise the lower side to the higher."""
    if month:
        try:
            moment = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise click.BadParameter("expected YYYY-MM", param_hint="--month") from None
    else:
        moment = datetime.fromtimestamp(time.time(), UTC)
    period = period_containing(moment)
    drifts = reconciliation.compare(ctx.runtime, period)
    drifted = [d for d in drifts if d.difference != 0 or d.redis is None]
    if not dry_run:
        reconciliation.repair(ctx.runtime, period, drifted)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "period": period.label,
                    "accounts": len(drifts),
                    "drifted": [
                        {
                            "account_id": str(d.account_id),
                            "redis": d.redis,
                            "ledger": d.ledger,
                            "difference": d.difference,
                            "repaired_to": None if dry_run else d.repaired_to,
                        }
                        for d in drifted
                    ],
                    "repaired": not dry_run,
                }
            )
        )
        return
    click.echo(f"{period.label}: {len(drifts)} account(s) with usage, {len(drifted)} drifted.")
    for d in drifted:
        redis_value = "missing" if d.redis is None else str(d.redis)
        action = "" if dry_run else f" -> {d.repaired_to}"
        click.echo(f"  {d.account_id}  redis {redis_value}  ledger {d.ledger}  log {d.log}{action}")
