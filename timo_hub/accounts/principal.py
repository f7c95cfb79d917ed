"""Who is calling: the key, its account, and the account's plan, limits and state at
authentication."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid key: the key, its account, the account's plan and state."""

    key_id: uuid.UUID
    account_id: uuid.UUID
    account_status: str
    plan: str
    monthly_limit: int | None
    """Calls per UTC month (the account's own limit, else its plan's); None: unlimited."""
    alert_thresholds: tuple[int, ...] = (50, 80, 100)
    """Percentages of the monthly limit at which a `quota.threshold_reached` webhook fires,
    ascending."""
    burst_limit: int | None = None
    """Calls per burst window (the account's own limit, else its plan's); None: no burst limit."""
    burst_window_seconds: int = 60
    """The burst window's length; it divides an hour."""

    def __post_init__(self) -> None:
        # PostgreSQL hands the array over as a list; a principal stays hashable and immutable.
        if not isinstance(self.alert_thresholds, tuple):
            object.__setattr__(self, "alert_thresholds", tuple(self.alert_thresholds))

    @cached_property
    def account_text(self) -> str:
        """`account_id` as text, made once per cached principal (logs and events use it)."""
        return str(self.account_id)

    @cached_property
    def key_text(self) -> str:
        """`key_id` as text, made once per cached principal."""
        return str(self.key_id)
