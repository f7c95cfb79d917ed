"""The Alerts page: projected-quota alerts, the account's webhook endpoints with their delivery
logs, and the thresholds at which `quota.threshold_reached` fires.

Every view goes through `timo_hub.webhooks.endpoints`, the rules `/api/v1/webhooks` follows, with
the account of the signed-in user: another account's endpoint or delivery is simply not found
(404), as a malformed id is. A signing secret leaves the server once, on the page after the form
that made it (`sessions.hold_once`), like a new API key's. A test or a replay is queued for the
workers at once, as the API does; if the broker is down the workers' dispatch run sends it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from api.current import current_runtime
from api.dashboard import blueprint, display, sessions
from api.dashboard.forms import EVENT_WORDS, ConfirmForm, ThresholdsForm, WebhookForm
from api.dashboard.viewer import sign_in_required, viewer
from api.gate import DELIVERIES_EXTENSION
from timo_hub.accounts import service as accounts
from timo_hub.errors import DomainError, InvalidError, LimitReachedError
from timo_hub.usage import alerts
from timo_hub.webhooks import endpoints, store
from timo_hub.webhooks.dispatch import DeliveryQueue

MAX_ALERTS = 100
# What `hold_once` keeps for the next page carries this kind, so that a key's secret is never
# shown as a webhook's (nor the other way round).
ONCE_KIND = "webhook-secret"
_DELIVERY_ID = re.compile(r"^msg_[0-9a-f]{32}$")
_PERCENT = re.compile(r"^(\d{1,3})\s*%?$")


@dataclass(frozen=True)
class NewSecret:
    """A signing secret to show once: a new endpoint's, or a rotated one's."""

    secret: str
    url: str
    previous_signs_until: datetime | None
    """After a rotation: until when the previous secret signs too."""


@blueprint.get("/dashboard/alerts")
@sign_in_required
def alerts_page() -> ResponseReturnValue:
    """Projected-quota alerts, webhook endpoints (a new one's secret shown once), thresholds."""
    return _alerts_page(WebhookForm(formdata=None), _thresholds_form())


@blueprint.post("/dashboard/alerts/webhooks")
@sign_in_required
def add_webhook() -> ResponseReturnValue:
    """Register a webhook endpoint; its signing secret is shown once, on the next page."""
    form = WebhookForm()
    if form.validate_on_submit():
        runtime = current_runtime()
        try:
            endpoint = endpoints.create(
                runtime.database,
                runtime.settings,
                viewer().account_id,
                url=(form.url.data or "").strip(),
                events=form.events.data or [],
                description=(form.description.data or "").strip(),
                now=datetime.now(UTC),
            )
        except (InvalidError, LimitReachedError) as exc:
            _fail(form, exc)
        else:
            _hold_secret(endpoint, rotated=False)
            return redirect(url_for("dashboard.alerts_page"), 303)
    return _alerts_page(form, _thresholds_form(), status=422)


@blueprint.post("/dashboard/alerts/thresholds")
@sign_in_required
def alert_thresholds() -> ResponseReturnValue:
    """Set the percentages of the quota at which `quota.threshold_reached` fires."""
    form = ThresholdsForm()
    if form.validate_on_submit():
        wanted = _percentages(form.thresholds.data or "")
        if wanted is None:
            form.fail("thresholds", "Use whole numbers separated by commas, e.g. “50, 80, 100”.")
        else:
            try:
                kept = accounts.set_alert_thresholds(current_runtime(), viewer().account_id, wanted)
            except accounts.ChangeNotAnnouncedError as exc:
                kept = exc.committed  # saved; the web processes learn of it within the cache TTL
            except InvalidError as exc:
                _fail(form, exc)
                kept = None
            if kept is not None:
                said = ", ".join(f"{t}%" for t in kept) if kept else "none"
                flash(f"Alert thresholds saved: {said}.", "success")
                return redirect(url_for("dashboard.alerts_page"), 303)
    return _alerts_page(WebhookForm(formdata=None), form, status=422)


@blueprint.get("/dashboard/alerts/webhooks/<endpoint_id>")
@sign_in_required
def webhook_log(endpoint_id: str) -> ResponseReturnValue:
    """One endpoint's delivery log: deliveries newest first, each with every attempt."""
    endpoint = _owned(endpoint_id)
    if endpoint is None:
        return _no_endpoint()
    records = endpoints.deliveries(
        current_runtime().database,
        viewer().account_id,
        endpoint.id,
        limit=endpoints.MAX_DELIVERIES_LISTED + 1,
    )
    return render_template(
        "webhook_log.html",
        endpoint=endpoint,
        records=records[: endpoints.MAX_DELIVERIES_LISTED],
        has_more=len(records) > endpoints.MAX_DELIVERIES_LISTED,
        listed=endpoints.MAX_DELIVERIES_LISTED,
    )


@blueprint.post("/dashboard/alerts/webhooks/<endpoint_id>/test")
@sign_in_required
def test_webhook(endpoint_id: str) -> ResponseReturnValue:
    """Queue a `webhook.test` event to the endpoint, then show its delivery log."""
    endpoint = _owned(endpoint_id)
    if endpoint is None:
        return _no_endpoint()
    try:
        delivery = endpoints.send_test(
            current_runtime().database, viewer().account_id, endpoint.id, datetime.now(UTC)
        )
    except endpoints.EndpointDisabledError as exc:
        flash(exc.detail, "error")
    else:
        _deliveries().send([delivery.id])
        flash(
            f"A test event is queued for {endpoint.url}: its first attempt follows within "
            "seconds. Reload this page to see it.",
            "success",
        )
    return redirect(url_for("dashboard.webhook_log", endpoint_id=endpoint.id), 303)


@blueprint.route("/dashboard/alerts/webhooks/<endpoint_id>/rotate", methods=["GET", "POST"])
@sign_in_required
def rotate_webhook_secret(endpoint_id: str) -> ResponseReturnValue:
    """Confirm, then give the endpoint a new signing secret (shown once); the old one signs
    beside it for 24 hours."""
    endpoint = _owned(endpoint_id)
    if endpoint is None:
        return _no_endpoint()
    if request.method == "GET":
        return render_template(
            "webhook_rotate.html",
            endpoint=endpoint,
            overlap_hours=int(endpoints.ROTATION_OVERLAP.total_seconds() // 3600),
            form=ConfirmForm(),
        )
    rotated = endpoints.rotate_secret(
        current_runtime().database, viewer().account_id, endpoint.id, datetime.now(UTC)
    )
    _hold_secret(rotated, rotated=True)
    return redirect(url_for("dashboard.alerts_page"), 303)


@blueprint.post("/dashboard/alerts/webhooks/<endpoint_id>/enable")
@sign_in_required
def enable_webhook(endpoint_id: str) -> ResponseReturnValue:
    """Enable a disabled endpoint again; what it missed can be replayed from its log."""
    endpoint = _owned(endpoint_id)
    if endpoint is None:
        return _no_endpoint()
    endpoints.enable(current_runtime().database, viewer().account_id, endpoint.id)
    flash(
        f"Webhook endpoint {endpoint.url} is enabled. What failed while it was disabled is "
        "below: replay what it needs.",
        "success",
    )
    return redirect(url_for("dashboard.webhook_log", endpoint_id=endpoint.id), 303)


@blueprint.route("/dashboard/alerts/webhooks/<endpoint_id>/delete", methods=["GET", "POST"])
@sign_in_required
def delete_webhook(endpoint_id: str) -> ResponseReturnValue:
    """Confirm, then delete the endpoint and its delivery log."""
    endpoint = _owned(endpoint_id)
    if endpoint is None:
        return _no_endpoint()
    if request.method == "GET":
        return render_template("webhook_delete.html", endpoint=endpoint, form=ConfirmForm())
    endpoints.delete(current_runtime().database, viewer().account_id, endpoint.id)
    flash(f"Webhook endpoint {endpoint.url} is deleted; nothing more is sent to it.", "info")
    return redirect(url_for("dashboard.alerts_page"), 303)


@blueprint.post("/dashboard/alerts/webhooks/<endpoint_id>/deliveries/<delivery_id>/replay")
@sign_in_required
def replay_delivery(endpoint_id: str, delivery_id: str) -> ResponseReturnValue:
    """Send a finished delivery again under the same `webhook-id`."""
    endpoint = _owned(endpoint_id)
    if endpoint is None:
        return _no_endpoint()
    if not _DELIVERY_ID.match(delivery_id):
        return _no_delivery()
    try:
        delivery = endpoints.replay(
            current_runtime().database,
            viewer().account_id,
            endpoint.id,
            delivery_id,
            datetime.now(UTC),
        )
    except endpoints.DeliveryNotFoundError:
        return _no_delivery()
    except endpoints.EndpointDisabledError as exc:
        flash(exc.detail, "error")
    else:
        _deliveries().send([delivery.id])
        flash(
            f"Delivery {delivery.id} is queued again, under the same webhook-id. Reload this "
            "page to see its attempts.",
            "success",
        )
    return redirect(url_for("dashboard.webhook_log", endpoint_id=endpoint.id), 303)


@blueprint.app_template_filter("utc_seconds")
def utc_seconds(value: datetime) -> str:
    """A moment to the second, in UTC: attempts and retries are seconds apart."""
    return value.astimezone(UTC).strftime("%-d %b %Y, %H:%M:%S UTC")


def _alerts_page(
    webhook_form: WebhookForm, thresholds_form: ThresholdsForm, status: int = 200
) -> ResponseReturnValue:
    runtime = current_runtime()
    account_id = viewer().account_id
    listed = endpoints.list_all(runtime.database, account_id)
    return render_template(
        "alerts.html",
        alerts=alerts.account_alerts(runtime.database, account_id, MAX_ALERTS),
        alert_words=display.ALERT_WORDS,
        webhooks=listed,
        disabled_webhooks=endpoints.disabled(runtime.database, account_id),
        max_endpoints=endpoints.MAX_ENDPOINTS,
        webhook_form=webhook_form,
        event_words=EVENT_WORDS,
        thresholds_form=thresholds_form,
        new_secret=_take_secret(),
    ), status


def _thresholds_form() -> ThresholdsForm:
    """The thresholds form, filled with the account's thresholds now."""
    current = accounts.alert_thresholds(current_runtime(), viewer().account_id)
    return ThresholdsForm(formdata=None, thresholds=", ".join(str(t) for t in current))


def _percentages(text: str) -> list[int] | None:
    """Whole numbers from "50, 80%, 100" (empty pieces skipped); None if one is not a number."""
    found = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        match = _PERCENT.match(piece)
        if match is None:
            return None
        found.append(int(match.group(1)))
    return found


def _fail(form: WebhookForm | ThresholdsForm, error: DomainError) -> None:
    """Show a domain refusal on the field it names (or on the form)."""
    field = error.details.get("field")
    form.fail(field if isinstance(field, str) and field in form else "", error.detail)


def _hold_secret(endpoint: store.Endpoint, *, rotated: bool) -> None:
    """Keep the endpoint's secret on the server for the next page only."""
    held = {"kind": ONCE_KIND, "secret": endpoint.secret, "url": endpoint.url}
    if rotated and endpoint.previous_secret_expires_at is not None:
        held["previous_signs_until"] = endpoint.previous_secret_expires_at.isoformat()
    sessions.hold_once(held)


def _take_secret() -> NewSecret | None:
    """The secret `_hold_secret` kept, if this page is the one to show it (a GET: a HEAD, a
    link preview, must not use up the one showing). A key's, held for the keys page, stays."""
    if request.method != "GET":
        return None
    held = sessions.take_once()
    if held is None:
        return None
    if held.get("kind") != ONCE_KIND:
        sessions.hold_once(held)
        return None
    until = held.get("previous_signs_until")
    return NewSecret(
        secret=held["secret"],
        url=held["url"],
        previous_signs_until=datetime.fromisoformat(until) if until else None,
    )


def _owned(endpoint_id: str) -> store.Endpoint | None:
    """The signed-in account's endpoint with that id; None for anyone else's, or a bad id."""
    try:
        parsed = uuid.UUID(endpoint_id)
    except ValueError:
        return None
    try:
        return endpoints.get(current_runtime().database, viewer().account_id, parsed)
    except endpoints.EndpointNotFoundError:
        return None


def _deliveries() -> DeliveryQueue:
    queue: DeliveryQueue = current_app.extensions[DELIVERIES_EXTENSION]
    return queue


def _no_endpoint() -> ResponseReturnValue:
    return _error(
        404, "No such webhook endpoint", "This account has no webhook endpoint with that id."
    )


def _no_delivery() -> ResponseReturnValue:
    return _error(404, "No such delivery", "This webhook endpoint has no delivery with that id.")


def _error(status: int, title: str, detail: str) -> ResponseReturnValue:
    return render_template("error.html", title=title, detail=detail), status
