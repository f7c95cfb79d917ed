"""`timo-hub quota reconcile`: Redis counters against what PostgreSQL proves, with repair."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click

from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.period import period_containing
from timo_hub.quota.reconcile import CounterState

NEEDS_ATTENTION = frozenset({CounterState.BEHIND, CounterState.MISSING, CounterState.FOREIGN})


@click.group()
def quota() -> None:
    """Inspect and repair monthly quota counters."""


@quota.command("reconcile")
@click.option("--month", metavar="YYYY-MM", help="The UTC month to check (default: this one).")
@click.option("--dry-run", is_flag=True, help="Report drift without repairing it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def reconcile(ctx: CliContext, month: str | None, dry_run: bool, as_json: bool) -> None:
    """Report counters below what PostgreSQL proves, and raise them (safe under traffic).

    Missing counters and counters from another Redis server life are reported; the next call
    for the account rebuilds them exactly.
    """
    if month:
        try:
            moment = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise click.BadParameter("expected YYYY-MM", param_hint="--month") from None
    else:
        moment = datetime.fromtimestamp(time.time(), UTC)
    period = period_containing(moment)
    result = reconciliation.reconcile(ctx.runtime, period, dry_run=dry_run)
    # A counter ahead of PostgreSQL is normal under traffic (tallies and events in flight).
    notable = [c for c in result.checks if c.state in NEEDS_ATTENTION]
    repaired = {r.account_id: r for r in result.repairs}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "period": period.label,
                    "accounts": len(result.checks),
                    "drifted": [
                        {
                            "account_id": str(c.account_id),
                            "state": c.state.value,
                            "redis": c.redis,
                            "ledger": c.ledger,
                            "log": c.log,
                            "repaired_to": (
                                repaired[c.account_id].after if c.account_id in repaired else None
                            ),
                        }
                        for c in notable
                    ],
                    "repaired": len(result.repairs),
                    "dry_run": dry_run,
                }
            )
        )
        return
    click.echo(
        f"{period.label}: {len(result.checks)} account(s) with usage, {len(notable)} drifted, "
        f"{len(result.repairs)} repaired."
    )
    for c in notable:
        redis_value = "missing" if c.redis is None else str(c.redis)
        action = ""
        if c.account_id in repaired:
            action = f" -> {repaired[c.account_id].after}"
        elif c.state is not CounterState.BEHIND:
            action = " (rebuilt by its next call)"
        click.echo(
            f"  {c.account_id}  {c.state.value}  redis {redis_value}  ledger {c.ledger}  "
            f"log {c.log}{action}"
        )
