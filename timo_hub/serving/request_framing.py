"""How much of one HTTP/1.1 request a buffer holds, from its framing alone (RFC 9112 section 6).

The web worker reads a request into memory before it spends itself on it; this says when the
request line, the header section and the whole body are there. It is not a parser: anything it
does not positively recognise (a malformed header line, conflicting lengths, an unknown transfer
coding) is "unbufferable" and goes, with its header section whole, to gunicorn's own parser,
which refuses it at once. A request larger than the buffer may hold is "too large": the worker
answers it (431 or 413) without waiting for the rest.

`FramingScanner` keeps what it learnt between reads (where the headers end, how the body is
framed, how far the chunks are checked), so a request trickled in small pieces is examined once
in all, not once per piece.
"""

from __future__ import annotations

import enum
import re
import string
from dataclasses import dataclass

_HEX_DIGITS = frozenset(string.hexdigits.encode())
# RFC 9110 section 5.6.2: the characters of a field name.
_TOKEN = frozenset((string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode())
# Longer lengths are not ours to read (and Python refuses int() of 4,300 digits and more).
_MAX_LENGTH_DIGITS = 18
_AT_LEAST_1_1 = re.compile(rb" HTTP/1\.[1-9]$")


class Framing(enum.Enum):
    """Where a buffered request stands."""

    INCOMPLETE = "incomplete"  # more bytes are needed
    COMPLETE = "complete"  # request line, headers and the whole body are in the buffer
    UNBUFFERABLE = "unbufferable"  # headers whole, framing malformed: the server's parser refuses
    HEADERS_TOO_LARGE = "headers_too_large"  # no end of the header section within the limit
    BODY_TOO_LARGE = "body_too_large"  # the body would take the request past the limit


@dataclass(frozen=True, slots=True)
class Scan:
    """What a scan found: where the request stands, and whether the client awaits `100 Continue`."""

    framing: Framing
    expects_continue: bool = False


_INCOMPLETE = Scan(Framing.INCOMPLETE)
_UNBUFFERABLE = Scan(Framing.UNBUFFERABLE)


def scan(buffer: bytes | bytearray, limit: int) -> Scan:
    """Where the request at the start of `buffer` stands, when at most `limit` bytes are held."""
    return FramingScanner(limit).scan(buffer)


class FramingScanner:
    """Scans one connection's growing buffer; each call sees the buffer with more bytes appended."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._searched = 0  # the header section's end is not before this offset
        self._body_start: int | None = None
        self._length: int | None = None  # Content-Length framing
        self._chunked = False
        self._chunk_position = 0  # chunked framing: the next chunk-size line starts here
        self._expects_continue = False
        self._settled: Scan | None = None

    def scan(self, buffer: bytes | bytearray) -> Scan:
        """Where the request stands now that `buffer` holds these bytes."""
        if self._settled is not None:
            return self._settled
        if self._body_start is None:
            found = self._scan_headers(buffer)
            if found is not None:
                return found
        assert self._body_start is not None
        if self._chunked:
            framing = self._scan_chunks(buffer)
        elif self._length is not None:
            framing = (
                Framing.COMPLETE
                if len(buffer) >= self._body_start + self._length
                else Framing.INCOMPLETE
            )
        else:
            framing = Framing.COMPLETE
        if framing is Framing.INCOMPLETE:
            waiting = self._expects_continue and len(buffer) == self._body_start
            return Scan(framing, expects_continue=waiting)
        return self._settle(Scan(framing))

    def _settle(self, found: Scan) -> Scan:
        self._settled = found
        return found

    def _scan_headers(self, buffer: bytes | bytearray) -> Scan | None:
        """Learn the framing once the header section is whole; a scan result until then."""
        # RFC 9112 section 2.2: one empty line before the request line is to be ignored.
        start = 2 if buffer.startswith(b"\r\n") else 0
        header_end = buffer.find(b"\r\n\r\n", max(self._searched, start))
        if header_end == -1:
            if len(buffer) > self._limit:
                return self._settle(Scan(Framing.HEADERS_TOO_LARGE))
            # A bare-LF header section is not ours to accept or refuse: gunicorn's.
            if b"\n\n" in buffer:
                return self._settle(_UNBUFFERABLE)
            self._searched = max(len(buffer) - 3, 0)
            return _INCOMPLETE
        self._body_start = header_end + 4
        head = bytes(buffer[start:header_end])
        fields = _header_fields(head)
        if fields is None:
            return self._settle(_UNBUFFERABLE)
        lengths, codings, expects_continue = fields
        # An HTTP/1.0 client is sent no 1xx (RFC 9110 section 15.2), so it does not wait for one.
        request_line = head.split(b"\r\n", 1)[0]
        self._expects_continue = expects_continue and _AT_LEAST_1_1.search(request_line) is not None
        if codings:
            if lengths or codings[-1] != b"chunked":
                return self._settle(_UNBUFFERABLE)
            self._chunked = True
            self._chunk_position = self._body_start
        elif lengths:
            length = lengths[0]
            if len(set(lengths)) != 1 or not length.isdigit():
                return self._settle(_UNBUFFERABLE)
            significant = length.lstrip(b"0") or b"0"
            if len(significant) > _MAX_LENGTH_DIGITS:
                return self._settle(Scan(Framing.BODY_TOO_LARGE))
            self._length = int(significant)
            if self._body_start + self._length > self._limit:
                return self._settle(Scan(Framing.BODY_TOO_LARGE))
        return None

    def _scan_chunks(self, buffer: bytes | bytearray) -> Framing:
        """Check the chunks that arrived since the last scan; whether the last one is here."""
        position = self._chunk_position
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end == -1:
                return self._incomplete_within_limit(buffer)
            size_text = buffer[position:line_end].split(b";", 1)[0].strip()
            if not size_text or not _HEX_DIGITS.issuperset(size_text):
                return Framing.UNBUFFERABLE
            size_text = size_text.lstrip(b"0") or b"0"
            if len(size_text) > _MAX_LENGTH_DIGITS:
                return Framing.BODY_TOO_LARGE
            size = int(size_text, 16)
            if size == 0:
                # The last chunk; the trailer section ends with an empty line.
                if buffer.find(b"\r\n\r\n", line_end) != -1:
                    return Framing.COMPLETE
                return self._incomplete_within_limit(buffer)
            data_end = line_end + 2 + size
            if data_end + 2 > self._limit:
                return Framing.BODY_TOO_LARGE
            if len(buffer) < data_end + 2:
                return Framing.INCOMPLETE
            if buffer[data_end : data_end + 2] != b"\r\n":
                return Framing.UNBUFFERABLE
            position = self._chunk_position = data_end + 2

    def _incomplete_within_limit(self, buffer: bytes | bytearray) -> Framing:
        return Framing.BODY_TOO_LARGE if len(buffer) > self._limit else Framing.INCOMPLETE


def _header_fields(head: bytes) -> tuple[list[bytes], list[bytes], bool] | None:
    """Content-Length values, transfer codings and whether `Expect: 100-continue` was sent."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    expects_continue = False
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TOKEN.issuperset(name):
            return None
        name = name.lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b","))
        elif name == b"expect":
            expects_continue = value.strip().lower() == b"100-continue"
    return lengths, codings, expects_continue
