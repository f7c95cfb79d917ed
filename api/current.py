"""Access to the process's `Runtime` from inside a request."""

from __future__ import annotations

from flask import Flask, current_app

from timo_hub.platform.runtime import Runtime

EXTENSION = "timo"


def init_app(app: Flask, runtime: Runtime) -> None:
    """Attach `runtime` to `app`."""
    app.extensions[EXTENSION] = runtime


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return current_app.extensions[EXTENSION]
