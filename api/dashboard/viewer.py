"""Who is looking: the signed-in user of the current page, and the guard every page uses."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec

from flask import g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from api.current import current_runtime
from api.dashboard import blueprint, sessions
from timo_hub.people.store import User

P = ParamSpec("P")


def signed_in() -> User | None:
    """The current page's user, if a valid session is signed in (looked up once per request)."""
    if "viewer" not in g:
        # Nobody, until the lookup succeeds: an error page after a failed lookup (PostgreSQL
        # down) renders for nobody instead of failing the same way again.
        g.viewer = None
        g.viewer = sessions.signed_in_user(current_runtime())
    user: User | None = g.viewer
    return user


def viewer() -> User:
    """The user of a page behind `sign_in_required`."""
    user = signed_in()
    if user is None:
        raise RuntimeError("the page is not behind sign_in_required")
    return user


def sign_in_required(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
    """Send visitors without a valid session to the sign-in page, and back here after."""

    @wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        if signed_in() is None:
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return guarded


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard page of this site, never anywhere else."""
    if (
        target
        and target.startswith("/dashboard")
        and "\\" not in target
        # A CR or LF would be refused in the Location header (a 500): no control characters.
        and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
    ):
        return target
    return url_for("dashboard.overview")


@blueprint.app_context_processor
def page_context() -> dict[str, object]:
    """What every page's frame shows: who is signed in (the sign-out form needs only the token).

    Nothing here reads the request's body: an error page about that body (413) renders too.
    """
    return {"viewer": signed_in(), "support_email": current_runtime().settings.support_email}
