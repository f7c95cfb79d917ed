"""`/signup`, `/login`, `/logout`, `/invitations/<token>` and `/dashboard/password`."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from api.current import current_runtime
from api.dashboard import blueprint, known_devices, sessions
from api.dashboard.forms import (
    ChangePasswordForm,
    SetPasswordForm,
    SignInForm,
    SignUpForm,
)
from api.dashboard.viewer import safe_next, sign_in_required, signed_in, viewer
from timo_hub.errors import ConflictError, InvalidError
from timo_hub.people import service as people

logger = logging.getLogger(__name__)


@blueprint.route("/signup", methods=["GET", "POST"])
def signup() -> ResponseReturnValue:
    """Open an account on the free plan with its owner, and sign the owner in."""
    if signed_in() is not None:
        return redirect(url_for("dashboard.overview"))
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            email, password = form.email.data or "", form.password.data or ""
            user = people.sign_up(current_runtime(), email, password, request.remote_addr)
        except people.SignInThrottledError as exc:
            form.fail("", exc.detail)
            page = render_template("signup.html", form=form)
            return page, 429, {"Retry-After": str(exc.retry_after)}
        except (InvalidError, ConflictError) as exc:
            form.fail(exc.details.get("field", ""), exc.detail)
        else:
            sessions.begin(user)
            logger.info("account opened by signup (user %s, account %s)", user.id, user.account_id)
            flash("Welcome! Your account is on the Free plan. Create an API key to start.", "info")
            answer = redirect(url_for("dashboard.keys"), 303)
            known_devices.remember(answer, user)
            return answer
    return render_template("signup.html", form=form), 422 if form.errors else 200


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Sign in with email and password."""
    target = safe_next(request.args.get("next"))
    if signed_in() is not None:
        return redirect(target)
    form = SignInForm()
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            email = form.email.data or ""
            user = people.sign_in(
                current_runtime(),
                email,
                form.password.data or "",
                request.remote_addr,
                known_devices=known_devices.marks(),
            )
        except people.SignInThrottledError as exc:
            form.fail("", exc.detail)
            status, headers = 429, {"Retry-After": str(exc.retry_after)}
        except people.SignInRefusedError as exc:
            form.fail("", exc.detail)
            status = 401
        else:
            sessions.begin(user)
            answer = redirect(target, 303)
            known_devices.remember(answer, user)
            return answer
    elif form.errors:
        status = 422
    return render_template("login.html", form=form, next=request.args.get("next")), status, headers


@blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out: the session ends on the server, not only in this browser."""
    sessions.end()
    flash("You are signed out.", "info")
    return redirect(url_for("dashboard.login"), 303)


@blueprint.route("/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str) -> ResponseReturnValue:
    """Set a password through a one-time link an operator printed."""
    runtime = current_runtime()
    try:
        invited = people.invited_user(runtime, token)
    except people.InvitationNotFoundError as exc:
        return render_template("error.html", title="Link not usable", detail=exc.detail), 404
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            user = people.accept_invitation(runtime, token, form.password.data or "")
        except people.InvitationNotFoundError as exc:
            return render_template("error.html", title="Link not usable", detail=exc.detail), 404
        except InvalidError as exc:
            form.fail("password", exc.detail)
        else:
            sessions.begin(user)
            flash("Your password is set; you are signed in.", "info")
            answer = redirect(url_for("dashboard.overview"), 303)
            known_devices.remember(answer, user)
            return answer
    status = 422 if form.errors else 200
    return render_template("invitation.html", form=form, email=invited.email), status


@blueprint.route("/dashboard/password", methods=["GET", "POST"])
@sign_in_required
def password() -> ResponseReturnValue:
    """Change the password; every other session of this user ends, this one goes on."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            user = people.change_password(
                current_runtime(),
                viewer().id,
                form.current_password.data or "",
                form.password.data or "",
                request.remote_addr,
            )
        except people.SignInThrottledError as exc:
            form.fail("", exc.detail)
            page = render_template("password.html", form=form)
            return page, 429, {"Retry-After": str(exc.retry_after)}
        except InvalidError as exc:
            form.fail(exc.details.get("field", "password"), exc.detail)
        else:
            sessions.begin(user)
            flash("Password changed. Every other session is signed out.", "info")
            answer = redirect(url_for("dashboard.keys"), 303)
            known_devices.remember(answer, user)  # the old password's mark is void
            return answer
    status = 422 if form.errors else 200
    return render_template("password.html", form=form), status
