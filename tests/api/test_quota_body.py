"""`GET /api/v1/account/quota`: the body written by hand is the model's, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from api.v1.quota import quota_json
from api.v1.schemas import QuotaOut
from tests.support.accounts import new_customer
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admission
from timo_hub.quota.period import period_containing


@pytest.mark.parametrize("limit", [None, 0, 1000, 10**12])
@pytest.mark.parametrize("used", [0, 1, 999, 1000, 5000])
def test_the_fast_body_is_what_the_model_writes(limit: int | None, used: int) -> None:
    for moment in (datetime(2026, 12, 2, tzinfo=UTC), datetime(2027, 2, 28, 23, 59, tzinfo=UTC)):
        admission = Admission(True, used, limit, period_containing(moment))
        period = admission.period
        expected = QuotaOut(
            limit=limit,
            used=used,
            remaining=admission.remaining,
            reset=period.reset_epoch,
            period_start=period.start,
            period_end=period.end,
        ).model_dump_json()
        assert quota_json(admission) == expected


def test_the_body_agrees_with_the_headers(client: FlaskClient, runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="starter")
    response = client.get("/api/v1/account/quota", headers=customer.auth)
    body = QuotaOut.model_validate_json(response.get_data())
    assert (body.limit, body.used, body.remaining) == (5000, 1, 4999)
    assert response.headers["X-RateLimit-Remaining"] == "4999"
    assert response.headers["X-RateLimit-Reset"] == str(body.reset)
