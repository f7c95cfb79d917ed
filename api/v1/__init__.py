"""Version 1 of the public API: one blueprint under `/api/v1`, one module per resource.

Every call but health and the OpenAPI document passes the gate's admission first (`api.gate`),
the blueprint's only hook.
"""

from flask import Blueprint

from api.gate import admit_request

blueprint = Blueprint("v1", __name__, url_prefix="/api/v1")
blueprint.before_request(admit_request)

# Route modules register themselves on the blueprint when imported.
from api.v1 import account, health, keys, openapi, quota, usage, webhooks  # noqa: E402, F401
