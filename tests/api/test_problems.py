"""The error framework: problem responses and request ids."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.problems import BadRequestError
from timo_hub import errors


def test_unknown_route_is_a_problem_response(client: FlaskClient) -> None:
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "/problems/not-found"
    assert body["status"] == 404
    assert body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/nope"
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/v1/health")
    assert response.status_code == 405
    assert response.get_json()["type"] == "/problems/method-not-allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD"}


def test_a_sane_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/api/v1/health", headers={"X-Request-ID": "trace-42.a:b"})
    assert response.headers["X-Request-ID"] == "trace-42.a:b"


def test_an_unsafe_request_id_is_replaced(client: FlaskClient) -> None:
    response = client.get("/api/v1/health", headers={"X-Request-ID": "x" * 500})
    assert len(response.headers["X-Request-ID"]) == 32
    response = client.get("/api/v1/nope", headers={"X-Request-ID": "a b<script>"})
    assert "<script>" not in response.get_data(as_text=True)


def test_unexpected_errors_are_a_generic_500(app: Flask) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert body["type"] == "/problems/internal-error"
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_api_errors_carry_their_status_headers_and_extensions(app: Flask) -> None:
    @app.get("/bad")
    def bad() -> str:
        raise BadRequestError("Bad cursor.", headers={"X-Extra": "1"}, cursor="abc")

    response = app.test_client().get("/bad")
    assert response.status_code == 400
    assert response.headers["X-Extra"] == "1"
    body = response.get_json()
    assert (body["type"], body["detail"], body["cursor"]) == (
        "/problems/bad-request",
        "Bad cursor.",
        "abc",
    )


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (errors.NotFoundError("No such thing."), 404, "not-found"),
        (errors.ConflictError("Taken."), 409, "conflict"),
        (errors.InvalidError("Not a plan.", field="plan"), 422, "validation-failed"),
        (errors.LimitReachedError("Too many keys.", limit=25), 409, "conflict"),
    ],
)
def test_domain_errors_become_problems_in_one_place(
    app: Flask, error: errors.DomainError, status: int, slug: str
) -> None:
    @app.get("/domain")
    def domain() -> str:
        raise error

    response = app.test_client().get("/domain")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["type"], body["title"], body["detail"]) == (
        f"/problems/{slug}",
        {404: "Not Found", 409: "Conflict", 422: "Unprocessable Content"}[status],
        error.detail,
    )
    for name, value in error.details.items():
        assert body[name] == value


def test_a_limit_that_knows_when_it_lifts_says_retry_after(app: Flask) -> None:
    @app.get("/later")
    def later() -> str:
        raise errors.LimitReachedError("Not now.", retry_after=42)

    response = app.test_client().get("/later")
    assert (response.status_code, response.headers["Retry-After"]) == (409, "42")
