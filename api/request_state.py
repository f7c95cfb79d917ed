"""What the gate knows of the request in flight: its clock, its id, its caller and its admission.

The gate (`api.gate`) opens one `RequestState` per request before Flask sees it and makes it the
current one (a context variable, so each thread of a threaded worker has its own); the admission
step fills in the caller; views, problem bodies and log records read it. Reading a context
variable costs a fraction of a hop through Flask's `g` proxy, which this replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from flask import Request

from api import request_ids
from timo_hub.accounts.principal import Principal
from timo_hub.platform import logs
from timo_hub.quota.admission import Admission

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


class RequestClock:
    """When a request started: epoch seconds (what it counts as) and a monotonic reading."""

    __slots__ = ("started_at", "started_perf")

    def __init__(self) -> None:
        self.started_at = time.time()
        self.started_perf = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the request started."""
        return time.perf_counter() - self.started_perf


class RequestState:
    """One request as the gate tracks it from its first byte to its answer."""

    __slots__ = ("admission", "clock", "principal", "request", "request_id", "touch")

    def __init__(self, supplied_request_id: str | None) -> None:
        self.clock = RequestClock()
        self.request_id = request_ids.accept_or_make(supplied_request_id)
        # Flask's request object, once Flask has made it (`GatedRequest`): after the answer
        # Flask unlinks it from the WSGI environ, and the gate still needs its route.
        self.request: Request | None = None
        self.principal: Principal | None = None
        self.admission: Admission | None = None
        # Bookkeeping to run once the answer has gone out (the key's `last_used_at`).
        self.touch: Callable[[], None] | None = None

    @property
    def log_ids(self) -> tuple[str, str, str]:
        """(request id, account id, key id) for log records; the ids are empty before
        authentication."""
        principal = self.principal
        if principal is None:
            return (self.request_id, "", "")
        return (self.request_id, principal.account_text, principal.key_text)


class GatedRequest(Request):
    """Flask's request, which the gate's state of the request keeps hold of."""

    def __init__(self, environ: WSGIEnvironment, *args: Any, **kwargs: Any) -> None:
        super().__init__(environ, *args, **kwargs)
        state = _CURRENT.get()
        if state is not None:
            state.request = self


_CURRENT: ContextVar[RequestState | None] = ContextVar("timo_request_state", default=None)


def current_request() -> RequestState | None:
    """The state of the request this thread is serving, or None outside one."""
    return _CURRENT.get()


Entered = tuple[Token[RequestState | None], Token[logs.LoggedRequest | None]]


def enter(state: RequestState) -> Entered:
    """Make `state` the current request's, for views and for log records; returns what `leave`
    takes."""
    return (_CURRENT.set(state), logs.current_request.set(state))


def leave(entered: Entered) -> None:
    """Restore what was current before `enter`."""
    _CURRENT.reset(entered[0])
    logs.current_request.reset(entered[1])
