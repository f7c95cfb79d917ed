"""Redis goes away mid-month and comes back: 503 meanwhile, then service resumes, usage intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import close_app, create_app
from api.gate import QUOTA_EXTENSION
from tests.support.accounts import new_customer
from timo_hub.platform.embedded import EmbeddedRedis
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.embedded]


@pytest.mark.parametrize("data_survives", [True, False], ids=["restart", "restart-empty"])
def test_calls_fail_closed_then_resume_without_a_fresh_quota(
    tmp_path: Path, settings: Settings, runtime: Runtime, data_survives: bool
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.acquire()
    app = create_app(
        {"SETTINGS": settings.model_copy(update={"redis_url": url, "broker_url": None})}
    )
    client = app.test_client()
    customer = new_customer(runtime, plan="free")
    quota = "/api/v1/account/quota"
    try:
        for _ in range(10):
            assert client.get(quota, headers=customer.auth).status_code == 200
        app.extensions[QUOTA_EXTENSION].ledger.flush()

        server.stop()
        if not data_survives:
            for leftover in (tmp_path / "redis").glob("*.aof"):
                leftover.unlink()
            (tmp_path / "redis" / "dump.rdb").unlink(missing_ok=True)
        down = client.get(quota, headers=customer.auth)
        assert down.status_code == 503
        assert down.get_json()["type"] == "/problems/service-unavailable"

        server.acquire()
        back = client.get(quota, headers=customer.auth)
        assert back.status_code == 200
        assert back.get_json()["used"] == 11  # neither reset nor double-counted
    finally:
        close_app(app)
        server.release()
