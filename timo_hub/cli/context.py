"""What every `timo-hub` subcommand shares: the settings and, on demand, resolved services."""

from __future__ import annotations

from functools import cached_property

import click

from timo_hub.platform.embedded import resolve_services
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings


class CliContext:
    """Lazily resolves embedded servers so `--help` and pure commands start nothing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def resolved(self) -> Settings:
        """Settings naming concrete servers (embedded ones started or joined if needed)."""
        try:
            return resolve_services(self.settings)
        except Exception as exc:  # a clear one-line error beats a traceback for an operator
            raise click.ClickException(f"cannot start embedded services: {exc}") from exc

    @cached_property
    def runtime(self) -> Runtime:
        """Connections for commands that talk to PostgreSQL or Redis."""
        return build_runtime(self.resolved)

    def close(self) -> None:
        """Close the connections a command opened."""
        if "runtime" in self.__dict__:
            self.runtime.close()


pass_cli = click.make_pass_decorator(CliContext)
