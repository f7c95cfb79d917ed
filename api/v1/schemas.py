"""Request and response bodies of `/api/v1`, as pydantic models (the OpenAPI source of truth)."""

from __future__ import annotations

import unicodedata
import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.query import WholeNumber
from timo_hub.accounts import store
from timo_hub.platform.json_types import UtcDatetime

# Characters PostgreSQL text cannot hold (NUL), that are invisible controls, or lone surrogates.
# Unicode categories a key name may not contain: controls, surrogates, private use, unassigned.
FORBIDDEN_NAME_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})


class PlanOut(BaseModel):
    """A plan as the account sees it."""

    name: str
    monthly_limit: int | None = Field(
        description="Calls per UTC month in force (the account's contract, else its plan's); "
        "null means unlimited."
    )
    price_usd: float | None = Field(description="Monthly price; null means custom pricing.")
    burst_limit: int | None = Field(
        default=None,
        description="Calls per burst window in force (the account's own, else its plan's); "
        "null means no burst limit.",
    )
    burst_window_seconds: int = Field(default=60, description="The burst window's length.")


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
            plan=PlanOut(
                name=account.plan,
                monthly_limit=account.monthly_limit,
                price_usd=price,
                burst_limit=account.burst_limit,
                burst_window_seconds=account.burst_window_seconds,
            ),
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
    """`GET /api/v1/auth/keys`: active keys first, then revoked ones; newest first in each."""

    keys: list[ApiKeyOut]
    has_more: bool = Field(
        description="True when more (revoked) keys exist beyond `limit`. Active keys (at most 25) "
        "come first, so the default limit never cuts one off."
    )


class ApiKeyListQuery(BaseModel):
    """Query of `GET /api/v1/auth/keys`."""

    model_config = ConfigDict(extra="ignore")

    limit: WholeNumber = Field(
        100, ge=1, le=100, description="How many keys at most: active ones first."
    )


class CreatedApiKeyOut(ApiKeyOut):
    """`POST /api/v1/auth/keys`: the one response that carries the full key."""

    key: str = Field(description="The full API key. Shown only in this response: store it now.")


class CreateApiKeyIn(BaseModel):
    """Body of `POST /api/v1/auth/keys`."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"name": "My API Key"}]}
    )

    name: str = Field(
        min_length=1,
        max_length=100,
        # Documents the rule below: no leading or trailing whitespace, no line breaks.
        json_schema_extra={"pattern": r"^\S(.*\S)?$"},
        description="A label for the key: 1 to 100 characters, no leading or trailing spaces, "
        "no control characters.",
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        if any(unicodedata.category(ch) in FORBIDDEN_NAME_CATEGORIES for ch in name):
            raise ValueError("must not contain control characters or unpaired surrogates")
        # Refused rather than trimmed, so that what the schema calls invalid is never accepted.
        if name != name.strip():
            raise ValueError("must not start or end with whitespace")
        return name


class BurstWindowOut(BaseModel):
    """The current burst window: a short fixed window (a minute by default) beside the month."""

    limit: int = Field(description="Calls the window admits.")
    window_seconds: int = Field(description="The window's length; windows start on its multiples.")
    used: int = Field(description="Calls admitted in this window, including this one.")
    remaining: int = Field(description="Calls this window still admits.")
    reset: int = Field(description="Epoch seconds when the next window starts.")


class QuotaOut(BaseModel):
    """`GET /api/v1/account/quota`: this month's usage, this call included, and the burst
    window's."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "limit": 5000,
                    "used": 1579,
                    "remaining": 3421,
                    "reset": 1796083200,
                    "period_start": "2026-11-01T00:00:00Z",
                    "period_end": "2026-12-01T00:00:00Z",
                    "burst": {
                        "limit": 300,
                        "window_seconds": 60,
                        "used": 12,
                        "remaining": 288,
                        "reset": 1795185060,
                    },
                }
            ]
        }
    )

    limit: int | None = Field(description="Calls allowed this UTC month; null means unlimited.")
    used: int = Field(description="Calls admitted this month, including this one.")
    remaining: int | None = Field(description="Calls left this month; null means unlimited.")
    reset: int = Field(description="Epoch seconds when the next month's quota starts.")
    period_start: UtcDatetime = Field(description="Start of this UTC month (inclusive).")
    period_end: UtcDatetime = Field(description="Start of the next UTC month (exclusive).")
    burst: BurstWindowOut | None = Field(
        default=None, description="The burst window; null when the account has no burst limit."
    )


class FieldErrorOut(BaseModel):
    """One invalid field or parameter."""

    field: str
    message: str


class ProblemOut(BaseModel):
    """An RFC 9457 problem: every error this API answers has this shape.

    Some problems add members: `errors` (invalid fields), `allowed`, `minimum` and `maximum`
    (query parameters), `policy`, `limit`, `used`, `reset` and `violated-policies` (a limit
    reached: `window_seconds` too for the burst window).
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "No API key with id 0f6f1c2e-9a4b-4c1d-8e2f-3a4b5c6d7e8f.",
                    "instance": "/api/v1/auth/keys/0f6f1c2e-9a4b-4c1d-8e2f-3a4b5c6d7e8f",
                    "request_id": "4f1c2b7a9e0d4c21a6b3f8e2d1c0b9a8",
                }
            ]
        },
    )

    type: str = Field(
        description="Stable identifier of the kind of problem, e.g. `/problems/not-found`."
    )
    title: str
    status: int
    detail: str = Field(description="What went wrong, for a human.")
    instance: str = Field(description="The path that was requested.")
    request_id: str | None = Field(description="Quote this to support.")
    errors: list[FieldErrorOut] | None = None


class ClusterOut(BaseModel):
    """A Redis Cluster's state as one of its nodes sees it."""

    cluster_state: str = Field(description="`ok`, or `fail` (then Redis is down).")
    slots_served: int = Field(description="Hash slots served (16384 when every slot is).")
    masters: int = Field(description="Masters serving slots.")
    known_nodes: int = Field(description="Nodes the cluster knows, replicas included.")


class DependencyOut(BaseModel):
    """One dependency's state."""

    status: str = Field(description="`up` or `down`.")
    latency_ms: float | None = None
    error: str | None = Field(None, description="The kind of failure, when down.")
    cluster: ClusterOut | None = Field(
        None,
        description="For `redis` on a Redis Cluster (`TIMO_REDIS_CLUSTER=true`): its state. "
        "Redis is `down` while any slot is not served (a master lost, its replica not yet "
        "promoted).",
    )


class WorkersOut(BaseModel):
    """When a worker last ran the scheduled heartbeat."""

    last_heartbeat: str | None
    heartbeat_age_seconds: float | None


class HealthOut(BaseModel):
    """`GET /api/v1/health`."""

    status: str = Field(description="`ok`, or `degraded` when a dependency is down (503).")
    version: str
    checks: dict[str, DependencyOut] = Field(description="`postgresql`, `redis` and `broker`.")
    workers: WorkersOut
