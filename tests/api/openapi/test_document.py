"""`/api/v1/openapi.json`: a valid OpenAPI 3.1 document that describes every route there is."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from analytics.month_projection import MonthProjection
from tests.support.accounts import Customer
from timo_hub.platform.runtime import Runtime
from timo_hub.usage.alerts import exhaustion_data
from timo_hub.webhooks import event_types, notifications


def test_document_is_valid_openapi_31(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert "X-RateLimit-Limit" not in response.headers  # public: no key, not counted


def test_every_route_is_documented_and_nothing_else(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    documented = {
        (method.upper(), "/api/v1" + path)
        for path, item in document["paths"].items()
        for method in item
    }
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + _camel(m.group(1)) + "}", rule.rule)
        routed |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert documented == routed


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_authenticated_operations_declare_security_errors_and_headers(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    quota = document["paths"]["/account/quota"]["get"]
    assert quota["security"] == [{"bearerAuth": []}]
    ok = quota["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/QuotaOut"}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-ID"):
        assert ok["headers"][name]["required"] is True
    refused = quota["responses"]["429"]
    assert refused["headers"]["Retry-After"]["required"] is True
    assert "application/problem+json" in refused["content"]
    assert {"401", "403", "429", "503"} <= set(quota["responses"])
    assert document["paths"]["/health"]["get"]["security"] == []


def test_query_parameters_come_from_the_validating_models(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    forecast = {p["name"]: p for p in document["paths"]["/usage/forecast"]["get"]["parameters"]}
    assert forecast["days"]["schema"]["minimum"] == 7
    assert forecast["days"]["schema"]["maximum"] == 90
    assert forecast["model"]["schema"]["enum"] == ["auto", "linear", "seasonal"]
    stats = document["paths"]["/usage/stats"]["get"]["parameters"]
    assert stats[0]["schema"]["enum"] == ["7d", "30d", "90d"]
    assert "400" in document["paths"]["/usage/stats"]["get"]["responses"]


def test_examples_are_included(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["components"]["schemas"]["ProblemOut"]["examples"]
    assert document["components"]["headers"]["X-RateLimit-Remaining"]["schema"]["examples"]


def test_openapi_needs_no_key_but_a_bad_one_is_ignored(
    client: FlaskClient, customer: Customer
) -> None:
    assert client.get("/api/v1/openapi.json", headers=customer.auth).status_code == 200
    bad = {"Authorization": "Bearer nonsense"}
    assert client.get("/api/v1/openapi.json", headers=bad).status_code == 200


def test_webhook_operations_share_the_problems_and_are_tagged(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert "webhooks" in {tag["name"] for tag in document["tags"]}
    paths = document["paths"]
    operations = {
        (method, path): spec
        for path, item in paths.items()
        for method, spec in item.items()
        if path.startswith("/webhooks") or path == "/account/alert-thresholds"
    }
    assert len(operations) == 11
    for (method, path), spec in operations.items():
        assert spec["tags"] == ["webhooks"] and spec["security"] == [{"bearerAuth": []}]
        assert {"401", "403", "429", "503"} <= set(spec["responses"]), (method, path)
        assert ("404" in spec["responses"]) == ("{webhookId}" in path), (method, path)
        assert ("422" in spec["responses"]) == ("requestBody" in spec), (method, path)
    created = paths["/webhooks"]["post"]["responses"]
    assert created["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WebhookSecretOut"
    }
    assert "409" in created
    deliveries = paths["/webhooks/{webhookId}/deliveries"]["get"]["parameters"]
    limit = next(p for p in deliveries if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)


def test_webhook_requests_are_documented_per_event_type(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert set(document["webhooks"]) == {*event_types.EVENT_TYPES, event_types.TEST}
    for kind, item in document["webhooks"].items():
        request = item["post"]
        headers = {p["name"]: p for p in request["parameters"] if p["in"] == "header"}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}, kind
        assert all(header["required"] for header in headers.values())
        schema = _resolve(document, request["requestBody"]["content"]["application/json"])
        assert schema["properties"]["type"]["const"] == kind
        assert set(schema["required"]) == {"type", "timestamp", "data"}
        assert schema["examples"][0]["type"] == kind
        _validator(document, request["requestBody"]).validate(schema["examples"][0])
        assert {"2XX", "410", "default"} <= set(request["responses"])


def test_the_payloads_sent_are_the_ones_documented(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    """One payload of each kind, made by the code that sends them, read back from the delivery
    log, matches its documented schema with exactly the documented fields."""
    registered = client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": list(event_types.EVENT_TYPES)},
        headers=customer.auth,
    )
    assert registered.status_code == 201
    endpoint = registered.get_json()["id"]
    made = client.post("/api/v1/auth/keys", json={"name": "ci"}, headers=customer.auth)
    client.delete(f"/api/v1/auth/keys/{made.get_json()['id']}", headers=customer.auth)
    client.post(f"/api/v1/webhooks/{endpoint}/test", headers=customer.auth)
    account = customer.account.id
    now = datetime.now(UTC)
    month = now.date().replace(day=1)
    projection = MonthProjection(
        first_day=month,
        last_day=month.replace(day=28),
        used=700,
        limit=1000,
        projected_total=1312.44,
        projected_total_lower80=1104.0,
        projected_total_upper80=1530.9,
        projected_remaining=0,
        exhaustion_date=month.replace(day=21),
        exhaustion_earliest=month.replace(day=18),
        exhaustion_latest=None,
        exhaustion_probability=0.8612,
        recommended_plan=None,
    )
    with runtime.database.connection() as conn:
        notifications.threshold_reached(conn, account, month, 1000, 800, 80, now)
        notifications.exhausted(conn, account, month, 1000, 1000, now)
        notifications.notify(
            conn,
            account,
            event_types.EXHAUSTION_PROJECTED,
            event_types.month_label(month),
            exhaustion_data(account, projection),
            now,
        )
    log = client.get(f"/api/v1/webhooks/{endpoint}/deliveries", headers=customer.auth)
    payloads = {d["type"]: d["payload"] for d in log.get_json()["deliveries"]}
    assert set(payloads) == {*event_types.EVENT_TYPES, event_types.TEST}
    document = client.get("/api/v1/openapi.json").get_json()
    for kind, payload in payloads.items():
        body = document["webhooks"][kind]["post"]["requestBody"]
        _validator(document, body).validate(payload)
        schema = _resolve(document, body["content"]["application/json"])
        _same_fields(document, schema, payload, kind)


def _resolve(document: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    ref = holder["schema"]["$ref"] if "schema" in holder else holder["$ref"]
    found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _validator(document: dict[str, Any], body: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator of a request body, its `$ref`s resolved within the document."""
    schema = body["content"]["application/json"]["schema"]
    root = {"$ref": schema["$ref"], "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _same_fields(document: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """Every object in `value` has exactly the properties its schema documents (none missing,
    none undocumented), all the way down."""
    if "$ref" in schema:
        schema = _resolve(document, schema)
    options = schema.get("anyOf", [schema])
    for option in options:
        option = _resolve(document, option) if "$ref" in option else option
        if isinstance(value, dict) and option.get("type") == "object":
            assert set(value) == set(option["properties"]), where
            for name, item in value.items():
                _same_fields(document, option["properties"][name], item, f"{where}.{name}")
