"""Operations: a Flask route plus the description the OpenAPI document is built from."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint
from pydantic import BaseModel

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Reply:
    """One documented answer of an operation."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    """The JSON body; None for no body (204) or for problem responses (added automatically)."""
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    """OpenAPI links: which operations can use values from this answer (and how)."""


@dataclass(frozen=True)
class PathParameter:
    """A templated part of the path."""

    name: str
    """As the client sees it (`keyId`), not as Flask names it (`key_id`)."""
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    """A documented route of the `/api/v1` blueprint."""

    method: str
    rule: str
    operation_id: str
    summary: str
    description: str
    tag: str
    replies: tuple[Reply, ...]
    authenticated: bool = True
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    path_parameters: tuple[PathParameter, ...] = ()


OPERATIONS: list[Operation] = []


def operation(
    blueprint: Blueprint,
    method: str,
    rule: str,
    *,
    summary: str,
    tag: str,
    replies: tuple[Reply, ...],
    authenticated: bool = True,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    path_parameters: tuple[PathParameter, ...] = (),
) -> Callable[[View], View]:
    """Register the decorated view on `blueprint` and record its description.

    The operation's long description is the view's docstring.
    """

    def register(view: View) -> View:
        blueprint.add_url_rule(rule, view_func=view, methods=[method])
        OPERATIONS.append(
            Operation(
                method=method.lower(),
                rule=rule,
                operation_id=view.__name__,
                summary=summary,
                description=inspect.cleandoc(view.__doc__ or summary),
                tag=tag,
                replies=replies,
                authenticated=authenticated,
                query=query,
                body=body,
                path_parameters=path_parameters,
            )
        )
        return view

    return register
