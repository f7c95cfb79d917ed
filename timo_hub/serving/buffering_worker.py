"""The web process's gunicorn worker: the sync worker, with the network kept out of the app's way.

gunicorn's sync worker serves one connection at a time and does its I/O blocking: a client that
sends its headers and then trickles (or never sends) its body, or that does not read its answer,
holds the whole worker; two such sockets froze a two-worker server, health checks included. The
usual cure is a buffering proxy in front (nginx); this worker does that proxy's buffering itself.
Every accepted connection sits in a selector: the worker reads what each has sent without
blocking and calls the app only once a request is whole (`request_framing`), in memory; the app's
answer is collected in memory and written without blocking, then the connection is closed (with a
short non-blocking linger when the client still sends). A request not whole within
`TIMO_REQUEST_READ_SECONDS` of its accept is answered `408`, one larger than `BUFFER_LIMIT` `431`
or `413`, by the worker: they never reach the app, so they are neither metered nor counted.

Unchanged from the sync worker: one request per connection (no keep-alive), the app called in the
worker's own thread, a heartbeat before each request. A request whose framing is malformed goes,
with its header section whole, to gunicorn's parser, which refuses it. With TLS in gunicorn itself
the worker is the plain sync worker (the bytes it would buffer are ciphertext).
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import json
import os
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import IO, Any

from gunicorn import util
from gunicorn.workers.sync import SyncWorker
from prometheus_client import Counter

from timo_hub.platform.settings import Settings
from timo_hub.serving.request_framing import Framing, FramingScanner

# A request (line, headers, body) larger than this is refused by the worker; the app refuses
# bodies over 16 KiB anyway, and gunicorn lines over 8 KiB.
BUFFER_LIMIT = 128 * 1024
_RECEIVE_SIZE = 64 * 1024
_ACCEPTS_PER_WAKEUP = 64
# After running out of descriptors, wait this long before accepting again (the kernel's backlog
# holds new connections meanwhile).
_ACCEPT_PAUSE_SECONDS = 0.1
# A closed connection whose client still sends is read and discarded this long (gunicorn's own
# graceful close), so that our close does not reset the answer out of its receive buffer.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024
# A stopping worker waits this long for requests still arriving.
_STOP_ARRIVING_SECONDS = 1.0
# accept(2): errors of the new connection, to be treated like EAGAIN.
_ACCEPT_RETRY_ERRORS = frozenset(
    {
        errno.ENETDOWN,
        errno.EPROTO,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.ECONNABORTED,
    }
)

READ_TIMEOUTS = Counter(
    "timo_http_request_read_timeouts",
    "Connections answered 408 because their request did not arrive in time",
)

EVICTIONS = Counter(
    "timo_http_arriving_evictions",
    "Connections let go (503) to make room while every slot held a request still arriving",
)

_WAKEUP = "wakeup"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REFUSALS = {
    Framing.HEADERS_TOO_LARGE: (
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
        f"The request's header section exceeds {BUFFER_LIMIT // 1024} KiB.",
    ),
    Framing.BODY_TOO_LARGE: (
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        f"The request exceeds {BUFFER_LIMIT // 1024} KiB.",
    ),
}


@dataclass(eq=False, slots=True)
class _Arriving:
    """An accepted connection whose request is still arriving."""

    sock: socket.socket
    address: Any
    listener: socket.socket
    deadline: float
    scanner: FramingScanner
    buffer: bytearray = field(default_factory=bytearray)
    continued: bool = False
    registered: bool = False
    stopping: bool = False  # the worker is stopping: past its deadline, a 503, not a 408


@dataclass(eq=False, slots=True)
class _Leaving:
    """A connection being answered and closed: the answer's unsent rest, then a linger."""

    sock: socket.socket
    deadline: float
    outgoing: memoryview
    lingering: bool = False
    drained: int = 0
    events: int = 0  # what it is registered for in the selector


class BufferingWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker with request and response buffering and a request deadline."""

    def init_process(self) -> None:
        """gunicorn hook, in the forked worker: read the deadline, then run (never returns)."""
        self._read_seconds = Settings.from_env().request_read_seconds
        self._arriving: dict[int, _Arriving] = {}  # by descriptor, in order of accept
        self._leaving: dict[int, _Leaving] = {}
        self._selector = selectors.DefaultSelector()
        self._accepting = False
        self._accept_paused_until = 0.0
        super().init_process()

    def run(self) -> None:
        """Serve until told to stop, then finish the connections in hand (bounded)."""
        if self.cfg.is_ssl or self.cfg.proxy_protocol != "off":
            # TLS: the bytes it would buffer are ciphertext. PROXY protocol: a line before the
            # request that the framing does not know. The plain sync worker then.
            self.log.warning("TLS or PROXY protocol in gunicorn: requests are not buffered")
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
        # Requests still arriving get a moment to finish, then a 503 (they never reached the
        # app: safe to retry): a trickling client must not hold a restart (max_requests) or a
        # deploy for its whole allowance. No request is started in the grace's last second.
        stopping = time.monotonic()
        stop_by = stopping + max(self.cfg.graceful_timeout - 1.0, 0.0)
        for arriving in self._arriving.values():
            arriving.deadline = min(arriving.deadline, stopping + _STOP_ARRIVING_SECONDS)
            arriving.stopping = True
        while (self._arriving or self._leaving) and time.monotonic() < stop_by:
            self.notify()
            self._serve_ready(min(wait, max(stop_by - time.monotonic(), 0.0)))
        for arriving in list(self._arriving.values()):
            self._close_arriving(arriving)
        for leaving in list(self._leaving.values()):
            self._close_leaving(leaving)
        self._selector.close()

    def _serve_ready(self, wait: float) -> None:
        now = time.monotonic()
        if self._arriving:
            wait = min(wait, max(self._earliest().deadline - now, 0.0))
        if self._leaving:
            wait = min(wait, max(min(c.deadline for c in self._leaving.values()) - now, 0.0))
        if self._accept_paused_until > now:
            wait = min(wait, self._accept_paused_until - now)
        try:
            ready = self._selector.select(wait)
        except InterruptedError:
            ready = []
        for key, _ in ready:
            data = key.data
            if data == _WAKEUP:
                _drain(self.PIPE[0])
            elif isinstance(data, _Arriving):
                if self._arriving.get(data.sock.fileno()) is data:  # not closed meanwhile
                    self._guarded(self._receive, data)
            elif isinstance(data, _Leaving):
                if self._leaving.get(data.sock.fileno()) is data:
                    self._guarded(self._progress, data)
            elif self.alive and self._accepting:
                self._accept(key.fileobj)  # type: ignore[arg-type]
        self._expire()

    def _guarded(self, step: Any, connection: _Arriving | _Leaving) -> bool:
        """Run `step` on one connection and return what it says (false if it raised): whatever
        it raises ends that connection, not the worker."""
        try:
            return bool(step(connection))
        except Exception:
            self.log.exception("Error on a connection; closing it")
            if isinstance(connection, _Arriving):
                self._close_arriving(connection)
            else:
                self._close_leaving(connection)
            return False

    def _earliest(self) -> _Arriving:
        # Every connection gets the same allowance from its accept, and dicts keep insertion
        # order: the first one arriving is the first one due.
        return next(iter(self._arriving.values()))

    def _accept_when_possible(self) -> None:
        # Full of connections still arriving, it accepts on and lets the oldest go (`_accept`).
        full = len(self._arriving) + len(self._leaving) >= self.cfg.worker_connections
        room = not full or bool(self._arriving)
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
            if len(self._arriving) + len(self._leaving) >= self.cfg.worker_connections:
                if not self._arriving:
                    self._set_accepting(False)
                    return
                self._evict_oldest()
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY_ERRORS:
                    continue
                # Out of descriptors or memory, or anything else: pause accepting rather than
                # end the worker and every connection it holds.
                if self._accept_paused_until == 0.0:  # once per episode, not every pause
                    self.log.warning("Cannot accept connections for now: %s", exc)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_SECONDS
                self._set_accepting(False)
                return
            self._accept_paused_until = 0.0
            # (Python's sockets are close-on-exec already.)
            sock.setblocking(False)
            arriving = _Arriving(
                sock,
                address,
                listener,
                time.monotonic() + self._read_seconds,
                FramingScanner(BUFFER_LIMIT),
            )
            self._arriving[sock.fileno()] = arriving
            # Most clients send the request with the connection: read it at once, no wakeup.
            served = self._guarded(self._receive, arriving)
            if served and (self._arriving or self._leaving):
                # Back to the selector after a request served while others are in hand: those
                # that have since become ready go before new ones. With none, accept on, as the
                # sync worker does (no wakeup per request).
                return

    def _evict_oldest(self) -> None:
        """Make room: let go of the connection that has been arriving longest.

        Whole requests are served as they are accepted and never wait here, so a flood of
        connections that each send a byte cannot lock them out; it can only push its own out.
        """
        oldest = self._earliest()
        EVICTIONS.inc()
        self._forget(oldest)
        detail = "Too many requests are arriving at once; send the request again."
        with contextlib.suppress(OSError):  # a best effort, then close: no linger for these
            oldest.sock.send(_problem(HTTPStatus.SERVICE_UNAVAILABLE, detail))
        util.close(oldest.sock)

    def _receive(self, arriving: _Arriving) -> bool:
        """Read what the client has sent; serve, refuse, wait for more, or close if it left.

        Whether the app was called.
        """
        ended = False
        while len(arriving.buffer) <= BUFFER_LIMIT:
            try:
                data = arriving.sock.recv(_RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close_arriving(arriving)
                return False
            if not data:
                ended = True  # the client closed its side: what it sent is all there is
                break
            arriving.buffer += data
            if len(data) < _RECEIVE_SIZE:
                break
        found = arriving.scanner.scan(arriving.buffer)
        if found.framing is Framing.INCOMPLETE:
            if ended:
                self._close_arriving(arriving)  # gone before asking anything whole
                return False
            if found.expects_continue and not arriving.continued:
                arriving.continued = True
                with contextlib.suppress(OSError):
                    arriving.sock.send(_CONTINUE)  # a fresh socket has room for 25 bytes
            self._register(arriving)
            return False
        refusal = _REFUSALS.get(found.framing)
        if refusal is not None:
            self._forget(arriving)
            status, detail = refusal
            answer = _problem(status, detail, arriving.buffer.startswith(b"HEAD "))
            self._leave(arriving.sock, answer)
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
        # The heartbeat per request, as the sync worker's: a burst of requests that became whole
        # together is served one after the other, each within the arbiter's timeout.
        self.notify()
        exchange = _Exchange(
            arriving.sock,
            bytes(arriving.buffer),
            continued=arriving.continued,
            deadline=time.monotonic() + self._read_seconds,
        )
        self.handle(arriving.listener, exchange, arriving.address)
        self._leave(arriving.sock, exchange.outgoing)

    def _leave(self, sock: socket.socket, answer: bytes | bytearray) -> None:
        """Write `answer` without blocking, then close; the selector finishes what cannot be."""
        leaving = _Leaving(sock, time.monotonic() + self._read_seconds, memoryview(answer))
        self._leaving[sock.fileno()] = leaving
        self._progress(leaving)

    def _progress(self, leaving: _Leaving) -> None:
        sock = leaving.sock
        if not leaving.lingering:
            while leaving.outgoing:
                try:
                    sent = sock.send(leaving.outgoing)
                except (BlockingIOError, InterruptedError):
                    self._watch(leaving, selectors.EVENT_WRITE)
                    return
                except OSError:
                    self._close_leaving(leaving)  # the client is gone
                    return
                leaving.outgoing = leaving.outgoing[sent:]
                # The allowance is for a client that takes nothing, not for a long answer.
                leaving.deadline = time.monotonic() + self._read_seconds
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close_leaving(leaving)
                return
            leaving.lingering = True
            leaving.deadline = time.monotonic() + _LINGER_SECONDS
        # Read what the client still sends: closing with unread bytes would reset the connection
        # and could destroy the answer in the client's buffer. Mostly there is nothing.
        while leaving.drained < _LINGER_BYTES:
            try:
                data = sock.recv(_RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                self._watch(leaving, selectors.EVENT_READ)
                return
            except OSError:
                break
            if not data:
                break
            leaving.drained += len(data)
        self._close_leaving(leaving)

    def _watch(self, leaving: _Leaving, events: int) -> None:
        if leaving.events == events:
            return
        if leaving.events:
            self._selector.modify(leaving.sock, events, leaving)
        else:
            self._selector.register(leaving.sock, events, leaving)
        leaving.events = events

    def _expire(self) -> None:
        now = time.monotonic()
        while self._arriving and (arriving := self._earliest()).deadline <= now:
            # Its bytes may have come while the app served someone else: read them first.
            descriptor = arriving.sock.fileno()
            self._guarded(self._receive, arriving)
            if self._arriving.get(descriptor) is not arriving:
                continue  # served, refused or gone
            self._forget(arriving)
            head_only = arriving.buffer.startswith(b"HEAD ")
            if arriving.stopping:
                detail = "The server is restarting; send the request again."
                answer = _problem(HTTPStatus.SERVICE_UNAVAILABLE, detail, head_only)
                self._leave(arriving.sock, answer)
                continue
            READ_TIMEOUTS.inc()
            self.log.info(
                "Request from %s not received within %s s (%d bytes arrived): 408",
                _peer(arriving.address),
                _seconds(self._read_seconds),
                len(arriving.buffer),
            )
            detail = f"The request did not arrive within {_seconds(self._read_seconds)} s."
            self._leave(arriving.sock, _problem(HTTPStatus.REQUEST_TIMEOUT, detail, head_only))
        for leaving in [c for c in self._leaving.values() if c.deadline <= now]:
            # The client may have taken more of the answer since the last wakeup.
            self._guarded(self._progress, leaving)
            if self._leaving.get(leaving.sock.fileno()) is not leaving:
                continue
            if not leaving.lingering:
                # An answer not taken for the whole allowance: reset, so that the client sees
                # an error rather than an end of stream that may look like a whole answer.
                with contextlib.suppress(OSError):
                    leaving.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            self._close_leaving(leaving)

    def _close_arriving(self, arriving: _Arriving) -> None:
        self._forget(arriving)
        util.close(arriving.sock)

    def _close_leaving(self, leaving: _Leaving) -> None:
        if leaving.events:
            self._selector.unregister(leaving.sock)
            leaving.events = 0
        self._leaving.pop(leaving.sock.fileno(), None)
        util.close(leaving.sock)


class _Exchange:
    """The connection as gunicorn's handler sees it: the request from memory, the answer to memory.

    The worker owns the socket: it writes the collected answer and closes the connection after
    the handler returns, so the handler's own graceful close (shutdown, drain, close) is noted,
    not done here.
    """

    def __init__(
        self, sock: socket.socket, prefix: bytes, continued: bool, deadline: float
    ) -> None:
        self._sock = sock
        self._prefix = prefix
        self._continued = continued
        self._deadline = deadline
        self._finished = False
        self.outgoing = bytearray()

    def recv(self, size: int, flags: int = 0) -> bytes:
        """The buffered request first; past it (a handler reading on), the socket's, in time."""
        if self._prefix:
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        if self._finished:
            return b""  # the handler's drain before closing: the worker lingers instead
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request's read allowance is spent")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(size, flags)
        finally:
            self._sock.setblocking(False)

    def send(self, data: bytes, flags: int = 0) -> int:
        """Only the handler's `100 Continue` comes here: sent now (unless ours went already)."""
        if not (self._continued and data == _CONTINUE):
            self._flush()
            self._sock.send(data, flags)
        return len(data)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        """Collect; the worker writes the whole answer without blocking once the handler is done."""
        self.outgoing += data

    def sendfile(self, file: IO[bytes], offset: int = 0, count: int | None = None) -> int:
        """A file answer is collected as bytes too (the app's files are small)."""
        file.seek(offset)
        data = file.read() if count is None else file.read(count)
        self.outgoing += data
        return len(data)

    def shutdown(self, how: int) -> None:
        """Noted: the worker shuts the connection down once the answer is written."""
        self._finished = True

    def close(self) -> None:
        """Noted: the worker closes the connection."""
        self._finished = True

    def settimeout(self, value: float | None) -> None:
        """The worker keeps the socket non-blocking and times it itself."""

    def setblocking(self, flag: bool) -> None:
        """The worker keeps the socket non-blocking and times it itself."""

    def gettimeout(self) -> float:
        """Non-blocking, as far as the handler is concerned."""
        return 0.0

    def __getattr__(self, name: str) -> Any:
        # Everything else is the socket's; kept on the wrapper once looked up, so each of the
        # server's calls after the first costs what a plain attribute does.
        value = getattr(self._sock, name)
        setattr(self, name, value)
        return value

    def _flush(self) -> None:
        if self.outgoing:
            sent = self._sock.send(self.outgoing)
            del self.outgoing[:sent]


def _problem(status: HTTPStatus, detail: str, head_only: bool = False) -> bytes:
    """A complete `Connection: close` answer with an RFC 9457 problem body (none to a HEAD)."""
    body = json.dumps(
        {"type": "about:blank", "title": status.phrase, "status": status.value, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


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


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _peer(address: Any) -> str:
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address) or "a unix socket client"


def _seconds(value: float) -> str:
    return f"{value:g}"
