"""`/api/v1/openapi.json`: a valid OpenAPI 3.1 document that describes every route there is."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from http_sfv.list import List as StructuredList
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

from analytics.month_projection import MonthProjection
from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from timo_hub.accounts import service
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


def test_both_header_families_are_on_every_metered_answer(client: FlaskClient) -> None:
    """`RateLimit-Policy` and `RateLimit` go wherever `X-RateLimit-*` go, never required: an
    account without any limit gets neither."""
    document = client.get("/api/v1/openapi.json").get_json()
    components = document["components"]["headers"]
    for name in ("RateLimit-Policy", "RateLimit"):
        assert "draft-ietf-httpapi-ratelimit-headers-10" in components[name]["description"]
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                headers = response.get("headers", {})
                limited = "X-RateLimit-Limit" in headers
                assert limited == (bool(operation["security"]) and status != "401"), (
                    method,
                    path,
                    status,
                )
                for name in ("RateLimit-Policy", "RateLimit"):
                    assert (name in headers) == limited, (method, path, status, name)
                    if limited:
                        assert headers[name]["required"] is False
                        seen += 1
    assert seen > 100


def test_the_429_describes_both_refusals_and_their_members(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    refusals = {"/problems/quota-exceeded": "month", "/problems/burst-limit-exceeded": "burst"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not operation["security"]:
                continue
            refused = operation["responses"]["429"]
            assert "quota-exceeded" in refused["description"], (method, path)
            assert "burst-limit-exceeded" in refused["description"], (method, path)
            options = refused["content"]["application/problem+json"]["schema"]["anyOf"]
            assert [o["$ref"].rsplit("/", 1)[1] for o in options] == [
                "QuotaExceededProblemOut",
                "BurstLimitExceededProblemOut",
                "ProblemOut",  # too many bad keys from one address
            ]
    for name, members in {
        "QuotaExceededProblemOut": {"policy", "limit", "used", "reset", "violated-policies"},
        "BurstLimitExceededProblemOut": {
            "policy",
            "limit",
            "window_seconds",
            "used",
            "reset",
            "violated-policies",
        },
    }.items():
        schema = schemas[name]
        assert members <= set(schema["required"]), name
        kind = schema["properties"]["type"]["const"]
        assert schema["properties"]["policy"]["const"] == refusals[kind]
        (example,) = schema["examples"]
        _schema_validator(document, {"$ref": f"#/components/schemas/{name}"}).validate(example)
    retry_after = document["components"]["headers"]["Retry-After"]["description"]
    assert "next window" in retry_after and "random spread of up to 60 s" in retry_after


def test_real_refusals_and_headers_match_the_document(
    client: FlaskClient, runtime: Runtime
) -> None:
    """A refusal by each window (and by both), as the app answers it: its body is the refusal the
    429 documents, with no member the document leaves out, and its headers match theirs."""
    document = client.get("/api/v1/openapi.json").get_json()
    quota = document["paths"]["/account/quota"]["get"]["responses"]
    # The burst window (2 calls a window, here): refused at the third call of a window. Should
    # the window turn between the calls, the next attempt has a whole window ahead of it.
    for _ in range(3):
        bursting = new_customer(runtime, plan="free", burst=2)
        answers = [client.get("/api/v1/account/quota", headers=bursting.auth) for _ in range(3)]
        if answers[-1].status_code == 429:
            break
    ok, burst = answers[0], answers[-1]
    _check_headers(quota["200"], ok)
    assert _refusal_kind(document, quota["429"], burst) == "/problems/burst-limit-exceeded"
    assert burst.get_json()["violated-policies"] == ["burst"]
    assert 1 <= int(burst.headers["Retry-After"]) <= 60
    # The month, used up by earlier calls.
    spent = new_customer(runtime, plan="free")
    seed_calls(runtime, spent.account.id, {datetime.now(UTC).date(): 1000})
    month = client.get("/api/v1/account/quota", headers=spent.auth)
    assert _refusal_kind(document, quota["429"], month) == "/problems/quota-exceeded"
    assert month.get_json()["violated-policies"] == ["month"]
    # Both windows full: the month refuses, and says the burst window is full too.
    both = new_customer(runtime, plan="free")
    service.set_limits(runtime, both.account.id, {"month": 1, "burst": 1})
    assert client.get("/api/v1/account", headers=both.auth).status_code == 200
    refused = client.get("/api/v1/account", headers=both.auth)
    responses = document["paths"]["/account"]["get"]["responses"]
    assert _refusal_kind(document, responses["429"], refused) == "/problems/quota-exceeded"
    assert refused.get_json()["violated-policies"] == ["month", "burst"]


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


def _check_headers(described: dict[str, Any], answer: TestResponse) -> None:
    """The answer carries every required header the document describes for it, each matching
    its schema; the two structured ones parse as Structured Field Lists."""
    for name, header in described["headers"].items():
        value = answer.headers.get(name)
        if value is None:
            assert not header["required"], name
            continue
        pattern = header["schema"].get("pattern")
        assert pattern is None or re.fullmatch(pattern, value), (name, value)
    for name in ("RateLimit-Policy", "RateLimit"):
        assert name in described["headers"] and name in answer.headers, name
        StructuredList().parse(answer.headers[name].encode("ascii"))


def _refusal_kind(document: dict[str, Any], described: dict[str, Any], answer: TestResponse) -> str:
    """The type of a refusal, checked against the 429 the document describes: headers, body
    valid against the response's schema, and every member of the body documented for its type."""
    assert answer.status_code == 429
    _check_headers(described, answer)
    body = answer.get_json()
    schema = described["content"]["application/problem+json"]["schema"]
    _schema_validator(document, schema).validate(body)
    for option in schema["anyOf"]:
        refusal = _resolve(document, option)
        if refusal["properties"]["type"].get("const") == body["type"]:
            assert set(refusal["required"]) <= set(body) <= set(refusal["properties"]), body
            kind: str = body["type"]
            return kind
    raise AssertionError(f"no documented refusal of type {body['type']}")


def _resolve(document: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    ref = holder["schema"]["$ref"] if "schema" in holder else holder["$ref"]
    found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _validator(document: dict[str, Any], body: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator of a request body, its `$ref`s resolved within the document."""
    schema = body["content"]["application/json"]["schema"]
    root = {"$ref": schema["$ref"], "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator of `schema`, its `$ref`s resolved within the document."""
    root = {**schema, "components": document["components"]}
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
