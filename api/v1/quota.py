"""`GET /api/v1/account/quota`: this month's usage, from the admission of this very call."""

from __future__ import annotations

from flask import current_app
from flask.typing import ResponseReturnValue

from api.current import current_admission
from api.openapi.registry import Reply, operation
from api.v1 import blueprint
from api.v1.schemas import QuotaOut
from timo_hub.quota.admission import Admission
from timo_hub.quota.period import Period


@operation(
    blueprint,
    "GET",
    "/account/quota",
    summary="This month's quota: limit, used, remaining",
    tag="account",
    replies=(
        Reply(200, "This month's and this burst window's usage, this call included.", QuotaOut),
    ),
)
def get_quota() -> ResponseReturnValue:
    """Limit, used, remaining and the reset time of the month and of the burst window; agrees
    with this response's headers."""
    admission = current_admission()
    return current_app.response_class(quota_json(admission), mimetype="application/json")


def quota_json(admission: Admission) -> str:
    """`QuotaOut` of an admission as JSON, byte for byte what pydantic would write.

    This is the metered endpoint clients poll most; building and validating a model per call
    cost more than the rest of the view, and every value here is one of ours (two integers, and
    the period's parts, formatted once per month).
    """
    period = admission.period
    tail = _PERIOD_TAILS.get(period)
    if tail is None:
        sample = QuotaOut(
            limit=None,
            used=0,
            remaining=None,
            reset=period.reset_epoch,
            period_start=period.start,
            period_end=period.end,
        ).model_dump_json()
        tail = sample[sample.index(',"reset"') : sample.index(',"burst"')]
        _PERIOD_TAILS[period] = tail
    burst = admission.burst
    window = "null"
    if burst is not None:
        window = (
            f'{{"limit":{burst.limit},"window_seconds":{burst.seconds},"used":{burst.used},'
            f'"remaining":{burst.remaining},"reset":{burst.reset_epoch}}}'
        )
    if admission.limit is None:
        return f'{{"limit":null,"used":{admission.used},"remaining":null{tail},"burst":{window}}}'
    used, limit, remaining = admission.used, admission.limit, admission.remaining
    return f'{{"limit":{limit},"used":{used},"remaining":{remaining}{tail},"burst":{window}}}'


_PERIOD_TAILS: dict[Period, str] = {}
