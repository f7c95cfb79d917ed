"""`GET /api/v1/account`: who the caller is."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from api.current import current_principal, current_runtime
from api.openapi.registry import Reply, operation
from api.v1 import blueprint
from api.v1.schemas import AccountOut
from timo_hub.accounts import service


@operation(
    blueprint,
    "GET",
    "/account",
    summary="Your account and plan",
    tag="account",
    replies=(Reply(200, "The account.", AccountOut),),
)
def get_account() -> ResponseReturnValue:
    """The caller's account and plan."""
    account = service.get_account(current_runtime(), current_principal().account_id)
    return jsonify(AccountOut.of(account).model_dump(mode="json"))
