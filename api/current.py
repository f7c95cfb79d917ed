"""What a view may ask of the request it serves: the process's runtime and the caller."""

from __future__ import annotations

from flask import Flask, current_app

from api.request_state import RequestState, current_request
from timo_hub.accounts.principal import Principal
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admission

EXTENSION = "timo"


def init_app(app: Flask, runtime: Runtime) -> None:
    """Attach `runtime` to `app`."""
    app.extensions[EXTENSION] = runtime


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    runtime: Runtime = current_app.extensions[EXTENSION]
    return runtime


def current_request_state() -> RequestState:
    """The gate's state of the current request."""
    state = current_request()
    if state is None:
        raise RuntimeError("no request in flight, or the app is served without its gate")
    return state


def current_principal() -> Principal:
    """The authenticated caller of the current request (set by the gate)."""
    principal = current_request_state().principal
    if principal is None:
        raise RuntimeError("the current request has not been authenticated")
    return principal


def current_admission() -> Admission:
    """The quota's admission of the current call (set by the gate)."""
    admission = current_request_state().admission
    if admission is None:
        raise RuntimeError("the current request has not been admitted")
    return admission
