"""Version 1 of the public API: one blueprint under `/api/v1`, one module per resource."""

from flask import Blueprint

from api.authentication import authenticate_request

blueprint = Blueprint("v1", __name__, url_prefix="/api/v1")
blueprint.before_request(authenticate_request)

# Route modules register themselves on the blueprint when imported.
from api.v1 import account, health, keys  # noqa: E402, F401
