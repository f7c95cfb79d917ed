"""Query-string parameters, validated: a bad one is a `400` problem that says what is allowed.

A parameter given twice is refused rather than silently taking the first value: a client that
sends `?days=7&days=90` has a bug, and guessing which one it meant would hide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from flask import request

from api.problems import BadRequestError

Choice = TypeVar("Choice", bound=str)


def _single(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadRequestError(
            f"Query parameter '{name}' is given {len(values)} times; give it once.",
            errors=[{"field": name, "message": "Given more than once."}],
        )
    return values[0] if values else None


def choice_param(name: str, allowed: Sequence[Choice], default: Choice) -> Choice:
    """The parameter, which must be one of `allowed` (`default` when absent)."""
    value = _single(name)
    if value is None:
        return default
    for option in allowed:
        if value == option:
            return option
    listed = ", ".join(allowed)
    raise BadRequestError(
        f"Query parameter '{name}' must be one of: {listed}.",
        errors=[{"field": name, "message": f"Must be one of: {listed}."}],
        allowed=list(allowed),
    )


def int_param(name: str, minimum: int, maximum: int, default: int) -> int:
    """The parameter as a whole number in `minimum..maximum` (`default` when absent)."""
    value = _single(name)
    if value is None:
        return default
    # Digits only: no sign, spaces, decimals or exponents, and no 10,000-digit numbers to parse.
    if value.isascii() and value.isdigit() and len(value) <= len(str(maximum)):
        number = int(value)
        if minimum <= number <= maximum:
            return number
    raise BadRequestError(
        f"Query parameter '{name}' must be a whole number from {minimum} to {maximum}.",
        errors=[{"field": name, "message": f"Must be a whole number from {minimum} to {maximum}."}],
        minimum=minimum,
        maximum=maximum,
    )
