"""`/api/v1/openapi.json`: a valid OpenAPI 3.1 document that describes every route there is."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.support.accounts import Customer


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
