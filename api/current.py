"""What a view may ask of the request it serves: the process's runtime and the caller."""

from __future__ import annotations

from flask import Flask, current_app, g

from timo_hub.accounts.principal import Principal
from timo_hub.platform.runtime import Runtime

EXTENSION = "timo"


def init_app(app: Flask, runtime: Runtime) -> None:
    """Attach `runtime` to `app`."""
    app.extensions[EXTENSION] = runtime


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    runtime: Runtime = current_app.extensions[EXTENSION]
    return runtime


def current_principal() -> Principal:
    """The authenticated caller of the current request (set by the gate)."""
    principal: Principal = g.principal
    return principal
