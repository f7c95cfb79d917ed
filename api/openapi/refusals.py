"""The problems that refuse a call because a window of its account's limits is full (`429`), as
the OpenAPI document describes them.

`api.problems` builds these bodies from the quota's errors (`timo_hub.quota.enforcer`); the
models here only describe them, with every extension member each carries, and a test checks
real refusals against them member by member, so the description cannot drift from what is sent.
A `429` for too many bad keys from one address is a plain `ProblemOut`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from api.v1.schemas import ProblemOut

Policy = Literal["month", "burst"]


class QuotaExceededProblemOut(ProblemOut):
    """`/problems/quota-exceeded`: the month's quota is used up. `Retry-After` is the seconds
    until the next UTC month starts plus a random spread of up to 60 s, so that refused clients
    do not all come back in its first second (1 while calls reserved by web processes may still
    be returned)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/quota-exceeded",
                    "title": "Quota Exceeded",
                    "status": 429,
                    "detail": "This account has used its 1,000 calls for the month; the quota "
                    "resets at 2026-12-01T00:00:00Z.",
                    "instance": "/api/v1/account",
                    "request_id": "4f1c2b7a9e0d4c21a6b3f8e2d1c0b9a8",
                    "policy": "month",
                    "limit": 1000,
                    "used": 1000,
                    "reset": 1796083200,
                    "violated-policies": ["month"],
                }
            ]
        },
    )

    type: Literal["/problems/quota-exceeded"] = Field(
        description="Stable identifier of the kind of problem."
    )
    policy: Literal["month"] = Field(description="The window that refused the call.")
    limit: int = Field(description="Calls the month admits.")
    used: int = Field(description="Calls counted this month (or reserved by web processes).")
    reset: int = Field(description="Epoch seconds when the next UTC month (and quota) starts.")
    violated_policies: list[Policy] = Field(
        alias="violated-policies",
        description="Every window that is full, as the IETF rate-limit headers draft's "
        '`quota-exceeded` problem names them: `["month"]`, or `["month", "burst"]` when the '
        "burst window is full too.",
    )


class BurstLimitExceededProblemOut(ProblemOut):
    """`/problems/burst-limit-exceeded`: the burst window (a minute by default) has admitted all
    its calls. The refused call costs nothing from the month's quota; `Retry-After` is the whole
    seconds until the next window opens, at least 1 (plus a random spread of up to 60 s in the
    month's last window, which ends with the month; 1 while reserved calls may be returned)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/burst-limit-exceeded",
                    "title": "Burst Limit Exceeded",
                    "status": 429,
                    "detail": "This account has made its 60 calls for this minute; the next "
                    "window opens in 17 s. The month's quota is not charged for refused calls.",
                    "instance": "/api/v1/account/quota",
                    "request_id": "9a2e4c71d05b4f3e8c6a1b2d3e4f5a6b",
                    "policy": "burst",
                    "limit": 60,
                    "window_seconds": 60,
                    "used": 60,
                    "reset": 1795185060,
                    "violated-policies": ["burst"],
                }
            ]
        },
    )

    type: Literal["/problems/burst-limit-exceeded"] = Field(
        description="Stable identifier of the kind of problem."
    )
    policy: Literal["burst"] = Field(description="The window that refused the call.")
    limit: int = Field(description="Calls the burst window admits.")
    window_seconds: int = Field(
        description="The window's length; windows start on its multiples (epoch seconds)."
    )
    used: int = Field(description="Calls admitted in this window.")
    reset: int = Field(description="Epoch seconds when the next window starts.")
    violated_policies: list[Policy] = Field(
        alias="violated-policies", description='Every window that is full: `["burst"]`.'
    )


REFUSALS = (QuotaExceededProblemOut, BurstLimitExceededProblemOut)
