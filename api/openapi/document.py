"""The OpenAPI 3.1 document, built from the registered operations and their pydantic models.

What every operation shares is added here once, so no operation can forget it: the bearer
security requirement, the problem responses an authenticated call can get (401, 403, 429, 503; 400
with a query; 400, 413, 415 and 422 with a body; 404 with a path parameter; the 429's body is one
of the refusals in `refusals`), and the headers (`X-RateLimit-*` on every authenticated answer,
`RateLimit-Policy` and `RateLimit` beside them whenever the account has a limit, `Retry-After` on
429 and 503, `X-Request-ID` on all of them). The requests Timo Hub sends to customers' webhook
endpoints are the document's top-level `webhooks` (OpenAPI 3.1), one per event type, from
`webhook_payloads`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.metering import route_template
from api.openapi.refusals import REFUSALS
from api.openapi.registry import Operation
from api.openapi.webhook_payloads import EVENTS, WebhookEvent
from api.v1.schemas import ProblemOut
from timo_hub.webhooks.delivery import RETRY_DELAYS_SECONDS

PROBLEM_MEDIA_TYPE = "application/problem+json"
SCHEMA_REF = "#/components/schemas/{model}"
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# Beside X-RateLimit-*, never required: an account without any limit gets neither.
WINDOW_HEADERS = ("RateLimit-Policy", "RateLimit")
RATE_LIMIT_DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"
API_DESCRIPTION = """\
Programmatic access to the Timo Hub automation platform, billed by API calls per UTC calendar
month.

**Getting started.** Create an account to get an API key (`timo_live_…`), then send it as a bearer
token: `Authorization: Bearer timo_live_…`. Every call except `/health` and this document needs
one.

**Plans and limits.** Free: 1,000 calls a month and 60 a minute; Starter ($29): 5,000 and 300;
Developer ($99): 50,000 and 1,000; Business ($299): 250,000 and 5,000; Enterprise: unlimited.
The minute is a burst window: fixed 60-second windows that start on the epoch's whole minutes.
Each authenticated call counts once in every window, including calls that fail validation;
`401`s, a suspended account's `403`s and `429`s do not, and a call answered with a `5xx` (our
failure) is refunded from every window.

**Rate-limit headers.** Every authenticated response carries `X-RateLimit-Limit`,
`X-RateLimit-Remaining` (both `unlimited` on unlimited plans) and `X-RateLimit-Reset` (epoch
seconds when the next UTC month starts): the month's. Beside them, `RateLimit-Policy` and
`RateLimit` describe every window that has a limit, in the syntax of the IETF draft
draft-ietf-httpapi-ratelimit-headers-10 (Structured Fields), e.g.
`RateLimit-Policy: "month";q=1000;w=2592000, "burst";q=60;w=60` and
`RateLimit: "month";r=420;t=1209600, "burst";r=59;t=42`. A full window answers `429` with
`Retry-After`: for the burst window a `/problems/burst-limit-exceeded` problem and the seconds
until the next window (the month is not charged for the refused call); for the month a
`/problems/quota-exceeded` problem and the seconds until the month ends plus a random spread of
up to a minute, so that refused clients do not all return at 00:00 UTC.

**Errors** are RFC 9457 `application/problem+json` bodies with a stable `type` and a `request_id`
(also in the `X-Request-ID` header) to quote to support.

**Webhooks.** Register an https endpoint (`POST /webhooks`) and Timo Hub POSTs the events it
subscribed to there, signed the Standard Webhooks way (https://www.standardwebhooks.com): see
`webhooks` below for the requests and their payloads.
"""

HEADERS: dict[str, dict[str, Any]] = {
    "X-RateLimit-Limit": {
        "description": "Calls allowed this UTC month, or `unlimited`.",
        "schema": {"type": "string", "pattern": "^([0-9]+|unlimited)$", "examples": ["5000"]},
    },
    "X-RateLimit-Remaining": {
        "description": "Calls left this month (never negative), or `unlimited`.",
        "schema": {"type": "string", "pattern": "^([0-9]+|unlimited)$", "examples": ["3421"]},
    },
    "X-RateLimit-Reset": {
        "description": "Epoch seconds when the next UTC month (and quota) starts.",
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": ["1798761600"]},
    },
    "RateLimit-Policy": {
        "description": f"Every window of the account's limits that has one, as {RATE_LIMIT_DRAFT} "
        'defines the field (a Structured Field List): `"month";q=<calls>;w=<seconds in this '
        'UTC month>` and `"burst";q=<calls>;w=<window seconds>`. A window without a limit is not '
        "listed; an account without any limit gets no such field.",
        "schema": {
            "type": "string",
            "pattern": '^"(month|burst)";q=[0-9]+;w=[0-9]+(, "(month|burst)";q=[0-9]+;w=[0-9]+)*$',
            "examples": ['"month";q=5000;w=2592000, "burst";q=300;w=60'],
        },
    },
    "RateLimit": {
        "description": "What each window listed in `RateLimit-Policy` has left, as "
        f"{RATE_LIMIT_DRAFT} defines the field: `r`, the calls remaining (never negative), and "
        "`t`, the whole seconds until the window admits more (the next burst window; the next "
        "UTC month), at least 1.",
        "schema": {
            "type": "string",
            "pattern": '^"(month|burst)";r=[0-9]+;t=[0-9]+(, "(month|burst)";r=[0-9]+;t=[0-9]+)*$',
            "examples": ['"month";r=3421;t=1209600, "burst";r=287;t=42'],
        },
    },
    "Retry-After": {
        "description": "Whole seconds to wait before retrying. For a full burst window, until the "
        "next window opens (at least 1; in the month's last window, which ends with the month, "
        "plus the month's spread); for the month's quota, until the next UTC month plus a random "
        "spread of up to 60 s, so that refused clients do not all return at once. 1 while calls "
        "reserved by web processes may still be returned.",
        "schema": {"type": "string", "pattern": "^[0-9]+$", "examples": ["3600"]},
    },
    "X-Request-ID": {
        "description": "This request's id (yours, when you sent a sane one): quote it to support.",
        "schema": {"type": "string", "examples": ["4f1c2b7a9e0d4c21a6b3f8e2d1c0b9a8"]},
    },
    "WWW-Authenticate": {
        "description": "The bearer challenge, with the reason the key was refused.",
        "schema": {"type": "string"},
    },
}

Usage = Literal["validation", "serialization"]


def build(operations: Iterable[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI document for `operations`."""
    operations = list(operations)
    schemas, refs = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(route_template(op.rule), {})[op.method] = _operation(op, refs, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Timo Hub API",
            "version": version,
            "description": API_DESCRIPTION,
        },
        "servers": [{"url": "/api/v1"}],
        "tags": [
            {"name": "account", "description": "Your account, plan and quota."},
            {"name": "usage", "description": "Usage statistics, forecasts and alerts."},
            {"name": "keys", "description": "Create, list and revoke API keys."},
            {"name": "meta", "description": "Health and this document."},
            {
                "name": "webhooks",
                "description": "Webhook endpoints that receive signed events (quota thresholds "
                "and exhaustion, projected exhaustion, keys created and revoked), their delivery "
                "logs and replays, and the account's alert thresholds.",
            },
        ],
        "paths": paths,
        "webhooks": {
            event.kind: {"post": _webhook(event, refs[(event.payload, "serialization")])}
            for event in EVENTS
        },
        "components": {
            "schemas": schemas,
            "headers": copy.deepcopy(HEADERS),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "timo_live_ followed by 38 letters and digits",
                }
            },
        },
    }


def _schemas(
    operations: list[Operation],
) -> tuple[dict[str, Any], dict[tuple[type[BaseModel], Usage], dict[str, Any]]]:
    wanted: list[tuple[type[BaseModel], Usage]] = [(ProblemOut, "serialization")]
    wanted += [(refusal, "serialization") for refusal in REFUSALS]
    wanted += [(event.payload, "serialization") for event in EVENTS]
    for op in operations:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        wanted += [(r.model, "serialization") for r in op.replies if r.model is not None]
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=SCHEMA_REF)
    return top.get("$defs", {}), {wanted: refs[wanted] for wanted in unique}


def _operation(
    op: Operation,
    refs: dict[tuple[type[BaseModel], Usage], dict[str, Any]],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.description,
        "tags": [op.tag],
        "security": [{"bearerAuth": []}] if op.authenticated else [],
    }
    parameters = [
        {
            "name": p.name,
            "in": "path",
            "required": True,
            "description": p.description,
            "schema": p.schema,
        }
        for p in op.path_parameters
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    rate_limit = "required" if op.authenticated else None
    for reply in op.replies:
        response: dict[str, Any] = {
            "description": reply.description,
            "headers": _headers(rate_limit),
        }
        if reply.model is not None:
            media = {"schema": refs[(reply.model, "serialization")]}
            response["content"] = {"application/json": media}
        if reply.links:
            response["links"] = reply.links
        responses[str(reply.status)] = response
    problem = {"schema": refs[(ProblemOut, "serialization")]}
    # A 429 is one of the refusals by a window, or (too many bad keys) a plain problem.
    refused = {
        "schema": {
            "anyOf": [
                *(refs[(refusal, "serialization")] for refusal in REFUSALS),
                refs[(ProblemOut, "serialization")],
            ]
        }
    }
    for status, description, limit_headers, extra in _problems(op):
        if str(status) in responses:
            continue
        responses[str(status)] = {
            "description": description,
            "headers": _headers(limit_headers, extra),
            "content": {PROBLEM_MEDIA_TYPE: refused if status == 429 else problem},
        }
    spec["responses"] = dict(sorted(responses.items()))
    return spec


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=SCHEMA_REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _headers(rate_limit: str | None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Header objects for one response; `rate_limit` is `required`, `optional` or None (the
    `X-RateLimit-*` headers'; `RateLimit-Policy` and `RateLimit` are never required)."""
    names = ["X-Request-ID", *extra]
    if rate_limit is not None:
        names += [*RATE_LIMIT_HEADERS, *WINDOW_HEADERS]
    headers = {}
    for name in names:
        header = copy.deepcopy(HEADERS[name])
        if name in WINDOW_HEADERS:
            header["required"] = False
        else:
            header["required"] = name not in RATE_LIMIT_HEADERS or rate_limit == "required"
        headers[name] = header
    return headers


def _problems(op: Operation) -> list[tuple[int, str, str | None, tuple[str, ...]]]:
    """(status, description, rate-limit headers, other headers) of the problems `op` can answer."""
    limits = "required" if op.authenticated else None
    problems: list[tuple[int, str, str | None, tuple[str, ...]]] = []
    if op.query is not None or op.body is not None:
        problems.append((400, "Invalid query parameter or malformed JSON body.", limits, ()))
    if op.authenticated:
        problems += [
            (401, "Missing, malformed, unknown or revoked API key.", None, ("WWW-Authenticate",)),
            (403, "The account is suspended.", limits, ()),
        ]
    if op.path_parameters:
        problems.append((404, "No such resource on this account.", limits, ()))
    if op.body is not None:
        problems += [
            (413, "The body is larger than the API accepts.", limits, ()),
            (415, "The body is not JSON.", limits, ()),
            (422, "The body's values are not acceptable.", limits, ()),
        ]
    if op.authenticated:
        # Also the answer to too many bad keys from one address, which counts against no
        # account and so carries no rate-limit headers: documented, but not required.
        problems.append(
            (
                429,
                "A window of the account's limits is full: the month's quota "
                "(`/problems/quota-exceeded`) or the burst window "
                "(`/problems/burst-limit-exceeded`, which costs nothing from the month); or too "
                "many bad keys came from this address (`/problems/too-many-failed-authentications`"
                ").",
                "optional",
                ("Retry-After",),
            )
        )
    # Without Redis or PostgreSQL a call cannot be admitted, so no rate-limit headers either.
    problems.append(
        (
            503,
            "A dependency is down; retry shortly.",
            "optional" if limits else None,
            ("Retry-After",),
        )
    )
    return problems


WEBHOOK_HEADERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "webhook-id",
        "The delivery's id: the same on every retry and replay of it. Deliveries are at least "
        "once: deduplicate on this.",
        {"type": "string", "pattern": "^msg_[0-9a-f]{32}$"},
    ),
    (
        "webhook-timestamp",
        "Epoch seconds when this attempt was signed; the Standard Webhooks libraries refuse "
        "messages more than 5 minutes away from their clock.",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
    (
        "webhook-signature",
        "`v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`, keyed "
        "with the base64-decoded secret after `whsec_`. Space-separated, one per secret: two "
        "for 24 hours after a rotation.",
        {"type": "string", "pattern": "^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$"},
    ),
)


def _webhook(event: WebhookEvent, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI operation of the request Timo Hub sends for one event type."""
    *first, last = [_duration(s) for s in dict.fromkeys(RETRY_DELAYS_SECONDS)]
    schedule = ", ".join(first) + f", then every {last}"
    return {
        "operationId": "webhook_" + event.kind.replace(".", "_"),
        "summary": event.summary,
        "description": event.description
        + " Signed the Standard Webhooks way: verify the request with a Standard Webhooks "
        "library and the endpoint's secret before trusting it.",
        "tags": ["webhooks"],
        "parameters": [
            {"name": name, "in": "header", "required": True, "description": text, "schema": kind}
            for name, text, kind in WEBHOOK_HEADERS
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        },
        "responses": {
            "2XX": {"description": "Received: any 2xx status within 10 seconds."},
            "410": {
                "description": "Gone: the endpoint is disabled at once; nothing more is sent to "
                "it until it is enabled again (`POST /webhooks/{webhookId}/enable`)."
            },
            "default": {
                "description": "Any other status (redirects included: they are not followed), or "
                f"no answer within 10 seconds, fails the attempt. It is retried after {schedule}"
                " (each ±20%), about 3 days in all; an endpoint failing for 5 days is disabled."
            },
        },
    }


def _duration(seconds: int) -> str:
    """`5 s`, `30 min`, `10 h`: a retry delay as the document words it."""
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
