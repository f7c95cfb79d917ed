"""Request and response bodies of `/api/v1`, as pydantic models (the OpenAPI source of truth)."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from api.accounts import store


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(_utc_iso, return_type=str)]
# Characters PostgreSQL text cannot hold (NUL), that are invisible controls, or lone surrogates.
_FORBIDDEN_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}


class PlanOut(BaseModel):
    """A plan as the account sees it."""

    name: str
    monthly_limit: int | None = Field(description="Calls per UTC month; null means unlimited.")
    price_usd: float | None = Field(description="Monthly price; null means custom pricing.")


class AccountOut(BaseModel):
    """`GET /api/v1/account`."""

    id: uuid.UUID
    email: str
    plan: PlanOut
    status: str
    created_at: UtcDatetime

    @classmethod
    def of(cls, account: store.Account) -> AccountOut:
        """Build from a stored account."""
        price = float(account.price_usd) if account.price_usd is not None else None
        return cls(
            id=account.id,
            email=account.email,
            plan=PlanOut(name=account.plan, monthly_limit=account.monthly_limit, price_usd=price),
            status=account.status,
            created_at=account.created_at,
        )


class ApiKeyOut(BaseModel):
    """An API key as listed: never the secret or its hash."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None = Field(
        description="When the key was last used, to within a minute."
    )
    revoked_at: UtcDatetime | None

    @classmethod
    def of(cls, key: store.ApiKey) -> ApiKeyOut:
        """Build from a stored key."""
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class ApiKeyListOut(BaseModel):
    """`GET /api/v1/auth/keys`: newest first, revoked keys included."""

    keys: list[ApiKeyOut]


class CreatedApiKeyOut(ApiKeyOut):
    """`POST /api/v1/auth/keys`: the one response that carries the full key."""

    key: str = Field(description="The full API key. Shown only in this response: store it now.")


class CreateApiKeyIn(BaseModel):
    """Body of `POST /api/v1/auth/keys`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    name: str = Field(min_length=1, max_length=100, description="A label for the key.")

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in name):
            raise ValueError("must not contain control characters or unpaired surrogates")
        return name


class QuotaOut(BaseModel):
    """`GET /api/v1/account/quota`: this month's usage, this call included."""

    limit: int | None = Field(description="Calls allowed this UTC month; null means unlimited.")
    used: int = Field(description="Calls admitted this month, including this one.")
    remaining: int | None = Field(description="Calls left this month; null means unlimited.")
    reset: int = Field(description="Epoch seconds when the next month's quota starts.")
    period_start: UtcDatetime = Field(description="Start of this UTC month (inclusive).")
    period_end: UtcDatetime = Field(description="Start of the next UTC month (exclusive).")
