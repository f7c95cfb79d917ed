"""The signed-in pages: overview, usage, keys (the Settings page) and plans (the Alerts page is
`webhook_pages`).

Every page takes the account from the signed-in user (`viewer()`), never from the URL or a form,
so a session can see and change only its own account: a key id of another account is simply not
found, as in the API.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import cast, get_args

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from analytics.parameters import DEFAULT_HORIZON_DAYS, DEFAULT_MODEL, PeriodChoice
from api.authentication import EXTENSION as AUTHENTICATION
from api.authentication import Authenticator
from api.current import current_runtime
from api.dashboard import blueprint, display, sessions
from api.dashboard.forms import ConfirmForm, NewKeyForm
from api.dashboard.viewer import sign_in_required, viewer
from api.gate import DELIVERIES_EXTENSION, QUOTA_EXTENSION
from api.v1.schemas import FORBIDDEN_NAME_CATEGORIES
from timo_hub.accounts import service as accounts
from timo_hub.errors import DomainError
from timo_hub.quota.enforcer import QuotaEnforcer
from timo_hub.usage import forecasts, statistics
from timo_hub.usage.forecast_body import ForecastOut
from timo_hub.webhooks import endpoints as webhook_endpoints
from timo_hub.webhooks import key_events

logger = logging.getLogger(__name__)

# Characters that reorder the text after them: a name could read as another key's.
_DIRECTION_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@blueprint.get("/dashboard")
@sign_in_required
def overview() -> ResponseReturnValue:
    """Plan, the gauges of both windows (the month, the burst window), this month's calls with
    the forecast to its end, and what it means."""
    runtime = current_runtime()
    account = accounts.get_account(runtime, viewer().account_id)
    now = datetime.now(UTC)  # one clock for the whole page, the gauge's month included
    quota: QuotaEnforcer = current_app.extensions[QUOTA_EXTENSION]
    # One look reads both windows, as the admission script sees them: the limits in force (the
    # account's own, else its plan's), counting nothing.
    admission = quota.look(
        account.id,
        account.monthly_limit,
        now.timestamp(),
        account.burst_limit,
        account.burst_window_seconds,
    )
    forecast = _forecast(account.id, now, admission.used)
    # The calls that count, as the gauge and the forecast count them (not refusals).
    counted = statistics.counted_calls_this_month(runtime.database, account.id, now.date())
    plan_names = {plan.name: plan.display_name for plan in accounts.list_plans(runtime)}
    return render_template(
        "overview.html",
        account=account,
        plan_names=plan_names,
        contracted="month" in accounts.limit_overrides(runtime, account.id),
        gauge=display.gauge(admission),
        burst=display.burst_gauge(admission),
        forecast=forecast,
        month_days=display.month_days(counted, forecast, now.date()),
        accuracy=display.accuracy_words(forecast.accuracy if forecast else None),
        probability=display.probability_words(
            forecast.exhaustion_range80.probability if forecast else None
        ),
        today=now.date(),
        # An endpoint that answered 410, or failed for days, was disabled: its owner is told here.
        disabled_webhooks=webhook_endpoints.disabled(runtime.database, account.id),
    )


@blueprint.get("/dashboard/usage")
@sign_in_required
def usage() -> ResponseReturnValue:
    """7, 30 or 90 days of calls, errors and refusals, by day, endpoint and key."""
    asked = request.args.get("period", "30d")
    if asked not in get_args(PeriodChoice):
        return _error(400, "Unknown period", "Choose 7d, 30d or 90d.")
    period = cast(PeriodChoice, asked)
    today = datetime.now(UTC).date()
    stats = statistics.account_usage_stats(
        current_runtime().database, viewer().account_id, period, today
    )
    return render_template("usage.html", stats=stats, period=period, periods=get_args(PeriodChoice))


@blueprint.route("/dashboard/keys", methods=["GET", "POST"])
@sign_in_required
def keys() -> ResponseReturnValue:
    """The Settings page: the account's keys, a new key (shown once), revocation, and the limits
    the keys share."""
    runtime = current_runtime()
    account_id = viewer().account_id
    form = NewKeyForm()
    if form.validate_on_submit() and _account_is_active(account_id, form):
        name = (form.name.data or "").strip()
        if not _readable(name):
            form.fail("name", "Use visible characters, without direction overrides.")
        else:
            try:
                deliveries = current_app.extensions[DELIVERIES_EXTENSION]
                issued = key_events.issue_key(runtime, deliveries, account_id, name)
            except DomainError as exc:
                form.fail("name", exc.detail)
            else:
                # Held on the server for the next page only (five minutes at most), then gone:
                # a reload of that page shows the key no more, and re-posts nothing.
                sessions.hold_once({"secret": issued.secret, "name": issued.key.name})
                return redirect(url_for("dashboard.keys"), 303)
    # A HEAD (a link preview, a prefetch) must not use up the one showing.
    new_key = sessions.take_once() if request.method == "GET" else None
    if new_key is not None and "kind" in new_key:
        # A webhook's signing secret, held for the Alerts page: it stays there.
        sessions.hold_once(new_key)
        new_key = None
    listed = accounts.list_keys(runtime, account_id)
    account = accounts.get_account(runtime, account_id)  # its limits, which every key shares
    status = 422 if form.errors else 200
    page = render_template("keys.html", keys=listed, form=form, new_key=new_key, account=account)
    return page, status


@blueprint.route("/dashboard/keys/<key_id>/revoke", methods=["GET", "POST"])
@sign_in_required
def revoke(key_id: str) -> ResponseReturnValue:
    """Confirm, then revoke one of the account's keys; calls with it are refused at once."""
    runtime = current_runtime()
    account_id = viewer().account_id
    parsed = accounts.parse_id(key_id, accounts.KeyNotFoundError, "API key")
    key = next((k for k in accounts.list_keys(runtime, account_id) if k.id == parsed), None)
    if key is None:
        return _error(404, "No such key", "This account has no API key with that id.")
    if key.revoked_at is not None:
        flash(f"Key “{key.name}” ({key.prefix}…) was revoked already.", "info")
        return redirect(url_for("dashboard.keys"), 303)
    if request.method == "GET":
        return render_template("revoke.html", key=key, form=ConfirmForm())
    authenticator: Authenticator = current_app.extensions[AUTHENTICATION]
    authenticator.revoke(key.id, account_id)
    flash(f"Key “{key.name}” ({key.prefix}…) is revoked; calls with it are refused.", "info")
    return redirect(url_for("dashboard.keys"), 303)


@blueprint.get("/dashboard/plans")
@sign_in_required
def plans() -> ResponseReturnValue:
    """Plans and pricing, the account's own marked, and the limits in force when an operator
    set the account's own."""
    runtime = current_runtime()
    account = accounts.get_account(runtime, viewer().account_id)
    listed = accounts.list_plans(runtime)
    plan = next((p for p in listed if p.name == account.plan), None)
    own_limits = plan is None or (plan.monthly_limit, plan.burst_limit) != (
        account.monthly_limit,
        account.burst_limit,
    )
    return render_template("plans.html", plans=listed, account=account, own_limits=own_limits)


def _readable(name: str) -> bool:
    """A key name someone can read: something visible, nothing invisible that misleads."""
    categories = [unicodedata.category(ch) for ch in name]
    return (
        any(not c.startswith(("C", "Z")) for c in categories)
        and not any(c in FORBIDDEN_NAME_CATEGORIES for c in categories)
        and not any(ch in _DIRECTION_OVERRIDES for ch in name)
    )


def _account_is_active(account_id: uuid.UUID, form: NewKeyForm) -> bool:
    """A suspended account's keys would all be refused (403): say so instead of making one."""
    if accounts.get_account(current_runtime(), account_id).status == "active":
        return True
    form.fail("", "This account is suspended: its keys are refused. Contact support.")
    return False


def _forecast(account_id: uuid.UUID, now: datetime, used: int) -> ForecastOut | None:
    """The account's forecast (the stored one while the month has not moved on from it), or
    None if it cannot be made now."""
    try:
        return forecasts.get_forecast(
            current_runtime().database,
            account_id,
            days=DEFAULT_HORIZON_DAYS,
            model=DEFAULT_MODEL,
            now=now,
            live_used=used,
        )
    except DomainError:
        raise
    except Exception:
        # The page still shows the quota and usage; the forecast says it is unavailable.
        logger.exception("could not forecast account %s for its dashboard", account_id)
        return None


def _error(status: int, title: str, detail: str) -> ResponseReturnValue:
    return render_template("error.html", title=title, detail=detail), status
