"""A local write-ahead log of events: appended on the request path, shipped to the broker later.

The request path only appends one JSON line to a segment file (a `write(2)`, microseconds): once
the response is sent, its event is in the page cache and survives a SIGKILL of the process, and a
broker outage only makes the spool longer. A shipper (see `events.publisher`) reads complete lines
from a segment and publishes them; only once it has seen them in the event log does it record how
far it got (`<segment>.offset`). A crash anywhere (this process, the broker, a worker) therefore
means a batch is sent again, and the log ignores by `event_id` what it already has.

Each segment is held with `flock` by the process writing it, for as long as that process lives.
A segment nobody holds belongs to a process that died: any live process may adopt it, ship what is
left and delete it. A line the dying process was half-way through writing has no newline; it is
skipped, and its call never got an answer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SEGMENT_SUFFIX = ".jsonl"
OFFSET_SUFFIX = ".offset"
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024


@dataclass
class Segment:
    """One spool file, the descriptor holding its lock, and how far it has got.

    `shipped` (in memory) is how many bytes were handed to the broker; `verified` (persisted in
    `<segment>.offset`) is how many bytes are known to be in the event log. After a restart or an
    adoption everything past `verified` is shipped again; the log ignores what it already has.
    """

    path: Path
    fd: int
    shipped: int = 0
    verified: int = 0
    sealed: bool = False  # no more writes will come: delete once fully verified
    _reader: int | None = field(default=None, repr=False)

    @property
    def offset_path(self) -> Path:
        """Where the verified offset is kept."""
        return self.path.with_suffix(OFFSET_SUFFIX)

    def read_lines(self, max_lines: int, max_bytes: int) -> tuple[list[str], int]:
        """Up to `max_lines` complete lines after the shipped offset, and their byte length."""
        return self.read_range(self.shipped, max_lines, max_bytes)

    def read_range(self, start: int, max_lines: int, max_bytes: int) -> tuple[list[str], int]:
        """Up to `max_lines` complete lines from byte `start`, and their byte length."""
        if self._reader is None:
            self._reader = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._reader, max_bytes, start)
        end = data.rfind(b"\n")
        if end < 0:
            return [], 0
        lines = data[: end + 1].split(b"\n")[:-1][:max_lines]
        consumed = sum(len(line) + 1 for line in lines)
        return [line.decode("utf-8", errors="replace") for line in lines if line], consumed

    def mark_shipped(self, consumed: int) -> None:
        """Record that `consumed` more bytes reached the broker."""
        self.shipped += consumed

    def mark_verified(self, upto: int) -> None:
        """Record (durably) that every line before byte `upto` is in the event log."""
        self.verified = max(self.verified, upto)
        tmp = self.offset_path.with_suffix(".offset.tmp")
        tmp.write_text(str(self.verified))
        os.replace(tmp, self.offset_path)

    def size(self) -> int:
        """Bytes written so far."""
        return os.fstat(self.fd).st_size

    def close_and_delete(self) -> None:
        """Remove a fully shipped segment (and release its lock)."""
        self.path.unlink(missing_ok=True)
        self.offset_path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Close the descriptors (releasing the lock)."""
        for fd in (self._reader, self.fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._reader = None


class Spool:
    """This process's segments: the one being written, and sealed or adopted ones to ship."""

    def __init__(self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._pending: list[Segment] = []  # sealed own segments and adopted orphans
        self._pid: int | None = None
        self.appended_since_ship = threading.Event()

    def append(self, line: str) -> None:
        """Write one event line durably enough to survive this process being killed."""
        data = line.encode() + b"\n"
        with self._lock:
            self._ensure_process()
            segment = self._writable()
            os.write(segment.fd, data)
        if not self.appended_since_ship.is_set():  # set() takes a lock and notifies: once
            self.appended_since_ship.set()

    def segments_to_ship(self) -> list[Segment]:
        """Segments with data to ship, oldest first (pending ones, then the current one)."""
        with self._lock:
            self._ensure_process()
            current = [self._current] if self._current is not None else []
            if self._current is not None and self._current.size() >= self.segment_bytes:
                self._current.sealed = True
                self._pending.append(self._current)
                self._current = None
                current = []
            return [*self._pending, *current]

    def retire(self, segment: Segment) -> None:
        """Delete a sealed segment whose every line is confirmed in the log."""
        with self._lock:
            if segment in self._pending:
                self._pending.remove(segment)
        segment.close_and_delete()

    def adopt_orphans(self) -> int:
        """Take over segments of processes that died; return how many were adopted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        adopted = 0
        for path in sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}")):
            with self._lock:
                owned = {s.path for s in self._pending}
                if self._current is not None:
                    owned.add(self._current.path)
            if path in owned:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its writer is alive
                continue
            verified = _read_offset(path)
            segment = Segment(path=path, fd=fd, sealed=True, shipped=verified, verified=verified)
            with self._lock:
                self._ensure_process()
                self._pending.append(segment)
            adopted += 1
        return adopted

    def backlog_bytes(self, *, verified: bool = False) -> int:
        """Bytes not yet shipped (or, with `verified`, not yet known to be in the log)."""
        with self._lock:
            segments = [*self._pending, *([self._current] if self._current else [])]
        return sum(max(s.size() - (s.verified if verified else s.shipped), 0) for s in segments)

    def close(self) -> None:
        """Close every segment; what is not verified stays on disk for adoption."""
        with self._lock:
            segments = [*self._pending, *([self._current] if self._current else [])]
            self._pending, self._current = [], None
        for segment in segments:
            if segment.size() <= segment.verified:
                segment.close_and_delete()
            else:
                segment.close()

    def _ensure_process(self) -> None:
        if self._pid != os.getpid():
            # After fork the parent's segments are not ours to write or ship.
            self._current, self._pending, self._pid = None, [], os.getpid()

    def _writable(self) -> Segment:
        if self._current is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SEGMENT_SUFFIX}"
            path = self.directory / name
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._current = Segment(path=path, fd=fd)
        return self._current


def _read_offset(segment_path: Path) -> int:
    try:
        return int(segment_path.with_suffix(OFFSET_SUFFIX).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
