"""A real HTTP(S) server on 127.0.0.1 that receives webhooks in tests, and answers from a script.

It records every request (when it arrived, method, path, headers with lower-case names, body)
and answers each with the next planned answer, or with the default status once the plan is
used up. A planned answer can wait before answering, redirect, carry a body, send itself a byte
at a time, or stop part-way and hold the connection open: the misbehaving receivers a sender
must survive. With `tls=True` it serves HTTPS with a certificate for `localhost` from a
throwaway `trustme` CA, whose certificate file is `ca_file`.

    with WebhookReceiver() as receiver:
        receiver.plan(PlannedAnswer(status=500), PlannedAnswer(delay=2.0))
        ...send to receiver.url_for("/hook")...
        (request,) = receiver.wait_for(1)
"""

from __future__ import annotations

import contextlib
import http
import ssl
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver read it."""

    arrived_monotonic: float
    arrived_wall: float
    """`time.time()` when the request had been read whole."""
    method: str
    path: str
    """The request target: path and query."""
    headers: dict[str, str]
    """Lower-case names; a repeated header's values joined with ", "."""
    body: bytes
    tls_server_name: str | None
    """The SNI name the client sent (HTTPS only)."""


@dataclass(frozen=True)
class PlannedAnswer:
    """How to answer one request."""

    status: int = 200
    delay: float = 0.0
    """Seconds to wait, after reading the request, before sending anything."""
    location: str | None = None
    body: bytes = b""
    drip_interval: float | None = None
    """Send the answer one byte at a time, this many seconds apart (a slow-loris receiver)."""
    drip_head: bool = True
    """With `drip_interval`: drip the status line and headers too, else send them at once and
    drip only the body."""
    hold_after: int | None = None
    """Send only this many bytes of the body (the headers announce all of it), then hold the
    connection open, sending nothing more, until the receiver stops."""


class WebhookReceiver:
    """A threaded HTTP(S) server on a free port of 127.0.0.1; a context manager."""

    def __init__(self, *, default_status: int = 200, tls: bool = False) -> None:
        self.default_status = default_status
        self.tls = tls
        self.handshake_failures = 0
        """TLS connections that ended in the handshake (a client refusing our certificate)."""
        self._requests: list[ReceivedRequest] = []
        self._plan: deque[PlannedAnswer] = deque()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._directory = tempfile.TemporaryDirectory(prefix="webhook-receiver-")
        self.ca: trustme.CA | None = None
        self._context: ssl.SSLContext | None = None
        if tls:
            self.ca = trustme.CA()
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            # Only the name: a client that dials 127.0.0.1 and checks against the address must fail.
            self.ca.issue_cert("localhost").configure_cert(self._context)
            self._context.sni_callback = _remember_server_name
            self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def ca_file(self) -> Path:
        """The PEM file of the CA that signed our certificate (with `tls=True`)."""
        return Path(self._directory.name) / "ca.pem"

    @property
    def url(self) -> str:
        """The base URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS (the
        name the certificate carries; localhost is 127.0.0.1 here)."""
        if self.tls:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        """The URL of `path` (starting with `/`) on this receiver."""
        return self.url + path

    def start(self) -> WebhookReceiver:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end the answers still waiting or dripping, and remove the CA file."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._directory.cleanup()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def plan(self, *answers: PlannedAnswer) -> None:
        """Answer the next requests with `answers`, in order (after those already planned)."""
        with self._changed:
            self._plan.extend(answers)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far, in order of arrival."""
        with self._changed:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """The first `count` requests, once that many have arrived; fails after `timeout`."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._requests) >= count, timeout)
            assert arrived, (
                f"{len(self._requests)} request(s) within {timeout} s, expected {count}: "
                f"{[r.path for r in self._requests]}"
            )
            return self._requests[:count]

    def _received(self, request: ReceivedRequest) -> PlannedAnswer:
        """Record `request`; the answer to give it."""
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
            return self._plan.popleft() if self._plan else PlannedAnswer(self.default_status)

    def _handshake_failed(self) -> None:
        with self._changed:
            self.handshake_failures += 1
            self._changed.notify_all()


def _remember_server_name(
    sock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
) -> None:
    """Keep the SNI name on the connection, for `ReceivedRequest.tls_server_name`."""
    sock.timo_server_name = server_name  # type: ignore[union-attr]


class _Server(ThreadingHTTPServer):
    """One thread per connection; daemon threads, so stopping never waits for a dripping answer."""

    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that hung up or refused our certificate is what tests provoke."""


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, records it, answers it as planned, closes the connection."""

    server: _Server
    protocol_version = "HTTP/1.1"
    # A client that connects and sends nothing must not keep a thread for ever.
    timeout = 30

    def setup(self) -> None:
        """Do the TLS handshake here, in this connection's thread, not in the accept loop."""
        context = self.server.receiver._context
        if context is not None:
            self.request.settimeout(self.timeout)
            try:
                self.request = context.wrap_socket(self.request, server_side=True)
            except OSError:
                self.server.receiver._handshake_failed()
                raise
        super().setup()

    def finish(self) -> None:
        """Close the TLS socket too: the server closes only the socket it accepted, which the
        TLS wrapping has detached."""
        super().finish()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.close()

    def _answer(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        answer = receiver._received(
            ReceivedRequest(
                arrived_monotonic=time.monotonic(),
                arrived_wall=time.time(),
                method=self.command,
                path=self.path,
                headers=headers,
                body=body,
                tls_server_name=getattr(self.request, "timo_server_name", None),
            )
        )
        self.close_connection = True
        if answer.delay and receiver._stopping.wait(answer.delay):
            return
        head = _head(answer)
        sent_body = answer.body if answer.hold_after is None else answer.body[: answer.hold_after]
        with contextlib.suppress(OSError):
            if answer.drip_interval is None:
                self.wfile.write(head + sent_body)
            else:
                at_once = b"" if answer.drip_head else head
                self.wfile.write(at_once)
                for byte in (head + sent_body)[len(at_once) :]:
                    if receiver._stopping.wait(answer.drip_interval):
                        return
                    self.wfile.write(bytes([byte]))
            if answer.hold_after is not None:
                receiver._stopping.wait()

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on what was recorded."""


def _head(answer: PlannedAnswer) -> bytes:
    """The status line and headers of `answer`."""
    try:
        reason = http.HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Whatever"
    lines = [
        f"HTTP/1.1 {answer.status} {reason}",
        f"Content-Length: {len(answer.body)}",
        "Content-Type: text/plain; charset=utf-8",
        "Connection: close",
    ]
    if answer.location is not None:
        lines.append(f"Location: {answer.location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
