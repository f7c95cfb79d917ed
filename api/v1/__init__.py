"""Version 1 of the public API: one blueprint under `/api/v1`, one module per resource."""

from flask import Blueprint

blueprint = Blueprint("v1", __name__, url_prefix="/api/v1")

# Route modules register themselves on the blueprint when imported.
from api.v1 import health  # noqa: E402, F401
