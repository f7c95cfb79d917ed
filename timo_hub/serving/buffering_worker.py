"""The web process's gunicorn worker: the sync worker, reading each request whole before serving it.

gunicorn's sync worker serves one connection at a time and reads the request as the app asks for
it, so a client that sends its headers and then trickles (or never sends) its body holds the whole
worker: two such sockets froze a two-worker server, health checks included. The usual cure is a
buffering proxy in front (nginx); this worker is that proxy's request buffering, in the worker.
It keeps every accepted connection in a selector, reads what each has sent without blocking, and
serves a connection only once its request is whole (`request_framing`), in memory, so the app
never waits on the network. A connection whose request has not arrived within
`TIMO_REQUEST_READ_SECONDS` of its accept is answered `408` and closed, and never reaches the app
(so it is neither metered nor counted).

Unchanged from the sync worker: one request per connection (no keep-alive), the app called in the
worker's own thread, the response written blocking (bounded by the same timeout), heartbeats
between requests. A request the framing cannot vouch for (malformed, over `BUFFER_LIMIT`) is
handed to gunicorn's parser as it stands, which answers it. With TLS in gunicorn itself the
worker is the plain sync worker (the bytes it would buffer are ciphertext).
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import os
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from gunicorn import util
from gunicorn.workers.sync import SyncWorker
from prometheus_client import Counter

from timo_hub.platform.settings import Settings
from timo_hub.serving import request_framing
from timo_hub.serving.request_framing import Framing

# Headers up to 64 KiB and a body up to 64 KiB (the app refuses bodies over 16 KiB with a 413):
# past this the request goes to gunicorn's parser, which reads it itself.
BUFFER_LIMIT = 128 * 1024
_RECEIVE_SIZE = 64 * 1024
_ACCEPTS_PER_WAKEUP = 64
# After running out of descriptors, wait this long before accepting again (the kernel's backlog
# holds new connections meanwhile).
_ACCEPT_PAUSE_SECONDS = 0.1

READ_TIMEOUTS = Counter(
    "timo_http_request_read_timeouts",
    "Connections answered 408 because their request did not arrive in time",
)

_WAKEUP = "wakeup"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(eq=False, slots=True)
class _Arriving:
    """An accepted connection whose request is still arriving."""

    sock: socket.socket
    address: Any
    listener: socket.socket
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    continued: bool = False
    registered: bool = False


class BufferingWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker with request buffering and a request read deadline."""

    def init_process(self) -> None:
        """gunicorn hook, in the forked worker: read the deadline, then run (never returns)."""
        self._read_seconds = Settings.from_env().request_read_seconds
        self._arriving: dict[int, _Arriving] = {}  # by descriptor
        self._selector = selectors.DefaultSelector()
        self._accepting = False
        self._accept_paused_until = 0.0
        super().init_process()

    def run(self) -> None:
        """Serve until told to stop, then finish the requests still arriving (bounded)."""
        if self.cfg.is_ssl:
            super().run()
            return
        for listener in self.sockets:
            listener.setblocking(False)
            _defer_accept(listener, self._read_seconds)
        self._selector.register(self.PIPE[0], selectors.EVENT_READ, _WAKEUP)
        wait = self.timeout or 0.5
        while self.alive:
            self.notify()
            self._accept_when_possible()
            self._serve_ready(wait)
            if not self.is_parent_alive():
                break
        self._set_accepting(False)
        stop_by = time.monotonic() + self.cfg.graceful_timeout
        while self._arriving and time.monotonic() < stop_by:
            self.notify()
            self._serve_ready(min(wait, max(stop_by - time.monotonic(), 0.0)))
        for arriving in list(self._arriving.values()):
            self._drop(arriving)
        self._selector.close()

    def _serve_ready(self, wait: float) -> None:
        now = time.monotonic()
        if self._arriving:
            wait = min(wait, max(self._earliest().deadline - now, 0.0))
        if self._accept_paused_until > now:
            wait = min(wait, self._accept_paused_until - now)
        try:
            ready = self._selector.select(wait)
        except InterruptedError:
            ready = []
        for key, _ in ready:
            if key.data == _WAKEUP:
                _drain(self.PIPE[0])
            elif isinstance(key.data, _Arriving):
                self._receive(key.data)
            elif self.alive and self._accepting:
                self._accept(key.fileobj)  # type: ignore[arg-type]
        self._expire()

    def _earliest(self) -> _Arriving:
        # Every connection gets the same allowance from its accept, and dicts keep insertion
        # order: the first one arriving is the first one due.
        return next(iter(self._arriving.values()))

    def _accept_when_possible(self) -> None:
        room = len(self._arriving) < self.cfg.worker_connections
        self._set_accepting(room and time.monotonic() >= self._accept_paused_until)

    def _set_accepting(self, accepting: bool) -> None:
        if accepting == self._accepting:
            return
        for listener in self.sockets:
            if accepting:
                self._selector.register(listener, selectors.EVENT_READ, None)
            else:
                self._selector.unregister(listener)
        self._accepting = accepting

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            if not self.alive:
                return
            if len(self._arriving) >= self.cfg.worker_connections:
                self._set_accepting(False)
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                self.log.warning("Cannot accept a connection now: %s", exc)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_SECONDS
                self._set_accepting(False)
                return
            # (Python's sockets are close-on-exec already.)
            sock.setblocking(False)
            arriving = _Arriving(sock, address, listener, time.monotonic() + self._read_seconds)
            self._arriving[sock.fileno()] = arriving
            # Most clients send the request with the connection: read it at once, no wakeup.
            if self._receive(arriving) and self._arriving:
                # Back to the selector after a request served while others are arriving: those
                # registered earlier that have since become whole go before new ones. With
                # none, accept on, as the sync worker does (no wakeup per request).
                return

    def _receive(self, arriving: _Arriving) -> bool:
        """Read what the client has sent; serve, wait for more, or drop a client that left.

        Whether the request was served.
        """
        ended = False
        while len(arriving.buffer) <= BUFFER_LIMIT:
            try:
                data = arriving.sock.recv(_RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(arriving)
                return False
            if not data:
                ended = True  # the client closed its side: what it sent is all there is
                break
            arriving.buffer += data
            if len(data) < _RECEIVE_SIZE:
                break
        found = request_framing.scan(arriving.buffer, BUFFER_LIMIT)
        if found.framing is Framing.INCOMPLETE:
            if ended:
                self._drop(arriving)  # gone before asking anything whole: nothing to answer
                return False
            if found.expects_continue and not arriving.continued:
                arriving.continued = True
                if not _send_small(arriving.sock, _CONTINUE):
                    self._drop(arriving)
                    return False
            self._register(arriving)
            return False
        self._serve(arriving)
        return True

    def _register(self, arriving: _Arriving) -> None:
        if not arriving.registered:
            self._selector.register(arriving.sock, selectors.EVENT_READ, arriving)
            arriving.registered = True

    def _forget(self, arriving: _Arriving) -> None:
        if arriving.registered:
            self._selector.unregister(arriving.sock)
            arriving.registered = False
        self._arriving.pop(arriving.sock.fileno(), None)

    def _serve(self, arriving: _Arriving) -> None:
        self._forget(arriving)
        sock = arriving.sock
        # Blocking from here, as the sync worker's: the app reads from memory; writing the
        # answer (or reading an unbufferable rest) is bounded by the same allowance.
        sock.settimeout(self._read_seconds)
        prefetched = _Prefetched(sock, bytes(arriving.buffer), continued=arriving.continued)
        self.handle(arriving.listener, prefetched, arriving.address)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._arriving and (arriving := self._earliest()).deadline <= now:
            # Its bytes may have come while the app served someone else: read them first.
            descriptor = arriving.sock.fileno()
            self._receive(arriving)
            if self._arriving.get(descriptor) is not arriving:
                continue  # served, or gone
            READ_TIMEOUTS.inc()
            self.log.info(
                "Request from %s not received within %s s (%d bytes arrived): 408",
                _peer(arriving.address),
                _seconds(self._read_seconds),
                len(arriving.buffer),
            )
            _send_small(arriving.sock, _request_timeout(self._read_seconds))
            self._drop(arriving)

    def _drop(self, arriving: _Arriving) -> None:
        self._forget(arriving)
        util.close(arriving.sock)


class _Prefetched:
    """A connected socket whose first bytes (the buffered request) were already read."""

    def __init__(self, sock: socket.socket, prefix: bytes, continued: bool) -> None:
        self._sock = sock
        self._prefix = prefix
        self._continued = continued

    def recv(self, size: int, flags: int = 0) -> bytes:
        """The buffered bytes first, then the socket's."""
        if self._prefix:
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        return self._sock.recv(size, flags)

    def send(self, data: bytes, flags: int = 0) -> int:
        """Send, except a second `100 Continue`: the client already had ours."""
        if self._continued and data == _CONTINUE:
            return len(data)
        return self._sock.send(data, flags)

    def __getattr__(self, name: str) -> Any:
        # Everything else is the socket's; kept on the wrapper once looked up, so each of the
        # server's calls after the first costs what a plain attribute does.
        value = getattr(self._sock, name)
        setattr(self, name, value)
        return value


def _request_timeout(seconds: float) -> bytes:
    body = (
        '{"type":"about:blank","title":"Request Timeout","status":408,'
        f'"detail":"The request did not arrive within {_seconds(seconds)} s."}}'
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


def _defer_accept(listener: socket.socket, seconds: float) -> None:
    """Have the kernel hold a TCP connection until its first bytes (or `seconds`) arrive.

    Linux's TCP_DEFER_ACCEPT (nginx's `listen … deferred`): the request is then nearly always
    there when the connection is accepted, so it is read at once instead of through the selector,
    and a connection that never sends anything costs the worker nothing for that long.
    """
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None or listener.family not in (socket.AF_INET, socket.AF_INET6):
        return
    # An optimisation: without it the selector does the waiting.
    with contextlib.suppress(OSError):
        listener.setsockopt(socket.IPPROTO_TCP, option, max(1, round(seconds)))


def _send_small(sock: socket.socket, data: bytes) -> bool:
    """Send a few bytes without blocking; whether they all went (a fresh socket has room)."""
    try:
        return sock.send(data) == len(data)
    except OSError:
        return False


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


def _seconds(value: float) -> str:
    return f"{value:g}"
