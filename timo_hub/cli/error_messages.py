"""The domain's errors as the CLI reports them: one line, `Error: …`, and exit status 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from timo_hub.errors import DomainError


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn a domain error raised in the block into click's one-line error."""
    try:
        yield
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
