"""Version 1 of the public API: one blueprint under `/api/v1`, one module per resource."""

from flask import Blueprint

from api.access import admit_request
from api.metering import record_call
from api.quota.enforcement import add_rate_limit_headers

blueprint = Blueprint("v1", __name__, url_prefix="/api/v1")
blueprint.before_request(admit_request)
blueprint.after_request(add_rate_limit_headers)
# Registered last so it runs first: the event records the status before anything else changes.
blueprint.after_request(record_call)

# Route modules register themselves on the blueprint when imported.
from api.v1 import account, health, keys, openapi, quota, usage  # noqa: E402, F401
