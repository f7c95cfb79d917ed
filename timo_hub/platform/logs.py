"""Logging for every process: JSON lines in production, plain readable lines elsewhere.

Each record carries the `request_id`, `account_id` and `key_id` of the request it was logged in
(empty outside one): the ids of the caller, never the key itself. `TIMO_LOG_FORMAT` (`json` or
`plain`) overrides the default, which is JSON when `TIMO_ENV=production`.

Platform code: imports only the settings. The web gate tells it the request in flight
(`current_request`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from json.encoder import encode_basestring_ascii
from typing import Protocol, TextIO

from pythonjsonlogger.json import JsonFormatter

from timo_hub.platform.settings import Settings

REQUEST_FIELDS = ("request_id", "account_id", "key_id")
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONFIGURED_MARK = "_timo_handler"
# In production, access lines are written together at most this long after the first of them
# (or once this many are held), as nginx's `buffer=`/`flush=`: a write(2) per request was the
# request's costliest call after the quota's, and with threaded workers each one handed the GIL
# to another thread. A process killed with SIGKILL loses what it held; events and counts are
# written elsewhere, each at once.
ACCESS_BUFFER_SECONDS = 0.2
HELD_LINES = 256


class LoggedRequest(Protocol):
    """A request in flight, as log records see it."""

    @property
    def log_ids(self) -> tuple[str, str, str]:
        """(request id, account id, key id), each empty where unknown."""
        ...


# Set by the web gate for the duration of each request (per thread: a context variable).
current_request: ContextVar[LoggedRequest | None] = ContextVar("timo_logged_request", default=None)


_redactors: list[Callable[[str], str]] = []


def redact_with(redactor: Callable[[str], str]) -> None:
    """Pass every line our handlers write through `redactor` (idempotent); the web app hides
    API keys this way, which platform code knows nothing of."""
    if redactor not in _redactors:
        _redactors.append(redactor)


def redacted(text: str) -> str:
    """`text` through every registered redactor."""
    for redactor in _redactors:
        text = redactor(text)
    return text


class RequestContextFilter(logging.Filter):
    """Adds the current request's ids (from `current_request`) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it."""
        request = current_request.get()
        values = request.log_ids if request is not None else ("", "", "")
        for name, value in zip(REQUEST_FIELDS, values, strict=True):
            if not getattr(record, name, ""):
                setattr(record, name, value)
        return True


def log_format(settings: Settings) -> str:
    """`json` or `plain`: `TIMO_LOG_FORMAT` if it names one, else JSON in production only."""
    chosen = (settings.log_format or "").strip().lower()
    if chosen in ("json", "plain"):
        return chosen
    return "json" if settings.env == "production" else "plain"


def configure_logging(settings: Settings) -> None:
    """Send the root logger's records to stderr in this process's format (idempotent).

    The level is `TIMO_LOG_LEVEL` (default `INFO`, which includes one access line per request;
    `WARNING` drops those).
    """
    level = logging.getLevelName(settings.log_level.strip().upper())
    if not isinstance(level, int):
        level = logging.INFO
    root = logging.getLogger()
    if any(getattr(handler, CONFIGURED_MARK, False) for handler in root.handlers):
        return
    held_for = ACCESS_BUFFER_SECONDS if settings.env == "production" else 0.0
    handler = build_handler(log_format(settings), sys.stderr, held_for)
    setattr(handler, CONFIGURED_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)


class ServiceLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler: `fmt` lines with the request ids, and a fast lane for the access log.

    The access log writes a line per request; through `logging` (a record, the filter, the JSON
    formatter) that costs about as much as serving a bare Flask request. `write_line` writes the
    same line, with the same fields in the same order, from values the caller already has.
    """

    def __init__(self, fmt: str, stream: TextIO, buffer_seconds: float = 0.0) -> None:
        super().__init__(stream)
        self.log_format = fmt
        self._stamp = (-1, "")  # (epoch second, its text): one attribute, read and set whole
        # Access lines held for at most `buffer_seconds` and written together (see `write_line`).
        self.buffer_seconds = buffer_seconds
        self._held: list[str] = []
        self._held_since = 0.0
        self._flusher_pid = 0

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, redacted (a secret in a message or a traceback stays out)."""
        return redacted(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        """Write held access lines first, so that the stream keeps the order of events."""
        if self._held:
            self._write_held()
        super().emit(record)

    def flush(self) -> None:
        """Write held access lines, then flush the stream (`logging.shutdown` calls this at
        exit)."""
        if self._held:
            with self.lock:  # type: ignore[union-attr]
                self._write_held()
        super().flush()

    def write_line(
        self, logger_name: str, message: str, ids: tuple[str, str, str], fields: dict[str, object]
    ) -> None:
        """Write one INFO line of `logger_name` (the request, account and key ids, then the
        extra `fields`), as `logging` with this handler's formatter would."""
        if self.level > logging.INFO:
            return
        now = time.time()
        second = int(now)
        stamped, text = self._stamp
        if second != stamped:
            # `Formatter.formatTime`'s default, computed once a second rather than per line.
            text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._stamp = (second, text)
        asctime = f"{text},{int((now - second) * 1000):03d}"
        request_id, account_id, key_id = ids
        if self.log_format == "json":
            # What `json.dumps` writes for this flat document (a test holds the two equal), put
            # together directly: `dumps` builds an encoder per call, which cost more than this.
            parts = [
                '{"time": "',
                asctime,
                '", "level": "INFO", "logger": ',
                encode_basestring_ascii(logger_name),
                ', "message": ',
                encode_basestring_ascii(message),
            ]
            for name, value in fields.items():
                parts += (", ", encode_basestring_ascii(name), ": ", _json_scalar(value))
            parts += (
                ', "request_id": ',
                encode_basestring_ascii(request_id),
                ', "account_id": ',
                encode_basestring_ascii(account_id),
                ', "key_id": ',
                encode_basestring_ascii(key_id),
                "}",
            )
            line = "".join(parts)
        else:
            line = f"{asctime} INFO    {logger_name} [{request_id}] {message}"
        try:
            with self.lock:  # type: ignore[union-attr]
                if self.buffer_seconds <= 0:
                    self.stream.write(line + self.terminator)
                    self.stream.flush()
                    return
                moment = time.monotonic()
                if not self._held:
                    self._held_since = moment
                self._held.append(line)
                if (
                    len(self._held) >= HELD_LINES
                    or moment - self._held_since >= self.buffer_seconds
                ):
                    self._write_held()
            if self._flusher_pid != os.getpid():
                self._start_flusher()
        except Exception:
            # As `StreamHandler.emit`: a log that cannot be written (a closed pipe, a full disk)
            # must not fail the request it describes, which is already answered and counted.
            self.handleError(logging.makeLogRecord({"name": logger_name, "msg": message}))

    def _write_held(self) -> None:
        # Under the handler's lock. Lines are dropped once handed to the stream, written or not:
        # a stream that fails keeps failing, and the lines are a log, not a record of account.
        # As `StreamHandler.emit`, a failure is reported, never raised: the logging call that
        # happened to write them (a warning in an `except` block, say) must not fail for it.
        held, self._held = self._held, []
        try:
            self.stream.write(self.terminator.join(held) + self.terminator)
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"name": "api.access", "msg": "held lines"}))

    def _start_flusher(self) -> None:
        # One per process (a forked worker starts its own): writes what a quiet moment left held.
        with self.lock:  # type: ignore[union-attr]
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_held_forever, name="log-flusher", daemon=True).start()

    def _flush_held_forever(self) -> None:
        # Wakes twice per hold time, so that no line is held much longer than that.
        while True:
            time.sleep(self.buffer_seconds / 2)
            with self.lock:  # type: ignore[union-attr]
                if self._held and time.monotonic() - self._held_since >= self.buffer_seconds:
                    self._write_held()


def _json_scalar(value: object) -> str:
    """One field's value as `json.dumps(..., default=str)` writes it."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value, default=str)


def build_handler(fmt: str, stream: TextIO, buffer_seconds: float = 0.0) -> logging.Handler:
    """A handler writing `fmt` (`json` or `plain`) lines, with the request ids, to `stream`
    (access lines held up to `buffer_seconds` and written together)."""
    handler = ServiceLogHandler(fmt, stream, buffer_seconds)
    handler.addFilter(RequestContextFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    return handler
