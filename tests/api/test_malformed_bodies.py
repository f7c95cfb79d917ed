"""Bodies the server cannot read are the caller's 400, never a 500 (issue 14, item 9).

Against a real gunicorn: its own body reader raises what the test client never would.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.support.accounts import Customer
from tests.support.web import web_process
from timo_hub.platform.settings import Settings


def _raw_request(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is; the status, headers and body of the answer (the server closes)."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.slow
def test_a_malformed_chunked_body_is_a_400_problem(settings: Settings, customer: Customer) -> None:
    # Guards the defect where gunicorn's `InvalidChunkSize`, raised while the view read the body,
    # reached the generic handler: a 500 to the caller, logged as our failure.
    with web_process(settings) as base:
        status, headers, body = _raw_request(
            base,
            b"POST /api/v1/auth/keys HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Authorization: " + customer.auth["Authorization"].encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
        )
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 400 and "body" in problem["detail"]
    assert problem["request_id"] == headers["x-request-id"]
