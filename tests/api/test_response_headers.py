"""Headers every answer carries, whatever produced it (issue 14, item 11)."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.accounts import Customer


def test_api_answers_are_not_sniffed_or_stored(client: FlaskClient, customer: Customer) -> None:
    # Guards answers a browser or a shared cache could misuse: usage and keys are per caller,
    # and an error body must not be sniffed into HTML.
    answers = [
        client.get("/api/v1/account", headers=customer.auth),  # 200
        client.get("/api/v1/account"),  # 401, before admission
        client.get("/api/v1/no-such-thing", headers=customer.auth),  # 404, routed nowhere
        client.put("/api/v1/account", headers=customer.auth),  # 405
        client.post("/api/v1/auth/keys", headers=customer.auth, data="x"),  # 415
    ]
    for response in answers:
        assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"], response
        assert response.headers.getlist("Cache-Control") == ["no-store"], response


def test_what_says_how_to_cache_keeps_it(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json")
    assert document.headers.getlist("Cache-Control") == ["public, max-age=300"]
    assert document.headers["X-Content-Type-Options"] == "nosniff"
    page = client.get("/docs")
    assert page.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert page.headers.get("Cache-Control") != "no-store"  # not an API answer: its own say


def test_a_204_has_no_body_and_no_content_type(client: FlaskClient, customer: Customer) -> None:
    # Guards Flask's `text/html` Content-Type on the empty answer to a revocation.
    made = client.post("/api/v1/auth/keys", headers=customer.auth, json={"name": "spare"})
    assert made.status_code == 201
    revoked = client.delete(f"/api/v1/auth/keys/{made.get_json()['id']}", headers=customer.auth)
    assert revoked.status_code == 204
    assert revoked.data == b""
    assert "Content-Type" not in revoked.headers
    assert "Content-Length" not in revoked.headers
    assert revoked.headers["X-Request-ID"]
