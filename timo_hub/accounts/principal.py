"""Who is calling: the key, its account, and the account's plan and state at authentication."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid key: the key, its account, the account's plan and state."""

    key_id: uuid.UUID
    account_id: uuid.UUID
    account_status: str
    plan: str
    monthly_limit: int | None
