"""The web worker on its own, under gunicorn with a plain WSGI app (tests/serving/wsgi_app.py).

What the API-level tests (tests/api/test_slow_clients.py) cannot reach: requests that arrive
while the worker is busy in the app, clients that half-close, requests too large to buffer.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port

pytestmark = pytest.mark.slow

READ_SECONDS = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One buffering worker (so a busy app is a busy server), serving the test app."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env |= {
        "TIMO_HOME": str(tmp_path_factory.mktemp("home")),
        "TIMO_REQUEST_READ_SECONDS": str(READ_SECONDS),
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--worker-class",
        "timo_hub.serving.buffering_worker.BufferingWorker",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        "tests.serving.wsgi_app:app",
    ]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.1)
        yield url
        server.terminate()
        assert server.wait(timeout=30) == 0
        log.seek(0)
        assert b"Traceback" not in log.read()


def _connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30)


def _answer(conn: socket.socket) -> tuple[int, bytes]:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _post(body: bytes) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_request_that_arrived_while_the_app_was_busy_is_served_not_timed_out(
    base: str,
) -> None:
    # Guards the defect where a connection whose request came whole while the app served
    # someone else past the allowance was answered 408: the allowance is for the client's
    # bytes, and those were in the kernel's buffer in time, unread only because we were busy.
    request = _post(b"waited")
    with _connect(base) as conn:
        conn.sendall(request[:10])
        time.sleep(0.5)  # accepted and buffering before the long call starts
        busy = threading.Thread(
            target=requests.get, args=(f"{base}/sleep?seconds={READ_SECONDS + 2}",)
        )
        busy.start()
        time.sleep(0.5)
        conn.sendall(request[10:])
        status, body = _answer(conn)
    busy.join()
    assert status == 200
    assert json.loads(body)["length"] == len(b"waited")


def test_a_client_that_half_closes_after_its_request_is_served(base: str) -> None:
    with _connect(base) as conn:
        conn.sendall(_post(b"then FIN"))
        conn.shutdown(socket.SHUT_WR)
        status, body = _answer(conn)
    assert status == 200
    assert json.loads(body)["length"] == len(b"then FIN")


def test_a_client_that_leaves_mid_request_costs_nothing(base: str) -> None:
    for _ in range(20):
        with _connect(base) as conn:
            conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert requests.post(f"{base}/echo", data=b"next", timeout=5).json()["length"] == 4


@pytest.mark.parametrize("size", [100_000, 300_000])
def test_bodies_are_delivered_whole_whether_buffered_or_not(base: str, size: int) -> None:
    # 100 kB is buffered; 300 kB is past the buffer and handed over with what was read so far:
    # the app must get every byte once, in order, either way.
    body = os.urandom(size)
    with _connect(base) as conn:
        conn.sendall(_post(body))
        status, answer = _answer(conn)
    assert status == 200
    assert json.loads(answer) == {
        "length": size,
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def test_an_idle_connection_is_answered_408_after_the_allowance(base: str) -> None:
    # The kernel holds a silent connection for about the allowance before the worker accepts it
    # (TCP_DEFER_ACCEPT), then the worker gives it the allowance.
    with _connect(base) as conn:
        started = time.monotonic()
        status, body = _answer(conn)
    assert status == 408
    assert json.loads(body)["status"] == 408
    assert READ_SECONDS - 0.5 <= time.monotonic() - started <= 2 * READ_SECONDS + 5
