"""A local write-ahead log of events: appended on the request path, shipped to the broker later.

The request path only copies one JSON line into a segment file mapped into memory (`mmap`,
`MAP_SHARED`: no system call, so a threaded worker does not hand the GIL to another thread on
every request, as a `write(2)` did). The mapped pages are the file's page cache, exactly where a
`write(2)` puts its bytes: once the response is sent, its event survives a SIGKILL of the process,
and a broker outage only makes the spool longer. A segment's blocks are reserved when it is
created (`posix_fallocate`), so a full disk fails the creation, with an error, and never a later
copy (which would be a SIGBUS); once sealed, the file is cut to the bytes written.

A shipper (see `events.publisher`) reads complete lines from a segment and publishes them; only
once it has seen them in the event log does it record how far it got (`<segment>.offset`). A
crash anywhere (this process, the broker, a worker) therefore means a batch is sent again, and
the log ignores by `event_id` what it already has.

Each segment is held with `flock` by the process writing it, for as long as that process lives.
A segment nobody holds belongs to a process that died: any live process may adopt it, ship what is
left and delete it. The line the dying process was half-way through copying (missing bytes read
as zeros, and JSON has no zero bytes) is cut off with the unwritten tail: its call never got an
answer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import resource
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from events import pipeline_metrics

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
OFFSET_SUFFIX = ".offset"
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
# A segment is sealed by the shipper once it holds `segment_bytes`; its mapping has room for this
# much more, so that appends while the shipper is busy rarely need a new segment.
SEGMENT_SLACK_BYTES = 1024 * 1024
_SCAN_BYTES = 1024 * 1024
# What `ensure_room` keeps reserved ahead of the appends: far more than the lines of the calls
# in flight between a check and its append (an event line is ~400 bytes).
ROOM_AHEAD_BYTES = 64 * 1024


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
    written: int = 0
    """Bytes copied in, while the segment is mapped for writing (else the file's size counts)."""
    synced: int = 0
    """Bytes known to be on the disk (`Spool.sync`)."""
    _map: mmap.mmap | None = field(default=None, repr=False)
    _reader: int | None = field(default=None, repr=False)

    def append(self, data: bytes) -> bool:
        """Copy `data` in after what was written; False (nothing copied) when it does not fit."""
        assert self._map is not None, "only the segment being written takes appends"
        end = self.written + len(data)
        if end > len(self._map):
            return False
        self._map[self.written : end] = data
        # Published after the copy: readers read no further than `size()`, so never a line
        # whose bytes are still being copied (`memcpy` may store its last bytes first).
        self.written = end
        return True

    def seal(self) -> None:
        """No more appends: unmap, and cut the file to the bytes written."""
        self.sealed = True
        self._unmap()

    def _unmap(self) -> None:
        mapping = self._map
        if mapping is not None:
            # Cut first: a reader that no longer sees the mapping asks the file for its size.
            os.ftruncate(self.fd, self.written)
            self._map = None
            mapping.close()

    @property
    def offset_path(self) -> Path:
        """Where the verified offset is kept."""
        return self.path.with_suffix(OFFSET_SUFFIX)

    def read_lines(self, max_lines: int, max_bytes: int) -> tuple[list[str], int]:
        """Up to `max_lines` complete lines after the shipped offset, and their byte length."""
        return self.read_range(self.shipped, max_lines, max_bytes)

    def read_range(self, start: int, max_lines: int, max_bytes: int) -> tuple[list[str], int]:
        """Up to `max_lines` complete lines from byte `start`, and their byte length."""
        available = self.size() - start
        if available <= 0:
            return [], 0
        if self._reader is None:
            self._reader = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._reader, min(max_bytes, available), start)
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
        if self._map is not None:
            return self.written
        return os.fstat(self.fd).st_size

    def close_and_delete(self) -> None:
        """Remove a fully shipped segment (and release its lock)."""
        self.path.unlink(missing_ok=True)
        self.offset_path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Close the descriptors (releasing the lock)."""
        with contextlib.suppress(OSError, ValueError):
            self._unmap()
        for fd in (self._reader, self.fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._reader = None


class Spool:
    """This process's segments: the one being written, and sealed or adopted ones to ship."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_pending: int | None = None,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        # Sealed and adopted segments held at once (each keeps up to two descriptors until its
        # events are confirmed): past this, the spool takes no new calls (`ensure_room` raises)
        # rather than run out of descriptors with calls already counted.
        self.max_pending = max_pending if max_pending is not None else _pending_allowed()
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
            segment = self._writable(len(data))
            if not segment.append(data):
                segment.seal()  # full before the shipper sealed it: the next one takes the line
                self._pending.append(segment)
                self._current = None
                self._writable(len(data)).append(data)
        if not self.appended_since_ship.is_set():  # set() takes a lock and notifies: once
            self.appended_since_ship.set()

    def ensure_room(self, room: int = ROOM_AHEAD_BYTES) -> None:
        """Make sure the next appends have `room` bytes reserved in a mapped segment, opening a
        new segment if needed; raises `OSError` (a full disk, no descriptor left) if it cannot.

        Called before a call is counted, so that a spool that cannot take its event refuses the
        call while nothing has happened yet, rather than failing it after the quota counted it.
        """
        current = self._current
        if (
            current is not None
            and current._map is not None
            and self._pid == os.getpid()
            and len(current._map) - current.written >= room
        ):
            return  # the common case: no lock
        with self._lock:
            self._ensure_process()
            current = self._current
            if (
                current is not None
                and current._map is not None
                and len(current._map) - current.written >= room
            ):
                return
            if len(self._pending) >= self.max_pending:
                # Checked before sealing: the current segment keeps what room it has for the
                # calls already counted, and no new one is counted.
                raise OSError(
                    errno.EMFILE,
                    f"event spool backlog full: {len(self._pending)} segments not yet confirmed "
                    "(is the broker down, or are workers behind?)",
                )
            if current is not None:
                current.seal()
                self._pending.append(current)
                self._current = None
            self._writable(room)

    def sync(self) -> None:
        """Force what was appended since the last sync onto the disk: `fsync` of each segment
        with unsynced bytes (it writes back the mapping's dirty pages, and lets go of the GIL).

        Called by the shipper's thread, which alone retires segments, so none is closed under
        it; outside the lock, so appends never wait for the disk.
        """
        with self._lock:
            if self._pid != os.getpid():
                return
            segments = [*self._pending, *([self._current] if self._current else [])]
        for segment in segments:
            size = segment.size()
            if size > segment.synced:
                os.fsync(segment.fd)
                segment.synced = size

    def segments_to_ship(self) -> list[Segment]:
        """Segments with data to ship, oldest first (pending ones, then the current one)."""
        with self._lock:
            self._ensure_process()
            current = [self._current] if self._current is not None else []
            if self._current is not None and self._current.size() >= self.segment_bytes:
                self._current.seal()
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
                if len(self._pending) >= self.max_pending // 2:
                    break  # the rest at a later adoption, once these are shipped and retired
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
            # Cut what its writer never finished: the unwritten (zero) tail of the mapping and
            # the line it was killed while copying, which could never be shipped (only complete
            # lines are), so the segment could never be retired.
            complete, written = _complete_end(fd)
            os.ftruncate(fd, complete)
            if written > complete:
                pipeline_metrics.SPOOL_TORN_LINES.inc()
                logger.warning(
                    "spool: cut %d bytes of an unfinished line from %s", written - complete, path
                )
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
            # In a forked child the parent's segments are dropped untouched: cutting or deleting
            # a file the parent still writes through its mapping would crash it (SIGBUS).
            self._ensure_process()
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

    def _writable(self, room: int) -> Segment:
        if self._current is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SEGMENT_SUFFIX}"
            path = self.directory / name
            capacity = max(self.segment_bytes + SEGMENT_SLACK_BYTES, room)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.posix_fallocate(fd, 0, capacity)
                mapping = mmap.mmap(fd, capacity)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            self._current = Segment(path=path, fd=fd, _map=mapping)
        return self._current


def _pending_allowed() -> int:
    """How many pending segments this process's descriptor limit leaves room for: two each,
    beside ~512 for everything else a web process holds (sockets, pools, files)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(8, (soft - 512) // 2)


def written_lines(path: Path) -> list[str]:
    """The complete lines of a segment file as it is now, whoever holds it (for tools and tests:
    a segment being written is longer than its lines, the rest being zeros)."""
    data = path.read_bytes().split(b"\0", 1)[0]
    return [line.decode("utf-8", errors="replace") for line in data.split(b"\n")[:-1] if line]


def _complete_end(fd: int) -> tuple[int, int]:
    """Where a dead writer's complete lines end, and where its data ends: the data ends before
    the first zero byte (the unwritten tail, or a hole in the line it was copying), the complete
    lines at the newline before that."""
    end = size = os.fstat(fd).st_size
    position = 0
    while position < size:
        chunk = os.pread(fd, _SCAN_BYTES, position)
        if not chunk:
            break
        zero = chunk.find(b"\0")
        if zero >= 0:
            end = position + zero
            break
        position += len(chunk)
    start = end
    while start > 0:
        start = max(start - _SCAN_BYTES, 0)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1, end
    return 0, end


def _read_offset(segment_path: Path) -> int:
    try:
        return int(segment_path.with_suffix(OFFSET_SUFFIX).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
