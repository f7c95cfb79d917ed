"""Query-string parameters, validated by a pydantic model: a bad one is a `400` problem.

The models (`api.v1.schemas` and friends) are also the OpenAPI description of the parameters, so
what is documented is what is enforced. A parameter given twice is refused rather than silently
taking the first value: a client that sends `?days=7&days=90` has a bug, and guessing which one it
meant would hide it. Whole numbers are digits only (no sign, spaces, decimals or exponents), and
never more digits than their maximum has.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, TypeVar

import annotated_types
from flask import request
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

from api.problems import BadRequestError

Query = TypeVar("Query", bound=BaseModel)
MAX_DIGITS = 9


def _digits_only(value: Any) -> Any:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not a whole number")
    if isinstance(value, str) and len(value) > MAX_DIGITS:
        raise ValueError("too many digits")
    return value


WholeNumber = Annotated[int, BeforeValidator(_digits_only)]
"""An integer query parameter written as plain digits."""


def parse_query(model: type[Query]) -> Query:
    """The request's query string as `model`, or the `400` problem that explains why not."""
    values: dict[str, str] = {}
    for name, field in model.model_fields.items():
        given = request.args.getlist(field.alias or name)
        if len(given) > 1:
            raise BadRequestError(
                f"Query parameter '{name}' is given {len(given)} times; give it once.",
                errors=[{"field": name, "message": "Given more than once."}],
            )
        if given:
            values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        name = str(exc.errors(include_url=False)[0]["loc"][0])
        raise _problem(name, model.model_fields[name]) from None


def _problem(name: str, field: FieldInfo) -> BadRequestError:
    allowed = _allowed(field)
    if allowed is not None:
        listed = ", ".join(allowed)
        return BadRequestError(
            f"Query parameter '{name}' must be one of: {listed}.",
            errors=[{"field": name, "message": f"Must be one of: {listed}."}],
            allowed=allowed,
        )
    minimum, maximum = _bounds(field)
    message = f"Must be a whole number from {minimum} to {maximum}."
    return BadRequestError(
        f"Query parameter '{name}' must be a whole number from {minimum} to {maximum}.",
        errors=[{"field": name, "message": message}],
        minimum=minimum,
        maximum=maximum,
    )


def _allowed(field: FieldInfo) -> list[str] | None:
    if typing.get_origin(field.annotation) is typing.Literal:
        return [str(option) for option in typing.get_args(field.annotation)]
    return None


def _bounds(field: FieldInfo) -> tuple[int | None, int | None]:
    minimum = maximum = None
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge) and isinstance(constraint.ge, int):
            minimum = constraint.ge
        elif isinstance(constraint, annotated_types.Le) and isinstance(constraint.le, int):
            maximum = constraint.le
    return minimum, maximum
