"""A TCP proxy in front of the broker, to make it unreachable for a while and back.

Web processes and workers are given the proxy's URL instead of the broker's. During an outage
(`cut()` until `restore()`) every open connection is reset and every new one is reset as soon as it
is accepted: to a client that is a broker gone from the network, whatever the broker is (Redis,
over TCP or the embedded server's Unix socket, or RabbitMQ). The broker itself keeps running and
keeps its queues, so the outage tests what clients do, not the broker's own persistence, and a
broker shared with other processes is never stopped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tests.support.processes import free_port

_DEFAULT_PORTS = {"redis": 6379, "amqp": 5672, "pyamqp": 5672}


class BrokerProxy:
    """Forwards 127.0.0.1:`port` to the broker of `broker_url` (a kombu URL)."""

    def __init__(self, broker_url: str) -> None:
        self.port = free_port()
        self.url, self._upstream = _proxied(broker_url, self.port)
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        threading.Thread(target=self._accept, name="broker-proxy", daemon=True).start()

    def cut(self) -> None:
        """Start an outage: reset every connection, and every new one until `restore()`."""
        self._down.set()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        """End the outage: new connections reach the broker again."""
        self._down.clear()

    def close(self) -> None:
        """Stop accepting and reset every connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                _reset(client)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self._upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self._upstream)
            except OSError:
                sock.close()
                raise
            return sock
        return socket.create_connection(self._upstream, timeout=5)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            source.settimeout(None)
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {source, sink}
            for sock in (source, sink):
                _reset(sock)


def _proxied(broker_url: str, port: int) -> tuple[str, str | tuple[str, int]]:
    """The URL that reaches the broker of `broker_url` through 127.0.0.1:`port`, and where the
    broker listens (a Unix socket path, or a host and port)."""
    parts = urlsplit(broker_url)
    if parts.scheme == "redis+socket":
        # The embedded Redis listens on a Unix socket only; clients reach it over TCP instead.
        database = parse_qs(parts.query).get("virtual_host", ["0"])[0]
        return f"redis://127.0.0.1:{port}/{database}", parts.path
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"no proxy for broker URL scheme {parts.scheme!r}")
    upstream = (parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc)), upstream


def _reset(sock: socket.socket) -> None:
    # SO_LINGER with a zero timeout: close() sends a RST, as a dropped link would look, rather
    # than an orderly goodbye. The shutdown first wakes a pump thread blocked reading it.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
