"""Slow and stalled clients cannot freeze the API (issue 14, item 7).

Against the Procfile's own `web` line (what `make dev` and a deployment run): two workers, so a
sync worker that waits on a client's body is half the server, and two such clients all of it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.accounts import Customer
from tests.support.web import procfile_web_process
from timo_hub.platform.settings import Settings

pytestmark = pytest.mark.slow

READ_SECONDS = 3


@pytest.fixture(scope="module")
def base(settings: Settings) -> Iterator[str]:
    """The Procfile's web process, with a short request read allowance to keep the test short."""
    with procfile_web_process(
        settings, workers=2, env={"TIMO_REQUEST_READ_SECONDS": str(READ_SECONDS)}
    ) as url:
        yield url


def _connect(base: str) -> socket.socket:
    address = urlsplit(base)
    return socket.create_connection((address.hostname, address.port), timeout=15)


def _stalled_post(base: str, customer: Customer) -> socket.socket:
    """The issue's client: a metered call announcing 100 bytes of body and sending 4."""
    conn = _connect(base)
    conn.sendall(
        b"POST /api/v1/auth/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + customer.auth["Authorization"].encode() + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na'
    )
    return conn


def _answer(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _used(base: str, customer: Customer) -> int:
    """The quota's `used` before this call (the call itself is counted too)."""
    answer = requests.get(f"{base}/api/v1/account/quota", headers=customer.auth, timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["used"])


@contextmanager
def _stalled(base: str, customer: Customer, count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [stack.enter_context(_stalled_post(base, customer)) for _ in range(count)]


def test_stalled_clients_do_not_freeze_health_or_metered_calls(
    base: str, customer: Customer
) -> None:
    # Guards the defect where two sockets sending 4 of 100 announced body bytes held both sync
    # workers until gunicorn killed them (30 s): /health and every call timed out meanwhile.
    with _stalled(base, customer, 40), ExitStack() as silent:
        for _ in range(40):  # and connections that send nothing at all
            silent.enter_context(_connect(base))
        started = time.monotonic()
        health = requests.get(f"{base}/api/v1/health", timeout=3)
        assert health.status_code == 200
        for _ in range(10):
            call = requests.get(f"{base}/api/v1/account", headers=customer.auth, timeout=3)
            assert call.status_code == 200
        assert time.monotonic() - started < 3


def test_a_request_that_does_not_arrive_in_time_is_a_408_and_never_counted(
    base: str, customer: Customer
) -> None:
    before = _used(base, customer)
    with _stalled(base, customer, 5) as stalled:
        started = time.monotonic()
        answers = [_answer(conn) for conn in stalled]
        waited = time.monotonic() - started
    assert READ_SECONDS - 1 <= waited <= READ_SECONDS + 5
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert _status(answer) == 408
        assert b"content-type: application/problem+json" in head.lower()
        assert json.loads(body)["status"] == 408
    # The stalled calls never reached the app: neither admitted nor counted (this call and the
    # first `_used` are).
    assert _used(base, customer) == before + 1


def test_a_slow_client_that_finishes_in_time_is_served(base: str, customer: Customer) -> None:
    body = json.dumps({"name": "trickled"}).encode()
    conn = _connect(base)
    with conn:
        conn.sendall(
            b"POST /api/v1/auth/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: " + customer.auth["Authorization"].encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for piece in (body[:5], body[5:]):
            time.sleep(0.5)
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        time.sleep(0.5)
        conn.sendall(b"0\r\n\r\n")
        answer = _answer(conn)
    assert _status(answer) == 201, answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["name"] == "trickled"


def test_a_client_awaiting_100_continue_gets_it_once_then_the_answer(
    base: str, customer: Customer
) -> None:
    body = json.dumps({"name": "continued"}).encode()
    with _connect(base) as conn:
        conn.sendall(
            b"POST /api/v1/auth/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: " + customer.auth["Authorization"].encode() + b"\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(body)
        answer = _answer(conn)
    assert _status(answer) == 201, answer
    assert b"100 Continue" not in answer


def test_framing_the_worker_cannot_vouch_for_is_answered_at_once_by_gunicorn(base: str) -> None:
    with _connect(base) as conn:
        conn.sendall(
            b"POST /api/v1/auth/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"
        )
        started = time.monotonic()
        answer = _answer(conn)
    assert _status(answer) == 400
    assert time.monotonic() - started < READ_SECONDS


def test_many_concurrent_ordinary_calls_are_all_answered(base: str, customer: Customer) -> None:
    # The buffering keeps every accepted connection in one selector: none may be starved or lost.
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        for _ in range(20):
            status = requests.get(f"{base}/api/v1/account", headers=customer.auth, timeout=10)
            with lock:
                statuses.append(status.status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 160
