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
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port

pytestmark = pytest.mark.slow

READ_SECONDS = 2
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def _serving(home: Path, *options: str, read_seconds: float = READ_SECONDS) -> Iterator[str]:
    """One buffering worker (so a busy app is a busy server) serving the test app."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env |= {"TIMO_HOME": str(home), "TIMO_REQUEST_READ_SECONDS": str(read_seconds)}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--worker-class",
        "timo_hub.serving.buffering_worker.BufferingWorker",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        *options,
        "tests.serving.wsgi_app:app",
    ]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:  # a failing test (or start) must not leave the server behind
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(url, timeout=2)
                    break
                except requests.ConnectionError:
                    assert server.poll() is None and time.monotonic() < deadline, "no server"
                    time.sleep(0.1)
            yield url
        finally:
            server.terminate()
            exit_status = server.wait(timeout=30)
        assert exit_status == 0
        log.seek(0)
        output = log.read().decode()
        # One worker booted, never replaced (a crash or a timeout kill boots another), unless
        # the test restarts it on purpose.
        if "--max-requests" not in options:
            assert output.count("Booting worker") == 1, output[-3000:]
        assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test app behind one buffering worker."""
    with _serving(tmp_path_factory.mktemp("home")) as url:
        yield url


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


def test_a_buffered_body_reaches_the_app_whole(base: str) -> None:
    body = os.urandom(100_000)
    with _connect(base) as conn:
        conn.sendall(_post(body))
        status, answer = _answer(conn)
    assert status == 200
    assert json.loads(answer) == {"length": 100_000, "sha256": hashlib.sha256(body).hexdigest()}


def test_a_request_past_the_buffer_is_refused_by_the_worker(base: str) -> None:
    with _connect(base) as conn:
        conn.sendall(_post(os.urandom(150_000)))
        status, answer = _answer(conn)
    assert status == 413
    assert json.loads(answer)["title"] == "Request Entity Too Large"


def test_an_idle_connection_is_answered_408_after_the_allowance(base: str) -> None:
    # The kernel holds a silent connection for about the allowance before the worker accepts it
    # (TCP_DEFER_ACCEPT), then the worker gives it the allowance.
    with _connect(base) as conn:
        started = time.monotonic()
        status, body = _answer(conn)
    assert status == 408
    assert json.loads(body)["status"] == 408
    assert READ_SECONDS - 0.5 <= time.monotonic() - started <= 2 * READ_SECONDS + 5


def _victim_seconds(base: str) -> float:
    started = time.monotonic()
    assert requests.post(f"{base}/echo", data=b"victim", timeout=30).status_code == 200
    return time.monotonic() - started


def test_an_unreadable_content_length_is_refused_without_killing_the_worker(base: str) -> None:
    # Guards the defect where a Content-Length of 4,400 digits raised in the worker's loop: the
    # worker died (and every connection it held was reset).
    with _connect(base) as waiting:
        waiting.sendall(_post(b"held")[:-2])  # a connection in hand meanwhile
        time.sleep(0.3)
        with _connect(base) as conn:
            conn.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + b"9" * 4400
                + b"\r\n\r\nhello"
            )
            status, body = _answer(conn)
        assert status == 413
        assert json.loads(body)["status"] == 413
        with _connect(base) as conn:  # leading zeros: gunicorn's parser decides, as for sync
            conn.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + b"0" * 4400
                + b"5\r\n\r\nhello"
            )
            assert _answer(conn)[0] in (200, 400)
        waiting.sendall(b"ld")
        status, body = _answer(waiting)
    assert status == 200


def test_oversized_headers_are_refused_at_once_however_slowly_they_come(base: str) -> None:
    # Guards the defect where a header section over the buffer went to gunicorn's blocking
    # parser, where a byte every 1.5 s held the worker until the arbiter killed it (30 s).
    with _connect(base) as conn:
        conn.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 140_000)
        status, body = _answer(conn)
    assert status == 431
    assert json.loads(body)["status"] == 431
    assert _victim_seconds(base) < 1


def test_clients_that_do_not_read_or_close_do_not_hold_the_worker(base: str) -> None:
    # Guards the defects where each answer was written blocking (a client that does not read a
    # large answer held the worker for the whole allowance per write) and each connection was
    # closed with gunicorn's blocking 2 s drain (a client that never closes held it that long).
    idle = []
    for _ in range(2):
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        conn.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        conn.sendall(b"GET /big?bytes=2000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.append(conn)
    for _ in range(5):
        conn = _connect(base)
        conn.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.append(conn)
    try:
        time.sleep(0.5)
        assert _victim_seconds(base) < 1
    finally:
        for conn in idle:
            conn.close()


def test_a_burst_of_slow_requests_gets_a_heartbeat_for_each(tmp_path: Path) -> None:
    # Guards the defect where the requests that became whole together were all served in one
    # pass of the loop with one heartbeat: six 1 s requests under a 4 s timeout got the worker
    # killed mid-burst, and the requests still queued were reset.
    with _serving(tmp_path, "--timeout", "4") as url:
        conns = []
        request = b"GET /sleep?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(6):
            conn = _connect(url)
            conn.sendall(request[:-1])
            conns.append(conn)
        time.sleep(0.5)
        for conn in conns:
            conn.sendall(request[-1:])
        statuses = []
        for conn in conns:
            with conn:
                statuses.append(_answer(conn)[0])
    assert statuses == [200] * 6


def test_a_long_answer_to_a_slow_reader_is_written_whole(base: str) -> None:
    # Guards the defect where the allowance ran from the answer's first byte, not from the
    # client's last progress: an 8 MB answer read at ~1.6 MB/s was cut after 2 s, and the close
    # looked like a normal end of stream.
    size = 8_000_000
    with _connect(base) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        conn.sendall(b"GET /big?bytes=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        received = 0
        while chunk := conn.recv(16384):
            received += len(chunk)
            time.sleep(0.01)
    assert received > size  # every byte of the body, after the head


def test_a_restart_is_not_held_by_a_request_still_arriving(tmp_path: Path) -> None:
    # Guards the defect where a worker retiring after --max-requests waited out the whole read
    # allowance of a trickling client before exiting, accepting nothing meanwhile.
    server = _serving(tmp_path, "--max-requests", "3", read_seconds=8)
    with server as url, _connect(url) as stalled:
        stalled.sendall(b"GET /echo HTTP/1.1\r\n")
        time.sleep(0.3)
        waits = []
        for _ in range(5):
            started = time.monotonic()
            assert requests.get(f"{url}/echo", timeout=30).status_code == 200
            waits.append(time.monotonic() - started)
        status, body = _answer(stalled)
    assert max(waits) < 4, waits
    assert status == 503  # never reached the app: safe to send again
    assert json.loads(body)["status"] == 503


def test_a_flood_of_trickling_connections_cannot_lock_whole_requests_out(tmp_path: Path) -> None:
    # Guards the defect where every connection slot (--worker-connections) held by a client that
    # sent one byte stopped the worker accepting until those expired: a whole request waited in
    # the backlog for the allowance. Now the oldest arriving connection makes room.
    server = _serving(tmp_path, "--worker-connections", "20", read_seconds=8)
    with server as url, ExitStack() as flood:
        for _ in range(40):
            flood.enter_context(_connect(url)).sendall(b"G")
        time.sleep(0.5)
        assert _victim_seconds(url) < 2
