"""`GET /api/v1/openapi.json`: the API's OpenAPI 3.1 document. No authentication, never counted."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict

from api.openapi import document
from api.openapi.registry import OPERATIONS, Reply, operation
from api.v1 import blueprint
from timo_hub import API_VERSION

EXTENSION = "timo.openapi"


class OpenApiDocumentOut(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


def openapi_document() -> dict[str, Any]:
    """The document, built once per app."""
    built = current_app.extensions.get(EXTENSION)
    if built is None:
        built = document.build(OPERATIONS, version=API_VERSION)
        current_app.extensions[EXTENSION] = built
    return built


@operation(
    blueprint,
    "GET",
    "/openapi.json",
    summary="This API's OpenAPI 3.1 document",
    tag="meta",
    authenticated=False,
    replies=(Reply(200, "The document.", OpenApiDocumentOut),),
)
def get_openapi() -> ResponseReturnValue:
    """The contract of every operation: parameters, bodies, answers, errors and headers."""
    response = jsonify(openapi_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
