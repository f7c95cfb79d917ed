"""Reading JSON request bodies into pydantic models, with precise problem responses.

Order of checks, each with its own status: content type (415), size (413, enforced by Flask's
`MAX_CONTENT_LENGTH` before the body is read), JSON syntax (400), shape and values (422, naming
every offending field).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from gunicorn.http.errors import ParseException
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from api.problems import BadRequestError, UnsupportedMediaTypeError, ValidationFailedError

Model = TypeVar("Model", bound=BaseModel)

# gunicorn's body reader raises its `ParseException`s (bad chunk sizes, missing terminators) and
# `NoMoreData` (an `OSError`) for bodies it cannot read.
_UNREADABLE_BODY: tuple[type[Exception], ...] = (OSError, ValueError, ParseException)


def parse_body(model: type[Model]) -> Model:
    """The request's JSON body as `model`, or the problem that explains why not."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError(
            "Send the body as JSON with 'Content-Type: application/json'."
        )
    try:
        raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    except HTTPException:
        raise  # 413, or the client gone: Werkzeug's own answers
    except _UNREADABLE_BODY as exc:
        # The server's reader refused the bytes (a malformed chunk, a body shorter than its
        # Content-Length): the caller's mistake, not our failure.
        raise BadRequestError(f"The body could not be read: {type(exc).__name__}.") from None
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"The body is not valid JSON: {exc}.") from None
    except RecursionError:
        # Thousands of nested brackets fit in a small body; the parser must not become a 500.
        raise BadRequestError("The body is not valid JSON: nested too deeply.") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [_describe(error) for error in exc.errors(include_url=False)]
        fields = ", ".join(e["field"] for e in errors)
        raise ValidationFailedError(f"Invalid value for: {fields}.", errors=errors) from None


def _describe(error: Any) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "Unknown field."
    elif error["type"] == "model_type":
        message = "The body must be a JSON object."
    return {"field": field, "message": message}


def _refuse_constant(name: str) -> None:
    # NaN and Infinity are not JSON, whatever Python's parser accepts.
    raise ValueError(f"{name} is not allowed in JSON")
