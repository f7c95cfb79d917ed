"""A revoke answered by one web process is honoured by another within one second."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.accounts import Customer
from tests.support.web import web_process
from timo_hub.platform.settings import Settings

pytestmark = pytest.mark.slow


def test_revocation_reaches_another_web_process_within_a_second(
    settings: Settings, customer: Customer
) -> None:
    with web_process(settings) as first, web_process(settings) as second:
        doomed = requests.post(
            f"{first}/api/v1/auth/keys", headers=customer.auth, json={"name": "doomed"}, timeout=5
        ).json()
        doomed_auth = {"Authorization": f"Bearer {doomed['key']}"}
        # Both processes now hold the key in their caches.
        for base in (first, second):
            for _ in range(3):
                response = requests.get(f"{base}/api/v1/account", headers=doomed_auth, timeout=5)
                assert response.status_code == 200

        revoked = requests.delete(
            f"{first}/api/v1/auth/keys/{doomed['id']}", headers=customer.auth, timeout=5
        )
        assert revoked.status_code == 204
        answered = time.monotonic()
        while True:
            status = requests.get(
                f"{second}/api/v1/account", headers=doomed_auth, timeout=5
            ).status_code
            if status == 401:
                break
            assert status == 200
            assert time.monotonic() - answered < 1.0, "second process accepted it after 1 s"
            time.sleep(0.005)
        elapsed = time.monotonic() - answered
        assert (
            requests.get(f"{first}/api/v1/account", headers=doomed_auth, timeout=5).status_code
            == 401
        )
        # The customer's other key keeps working on both.
        for base in (first, second):
            assert requests.get(f"{base}/api/v1/account", headers=customer.auth, timeout=5).ok
        print(f"revocation seen by the second process after {elapsed * 1000:.1f} ms")
