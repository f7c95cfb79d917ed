"""A TCP proxy on loopback that can hold a server's answers back: a server that ran a command
but whose reply is late (frozen between running it and writing the reply, a congested link).

Commands reach the server at once; while `reply_delay` is set, every chunk the server sends back
waits that long before it is forwarded. Only what is in flight when the delay is set is held.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.support.processes import free_port


class SlowReplyProxy:
    """Forwards 127.0.0.1:`port` to `target_port`, delaying replies by `reply_delay` seconds."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.reply_delay = 0.0
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """A redis-py URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, is_reply: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if is_reply and self.reply_delay > 0:
                    time.sleep(self.reply_delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
