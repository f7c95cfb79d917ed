"""`GET /api/v1/account/quota`: this month's usage, from the admission of this very call."""

from __future__ import annotations

from flask import current_app, g
from flask.typing import ResponseReturnValue

from api.openapi.registry import Reply, operation
from api.v1 import blueprint
from api.v1.schemas import QuotaOut
from timo_hub.quota.admission import Admission


@operation(
    blueprint,
    "GET",
    "/account/quota",
    summary="This month's quota: limit, used, remaining",
    tag="account",
    replies=(Reply(200, "This month's usage, this call included.", QuotaOut),),
)
def get_quota() -> ResponseReturnValue:
    """Limit, used, remaining and the reset time; agrees with this response's headers."""
    admission: Admission = g.admission
    body = QuotaOut(
        limit=admission.limit,
        used=admission.used,
        remaining=admission.remaining,
        reset=admission.period.reset_epoch,
        period_start=admission.period.start,
        period_end=admission.period.end,
    )
    return current_app.response_class(body.model_dump_json(), mimetype="application/json")
