"""`timo-hub broker migrate`: turn an older Timo Hub's RabbitMQ queues into quorum queues.

Versions before quorum queues declared classic queues and direct exchanges named `celery`,
`events` and `webhooks`; RabbitMQ refuses to declare a quorum queue over them, so workers and beat
refuse to start (naming this command) until it has run once. Stop the older workers and beat
first; web processes may keep running (what they cannot send meanwhile stays in their spools and
in PostgreSQL's due deliveries, and is sent later). Idempotent, and resumes an interrupted run.
"""

from __future__ import annotations

import click
from amqp.exceptions import AMQPError  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError

from events.publisher import task_queues
from timo_hub.cli.context import CliContext, pass_cli
from timo_hub.platform.broker_queues import QueueUpgradeError, upgrade_queues, uses_amqp
from timo_hub.webhooks.dispatch import webhooks_queue


@click.group()
def broker() -> None:
    """Work with the message broker."""


@broker.command("migrate")
@pass_cli
def migrate(ctx: CliContext) -> None:
    """Replace classic RabbitMQ queues with quorum queues, keeping their messages."""
    url = ctx.settings.broker_url
    if url is None or not uses_amqp(url):
        click.echo("The broker is Redis: nothing to migrate.")
        return
    queues = (*task_queues(url), webhooks_queue(url))
    try:
        results = upgrade_queues(url, queues, progress=click.echo)
    except QueueUpgradeError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, OperationalError) as exc:
        raise click.ClickException(f"cannot reach the broker: {exc}") from None
    except AMQPError as exc:  # refused midway (a concurrent declaration, permissions): resumable
        raise click.ClickException(
            f"the broker refused a step ({exc}); run `timo-hub broker migrate` again"
        ) from None
    for result in results:
        if not result.upgraded:
            click.echo(f"{result.name}: already a quorum queue")
