"""The error framework: problem responses and request ids."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from api.problems import ConflictError


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
    @app.get("/clash")
    def clash() -> str:
        raise ConflictError("Too many keys.", headers={"X-Extra": "1"}, limit=25)

    response = app.test_client().get("/clash")
    assert response.status_code == 409
    assert response.headers["X-Extra"] == "1"
    body = response.get_json()
    assert (body["type"], body["detail"], body["limit"]) == (
        "/problems/conflict",
        "Too many keys.",
        25,
    )
