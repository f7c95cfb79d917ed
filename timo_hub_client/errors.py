"""Errors the client raises: one per kind of problem the API answers."""

from __future__ import annotations

from typing import Any


class TimoHubError(Exception):
    """The API answered with a problem (RFC 9457), or could not be reached."""

    def __init__(self, status: int, problem: dict[str, Any] | None = None) -> None:
        self.status = status
        self.problem = problem or {}
        self.type: str | None = self.problem.get("type")
        self.detail: str = self.problem.get("detail") or f"HTTP {status}"
        self.request_id: str | None = self.problem.get("request_id")
        super().__init__(f"{status}: {self.detail}")


class RequestRejectedError(TimoHubError):
    """400, 413, 415 or 422: the request itself is wrong; `errors` names the fields."""

    @property
    def errors(self) -> list[dict[str, str]]:
        """The invalid fields or parameters and why.

        A value refused by a rule past the body's shape (a webhook URL that is not https, say)
        comes as one `field` member beside the `detail`: it is listed here the same way.
        """
        listed = self.problem.get("errors")
        if listed:
            return list(listed)
        field = self.problem.get("field")
        return [{"field": field, "message": self.detail}] if isinstance(field, str) else []


class AuthenticationError(TimoHubError):
    """401: missing, malformed, unknown or revoked key."""


class ForbiddenError(TimoHubError):
    """403: the account is suspended."""


class NotFoundError(TimoHubError):
    """404: no such resource on this account."""


class ConflictError(TimoHubError):
    """409: e.g. the account already has 25 active keys (or 10 webhook endpoints), or the
    webhook endpoint is disabled (enable it first)."""


class QuotaExceededError(TimoHubError):
    """429: the month's quota is used up (or too many bad keys came from this address).

    Not retried by the client: `retry_after` (seconds) and `reset` (epoch seconds of the next
    month, when known) say when calls will be accepted again. `policy` names the window that
    refused the call (`month`; None for too many bad keys) and `violated_policies` every window
    that was full.

    A refusal by the burst window raises the subclass `BurstLimitExceededError`, so an
    `except QuotaExceededError` still catches every `429`.
    """

    def __init__(
        self,
        status: int,
        problem: dict[str, Any] | None,
        *,
        retry_after: int | None,
        reset: int | None,
    ) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after
        self.reset = reset
        self.limit: int | None = self.problem.get("limit")
        self.used: int | None = self.problem.get("used")
        self.policy: str | None = self.problem.get("policy")
        self.violated_policies: list[str] = list(self.problem.get("violated-policies") or [])


class BurstLimitExceededError(QuotaExceededError):
    """429: the burst window (a minute by default) has admitted all its calls; the month's quota
    was not charged for the refused call.

    `retry_after` is the whole seconds until the next window opens (at least 1); `reset` the epoch
    second it opens; `limit`, `used` and `window_seconds` are the burst window's.
    """

    @property
    def window_seconds(self) -> int | None:
        """The burst window's length, as the problem gives it."""
        found = self.problem.get("window_seconds")
        return found if isinstance(found, int) else None


class ServiceUnavailableError(TimoHubError):
    """503 (or no answer) after every retry."""


BY_STATUS: dict[int, type[TimoHubError]] = {
    400: RequestRejectedError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestRejectedError,
    415: RequestRejectedError,
    422: RequestRejectedError,
    503: ServiceUnavailableError,
}
