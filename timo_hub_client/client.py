"""`TimoHubClient`: typed methods for every `/api/v1` operation, with retries on `503`."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from pydantic import BaseModel

from timo_hub_client import errors, rate_limit_fields
from timo_hub_client.models import (
    Account,
    ApiKey,
    CreatedApiKey,
    CreatedWebhook,
    Forecast,
    Health,
    Quota,
    RateLimit,
    UsageAlert,
    UsageStats,
    Webhook,
    WebhookDelivery,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
Model = TypeVar("Model", bound=BaseModel)
# Only these are safe to send again after the connection failed mid-request: they change nothing
# (GET) or end in the same state (DELETE of a key, PUT of the alert thresholds). A POST might have
# created a key or a webhook endpoint already, or rotated a secret.
IDEMPOTENT = frozenset({"GET", "DELETE", "PUT"})


class TimoHubClient:
    """A client of one Timo Hub API server with one API key.

    `base_url` defaults to `TIMO_API_URL` (else `http://127.0.0.1:8000`), `api_key` to
    `TIMO_API_KEY`. `503` answers (and, for GET, PUT and DELETE, connection failures) are retried up
    to `max_retries` times, waiting `backoff * 2**attempt` seconds (with jitter), or the server's
    `Retry-After` when it says more, capped at `max_wait`. After each authenticated call,
    `rate_limit` holds the response's rate-limit headers: the month's (`limit`, `remaining`,
    `reset`, as `X-RateLimit-*` give them) and every window's (`rate_limit.month`,
    `rate_limit.burst`, from `RateLimit-Policy` and `RateLimit`).

    `429` is never retried: a refusal by the burst window raises `BurstLimitExceededError`
    (`retry_after`: seconds until the next window), the month's `QuotaExceededError`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = base_url or os.environ.get("TIMO_API_URL") or DEFAULT_BASE_URL
        self.base_url = base.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("TIMO_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.session = session or requests.Session()
        self._sleep = sleep
        self.rate_limit: RateLimit | None = None

    def __enter__(self) -> TimoHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP session."""
        self.session.close()

    # Operations, in the order of the API reference.

    def health(self) -> Health:
        """Service health; raises `ServiceUnavailableError` when a dependency is down."""
        return self._call("GET", "/health", Health, authenticated=False)

    def account(self) -> Account:
        """Your account and plan."""
        return self._call("GET", "/account", Account)

    def quota(self) -> Quota:
        """This month's quota: limit, used (this call included), remaining, reset; and the burst
        window's (`burst`, None without a burst limit)."""
        return self._call("GET", "/account/quota", Quota)

    def usage_stats(self, period: str = "30d") -> UsageStats:
        """Usage statistics for the last `7d`, `30d` or `90d`."""
        return self._call("GET", "/usage/stats", UsageStats, params={"period": period})

    def usage_forecast(self, days: int = 30, model: str = "auto") -> Forecast:
        """Forecast of the next `days` (7 to 90) days, the month projection, the exhaustion date."""
        params = {"days": str(days), "model": model}
        return self._call("GET", "/usage/forecast", Forecast, params=params)

    def usage_alerts(self) -> list[UsageAlert]:
        """Projected-quota alerts, newest first."""
        body = self._request("GET", "/usage/alerts")
        return [UsageAlert.model_validate(alert) for alert in body["alerts"]]

    def list_keys(self) -> list[ApiKey]:
        """Your API keys, newest first, revoked ones included."""
        body = self._request("GET", "/auth/keys")
        return [ApiKey.model_validate(key) for key in body["keys"]]

    def create_key(self, name: str) -> CreatedApiKey:
        """A new API key; its `key` is shown only this once."""
        return self._call("POST", "/auth/keys", CreatedApiKey, json={"name": name})

    def revoke_key(self, key_id: uuid.UUID | str) -> None:
        """Revoke one of your keys."""
        self._request("DELETE", f"/auth/keys/{key_id}")

    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI 3.1 document."""
        return self._request("GET", "/openapi.json", authenticated=False)

    def create_webhook(self, url: str, events: list[str], description: str = "") -> CreatedWebhook:
        """Register an endpoint for `events`; its signing `secret` is shown only this once."""
        body = {"url": url, "events": events, "description": description}
        return self._call("POST", "/webhooks", CreatedWebhook, json=body)

    def list_webhooks(self) -> list[Webhook]:
        """Your webhook endpoints, oldest first, disabled ones included."""
        body = self._request("GET", "/webhooks")
        return [Webhook.model_validate(webhook) for webhook in body["webhooks"]]

    def get_webhook(self, webhook_id: uuid.UUID | str) -> Webhook:
        """One of your webhook endpoints."""
        return self._call("GET", f"/webhooks/{webhook_id}", Webhook)

    def delete_webhook(self, webhook_id: uuid.UUID | str) -> None:
        """Delete an endpoint and its delivery log."""
        self._request("DELETE", f"/webhooks/{webhook_id}")

    def rotate_webhook_secret(self, webhook_id: uuid.UUID | str) -> CreatedWebhook:
        """A new signing secret, shown only this once; the old one also signs for 24 hours."""
        return self._call("POST", f"/webhooks/{webhook_id}/rotate-secret", CreatedWebhook)

    def enable_webhook(self, webhook_id: uuid.UUID | str) -> Webhook:
        """Enable a disabled endpoint (then replay what it missed)."""
        return self._call("POST", f"/webhooks/{webhook_id}/enable", Webhook)

    def test_webhook(self, webhook_id: uuid.UUID | str) -> WebhookDelivery:
        """Queue a `webhook.test` event to the endpoint; its attempts follow in the log."""
        return self._call("POST", f"/webhooks/{webhook_id}/test", WebhookDelivery)

    def webhook_deliveries(
        self, webhook_id: uuid.UUID | str, limit: int = 50, before: str | None = None
    ) -> list[WebhookDelivery]:
        """The endpoint's last `limit` (1 to 100) deliveries, newest first, with every attempt;
        with `before` (a delivery's id, the last of a page), the ones older than it."""
        params = {"limit": str(limit)}
        if before is not None:
            params["before"] = before
        body = self._request("GET", f"/webhooks/{webhook_id}/deliveries", params=params)
        return [WebhookDelivery.model_validate(d) for d in body["deliveries"]]

    def replay_webhook_delivery(
        self, webhook_id: uuid.UUID | str, delivery_id: str
    ) -> WebhookDelivery:
        """Send a delivery again under the same `webhook-id` (a pending one is left as it is)."""
        path = f"/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"
        return self._call("POST", path, WebhookDelivery)

    def alert_thresholds(self) -> list[int]:
        """The percentages of the monthly quota at which `quota.threshold_reached` is sent."""
        thresholds: list[int] = self._request("GET", "/account/alert-thresholds")["thresholds"]
        return thresholds

    def set_alert_thresholds(self, thresholds: list[int]) -> list[int]:
        """Replace the thresholds (1 to 100, at most 10; `[]` for none); those now in force."""
        body = {"thresholds": thresholds}
        kept: list[int] = self._request("PUT", "/account/alert-thresholds", json=body)["thresholds"]
        return kept

    # Plumbing.

    def _call(self, method: str, path: str, model: type[Model], **kwargs: Any) -> Model:
        return model.model_validate(self._request(method, path, **kwargs))

    def _request(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        headers = {"Accept": "application/json", "User-Agent": "timo-hub-client/1.0"}
        if authenticated and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/api/v1{path}"
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, url, headers=headers, params=params, json=json, timeout=self.timeout
                )
            except requests.ConnectionError as exc:
                if method not in IDEMPOTENT or attempt >= self.max_retries:
                    raise errors.ServiceUnavailableError(0, {"detail": str(exc)}) from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            self._remember_rate_limit(response)
            if response.status_code == 503 and attempt < self.max_retries:
                self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            return self._result(response)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff * 2**attempt * random.uniform(0.8, 1.2)
        seconds = rate_limit_fields.number(retry_after)
        if seconds is not None:
            delay = max(delay, float(seconds))
        return min(delay, self.max_wait)

    def _remember_rate_limit(self, response: requests.Response) -> None:
        found = rate_limit_fields.read(response.headers, time.time())
        if found is not None:
            self.rate_limit = found

    def _result(self, response: requests.Response) -> Any:
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok:
            return body
        problem = body if isinstance(body, dict) else None
        if response.status_code == 429:
            raise _refusal(response, problem or {})
        kind = errors.BY_STATUS.get(response.status_code, errors.TimoHubError)
        if response.status_code == 503 and isinstance(body, dict) and "checks" in body:
            problem = {"detail": f"degraded: {body.get('checks')}", **body}
        raise kind(response.status_code, problem)


def _refusal(response: requests.Response, problem: dict[str, Any]) -> errors.QuotaExceededError:
    """The error for a `429`: the burst window's or the month's (or too many bad keys).

    The problem's `reset` is the moment the refusing window admits again; the headers stand
    in for what an older server's problem leaves out.
    """
    retry_after = rate_limit_fields.number(response.headers.get("Retry-After"))
    reset = problem.get("reset")
    if _refused_by_burst(problem):
        found = rate_limit_fields.read(response.headers, time.time())
        window = None if found is None else found.burst
        if window is not None:
            retry_after = retry_after if retry_after is not None else window.reset_after
            reset = reset or window.reset
        return errors.BurstLimitExceededError(429, problem, retry_after=retry_after, reset=reset)
    reset = reset or rate_limit_fields.number(response.headers.get("X-RateLimit-Reset"))
    return errors.QuotaExceededError(429, problem, retry_after=retry_after, reset=reset)


def _refused_by_burst(problem: dict[str, Any]) -> bool:
    """Whether the problem is the burst window's refusal (by its type, else its policy)."""
    kind = problem.get("type")
    if isinstance(kind, str) and kind.endswith("/burst-limit-exceeded"):
        return True
    return problem.get("policy") == "burst"
