"""The domain's errors: what went wrong in business terms, with no HTTP in them.

The domain packages (`timo_hub.accounts`, `timo_hub.quota`, `timo_hub.usage`) raise these; each
caller translates them in one place: the HTTP API into RFC 9457 problems (`api.problems`), the
CLI into its one-line `Error: …` messages (`timo_hub.cli.error_messages`). `detail` is written
for the person who will read it; `details` are machine-readable facts (a field name, a limit)
that a problem response carries as extension members.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a domain rule raises."""

    def __init__(self, detail: str, **details: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.details = details


class NotFoundError(DomainError):
    """No such thing (or not one the caller may know about)."""


class ConflictError(DomainError):
    """The change conflicts with the current state (a duplicate, for instance)."""


class InvalidError(DomainError):
    """A value breaks a rule of the domain (not an email address, an unknown plan)."""


class LimitReachedError(DomainError):
    """Allowed, but not now: a limit on how much of something an account may have or use."""

    def __init__(self, detail: str, *, retry_after: int | None = None, **details: Any) -> None:
        super().__init__(detail, **details)
        self.retry_after = retry_after
        """Seconds until the limit allows it again, when that is known."""


class UnavailableError(DomainError):
    """Not decided now, through no fault of the caller: a store the rule needs did not answer.

    Nothing was done; the same request may be repeated.
    """

    def __init__(self, detail: str, *, retry_after: int | None = None, **details: Any) -> None:
        super().__init__(detail, **details)
        self.retry_after = retry_after
        """Seconds after which a retry is likely to succeed, when that is known."""
