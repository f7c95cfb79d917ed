"""`timo-hub forecast run` and `forecast status`: the nightly forecast run, by hand and watched."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, date, datetime, timedelta

import click
from tqdm import tqdm

from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.usage import forecast_runs, forecasts


@click.group()
def forecast() -> None:
    """Compute and store usage forecasts."""


@forecast.command("run")
@click.option("--account", "account_id", type=click.UUID, help="Only this account.")
@click.option(
    "--restart",
    is_flag=True,
    help="Start today's run over: forecast again the accounts it has already done.",
)
@pass_cli
def run(ctx: CliContext, account_id: uuid.UUID | None, restart: bool) -> None:
    """Forecast every active account (or one), store it and raise projected-quota alerts.

    Without --account this is today's nightly run, computed here: the chunks the workers have not
    done yet (a run interrupted or still under way resumes; one finished does nothing).
    """
    database = ctx.runtime.database
    now = datetime.now(UTC)
    raised: list[str] = []
    failures: list[uuid.UUID] = []

    def done(done_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
        if outcome is None:
            failures.append(done_id)
            tqdm.write(f"failed: {done_id} (see the log)", file=sys.stderr)
        else:
            raised.extend(f"{done_id} {kind}" for kind in outcome.alerts_raised)

    if account_id is not None:
        with tqdm(total=1, unit="account", desc="forecast", file=sys.stderr) as bar:

            def one_done(done_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
                bar.update(1)
                done(done_id, outcome)

            succeeded, failed = forecasts.run_all(database, [account_id], now, on_done=one_done)
        _summarize(succeeded, failed, raised)
        return

    if restart:
        forecast_runs.discard(database, now.date())
    planned = forecast_runs.plan(database, now, chunk_size=ctx.settings.forecast_chunk_size)
    before = forecast_runs.status(database, planned.for_day)
    assert before is not None
    succeeded = 0
    with tqdm(
        total=planned.accounts,
        initial=before.done + before.failed,
        unit="account",
        desc="forecast",
        file=sys.stderr,
    ) as bar:

        def chunk_done(done_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
            bar.update(1)
            done(done_id, outcome)

        def skipped(count: int) -> None:
            bar.update(count)

        for chunk in forecast_runs.unfinished_chunks(database, planned.id):
            # Marked queued, so that neither beat's run nor the sweep queues it to a worker while
            # this process computes it. No time budget: no broker waits to hand it to another.
            forecast_runs.mark_queued(database, planned.id, [chunk], datetime.now(UTC))
            outcome = forecast_runs.run_chunk(
                database,
                planned.id,
                chunk,
                budget_seconds=None,
                on_done=chunk_done,
                on_skipped=skipped,
            )
            succeeded += outcome.succeeded
    forecasts.prune(database, now.date())
    forecast_runs.prune(database, now.date())
    after = forecast_runs.status(database, planned.for_day)
    assert after is not None
    _summarize(succeeded, len(failures), raised)
    earlier = after.done + after.failed - succeeded - len(failures)
    if earlier > 0:
        click.echo(
            f"  {earlier} account(s) already done by today's run (--restart forecasts them again)"
        )
    if after.pending:
        click.echo(f"  {after.pending} account(s) pending: chunks taken over by a worker")


def _summarize(succeeded: int, failed: int, raised: list[str]) -> None:
    click.echo(f"forecast {succeeded} account(s), {failed} failed, {len(raised)} alert(s) raised")
    for line in raised:
        click.echo(f"  alert {line}")
    if failed:
        sys.exit(1)


@forecast.command("status")
@click.option(
    "--day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The run of this UTC day, YYYY-MM-DD (default: today).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def status(ctx: CliContext, day: datetime | None, as_json: bool) -> None:
    """How far the nightly forecast run of today (or --day) has come."""
    now = datetime.now(UTC)
    wanted = day.date() if day is not None else now.date()
    found = forecast_runs.status(ctx.runtime.database, wanted)
    if found is None:
        raise click.ClickException(
            f"no forecast run for {wanted} (the nightly run starts at 00:20 UTC)"
        )
    rate = found.rate(now)
    eta = found.eta(now)
    stalled = (
        found.finished_at is None
        and (found.last_progress_at or found.started_at) < now - forecast_runs.QUIET_AFTER
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_id": found.run_id,
                    "day": found.for_day.isoformat(),
                    "started_at": found.started_at.isoformat(),
                    "finished_at": found.finished_at.isoformat() if found.finished_at else None,
                    "chunk_size": found.chunk_size,
                    "chunks": found.chunks,
                    "chunks_done": found.chunks_done,
                    "chunks_in_progress": found.chunks_in_progress,
                    "chunks_waiting": found.chunks_waiting,
                    "accounts": found.accounts,
                    "done": found.done,
                    "failed": found.failed,
                    "pending": found.pending,
                    "skipped": found.skipped,
                    "accounts_per_second": round(rate, 3),
                    "eta_seconds": round(eta.total_seconds()) if eta is not None else None,
                    "last_progress_at": (
                        found.last_progress_at.isoformat() if found.last_progress_at else None
                    ),
                    "stalled": stalled,
                }
            )
        )
        return
    day_of = found.for_day
    header = f"forecast run {day_of} (run {found.run_id}): "
    if found.finished_at is not None:
        took = found.finished_at - found.started_at
        header += (
            f"finished {_moment(found.finished_at, day_of)}, took {_duration(took)} "
            f"(started {_moment(found.started_at, day_of)})"
        )
    else:
        header += (
            f"running since {_moment(found.started_at, day_of)} "
            f"({_duration(now - found.started_at)})"
        )
    click.echo(header)
    chunks = f"chunks:   {found.chunks_done:,} of {found.chunks:,} done"
    if found.chunks_done < found.chunks:
        chunks += f", {found.chunks_in_progress:,} in progress, {found.chunks_waiting:,} waiting"
    click.echo(f"{chunks} ({found.chunk_size:,} accounts each)")
    click.echo(
        f"accounts: {found.done:,} done, {found.failed:,} failed, {found.pending:,} pending "
        f"of {found.accounts:,}"
    )
    if rate <= 0:
        click.echo("rate:     none settled yet")
    elif eta is None:
        click.echo(f"rate:     {_rate(rate)} accounts/s")
    else:
        finish = _moment(now + eta, day_of)
        click.echo(f"rate:     {_rate(rate)} accounts/s, ETA {_duration(eta)} ({finish})")
    if stalled:
        since = found.last_progress_at or found.started_at
        click.echo(
            f"stalled:  no progress since {_moment(since, day_of)}; are workers running? "
            "(the sweep queues its chunks again every 5 minutes)"
        )


def _moment(moment: datetime, day: date) -> str:
    """A time of the run's day as HH:MM:SS UTC, with the date when it is another day."""
    moment = moment.astimezone(UTC)
    if moment.date() == day:
        return f"{moment:%H:%M:%S} UTC"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _rate(per_second: float) -> str:
    """`1,234`, `45.2` or `0.0221`: three significant digits at least."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"


def _duration(span: timedelta) -> str:
    """`2h 05m`, `12m 30s` or `45s`."""
    seconds = max(int(span.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"
