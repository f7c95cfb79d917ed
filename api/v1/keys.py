"""`/api/v1/auth/keys`: list, create and revoke the caller's API keys."""

from __future__ import annotations

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from api.authentication import EXTENSION, Authenticator
from api.bodies import parse_body
from api.current import current_principal, current_runtime
from api.gate import DELIVERIES_EXTENSION
from api.openapi.registry import PathParameter, Reply, operation
from api.query import parse_query
from api.v1 import blueprint
from api.v1.schemas import (
    ApiKeyListOut,
    ApiKeyListQuery,
    ApiKeyOut,
    CreateApiKeyIn,
    CreatedApiKeyOut,
)
from timo_hub.accounts import service
from timo_hub.webhooks import key_events

KEY_ID = PathParameter(
    "keyId", "The key's id (from the list).", {"type": "string", "format": "uuid"}
)


@operation(
    blueprint,
    "GET",
    "/auth/keys",
    summary="List your API keys",
    tag="keys",
    query=ApiKeyListQuery,
    replies=(Reply(200, "Every key, newest first; never a secret.", ApiKeyListOut),),
)
def list_keys() -> ResponseReturnValue:
    """The caller's keys, newest first, revoked ones included."""
    query = parse_query(ApiKeyListQuery)
    keys = service.list_keys(current_runtime(), current_principal().account_id, query.limit + 1)
    listing = ApiKeyListOut(
        keys=[ApiKeyOut.of(k) for k in keys[: query.limit]], has_more=len(keys) > query.limit
    )
    return jsonify(listing.model_dump(mode="json"))


@operation(
    blueprint,
    "POST",
    "/auth/keys",
    summary="Create an API key (the full key is shown only in this response)",
    tag="keys",
    body=CreateApiKeyIn,
    replies=(
        Reply(
            201,
            "The new key, with its secret: store it now.",
            CreatedApiKeyOut,
            links={
                "RevokeKey": {
                    "operationId": "revoke_key",
                    "parameters": {"keyId": "$response.body#/id"},
                    "description": "The new key's id revokes it.",
                }
            },
        ),
        Reply(409, "The account already has 25 active keys."),
    ),
)
def create_key() -> ResponseReturnValue:
    """Create a key; the response is the only place its secret ever appears."""
    body = parse_body(CreateApiKeyIn)
    deliveries = current_app.extensions[DELIVERIES_EXTENSION]
    issued = key_events.issue_key(
        current_runtime(), deliveries, current_principal().account_id, body.name
    )
    created = CreatedApiKeyOut(**ApiKeyOut.of(issued.key).model_dump(), key=issued.secret)
    response = jsonify(created.model_dump(mode="json"))
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@operation(
    blueprint,
    "DELETE",
    "/auth/keys/<key_id>",
    summary="Revoke an API key permanently",
    tag="keys",
    path_parameters=(KEY_ID,),
    replies=(Reply(204, "Revoked (or already revoked: safe to retry)."),),
)
def revoke_key(key_id: str) -> ResponseReturnValue:
    """Revoke one of the caller's keys; anyone else's (or no) key is simply not found."""
    parsed = service.parse_id(key_id, service.KeyNotFoundError, "API key")
    authenticator: Authenticator = current_app.extensions[EXTENSION]
    authenticator.revoke(parsed, current_principal().account_id)
    return "", 204
