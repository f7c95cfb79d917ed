"""`/api/v1/auth/keys`: list, create and revoke the caller's API keys."""

from __future__ import annotations

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from api.accounts import service
from api.authentication import EXTENSION, current_principal
from api.bodies import parse_body
from api.runtime import current_runtime
from api.v1 import blueprint
from api.v1.models import ApiKeyListOut, ApiKeyOut, CreateApiKeyIn, CreatedApiKeyOut


@blueprint.get("/auth/keys")
def list_keys() -> ResponseReturnValue:
    """The caller's keys, newest first, revoked ones included."""
    keys = service.list_keys(current_runtime(), current_principal().account_id)
    return jsonify(ApiKeyListOut(keys=[ApiKeyOut.of(k) for k in keys]).model_dump(mode="json"))


@blueprint.post("/auth/keys")
def create_key() -> ResponseReturnValue:
    """Create a key; the response is the only place its secret ever appears."""
    body = parse_body(CreateApiKeyIn)
    issued = service.issue_key(current_runtime(), current_principal().account_id, body.name)
    created = CreatedApiKeyOut(**ApiKeyOut.of(issued.key).model_dump(), key=issued.secret)
    response = jsonify(created.model_dump(mode="json"))
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.delete("/auth/keys/<key_id>")
def revoke_key(key_id: str) -> ResponseReturnValue:
    """Revoke one of the caller's keys; anyone else's (or no) key is simply not found."""
    parsed = service.parse_id(key_id, service.KeyNotFoundError, "API key")
    service.revoke_key(current_runtime(), parsed, account_id=current_principal().account_id)
    # This process forgets the key before answering, so a key that revoked itself is refused on
    # its very next request even if that lands here before the pub/sub message does.
    current_app.extensions[EXTENSION].cache.forget(key_id=parsed)
    return "", 204
