"""How much of one HTTP/1.1 request a buffer holds, from its framing alone (RFC 9112 section 6).

The web worker reads a request into memory before it spends itself on it; this says when the
request line, the header section and the whole body are there. It is not a parser: anything it
does not positively recognise (a malformed header line, conflicting lengths, an unknown transfer
coding, a request past the buffer's limit) is "unbufferable" and goes to gunicorn's own parser,
which answers it (usually with a 400) or reads the rest itself.
"""

from __future__ import annotations

import enum
import string
from dataclasses import dataclass

_HEX_DIGITS = frozenset(string.hexdigits.encode())
# RFC 9110 section 5.6.2: the characters of a field name.
_TOKEN = frozenset((string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode())


class Framing(enum.Enum):
    """Where a buffered request stands."""

    INCOMPLETE = "incomplete"  # more bytes are needed
    COMPLETE = "complete"  # request line, headers and the whole body are in the buffer
    UNBUFFERABLE = "unbufferable"  # malformed or too large: the server's parser decides


@dataclass(frozen=True, slots=True)
class Scan:
    """What `scan` found: where the request stands, and whether the client awaits `100 Continue`."""

    framing: Framing
    expects_continue: bool = False


_INCOMPLETE = Scan(Framing.INCOMPLETE)
_COMPLETE = Scan(Framing.COMPLETE)
_UNBUFFERABLE = Scan(Framing.UNBUFFERABLE)


def scan(buffer: bytes | bytearray, limit: int) -> Scan:
    """Where the request at the start of `buffer` stands, when at most `limit` bytes are held."""
    header_end = buffer.find(b"\r\n\r\n")
    if header_end == -1:
        # A bare-LF header section is not ours to accept or refuse; neither is an endless one.
        if b"\n\n" in buffer or len(buffer) > limit:
            return _UNBUFFERABLE
        return _INCOMPLETE
    body_start = header_end + 4
    fields = _header_fields(bytes(buffer[:header_end]))
    if fields is None:
        return _UNBUFFERABLE
    lengths, codings, expects_continue = fields
    if codings:
        if lengths or codings[-1] != b"chunked":
            return _UNBUFFERABLE
        framing = _chunked_body(buffer, body_start, limit)
    elif lengths:
        if len(set(lengths)) != 1 or not lengths[0].isdigit():
            return _UNBUFFERABLE
        body_end = body_start + int(lengths[0])
        if body_end > limit:
            return _UNBUFFERABLE
        framing = Framing.COMPLETE if len(buffer) >= body_end else Framing.INCOMPLETE
    else:
        return _COMPLETE
    if framing is Framing.INCOMPLETE:
        return Scan(framing, expects_continue=expects_continue and len(buffer) == body_start)
    return Scan(framing)


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


def _chunked_body(buffer: bytes | bytearray, start: int, limit: int) -> Framing:
    """Whether the chunked body from `start` is whole: every chunk, the last one and trailers."""
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end == -1:
            return Framing.UNBUFFERABLE if len(buffer) > limit else Framing.INCOMPLETE
        size_text = buffer[position:line_end].split(b";", 1)[0].strip()
        if not size_text or not _HEX_DIGITS.issuperset(size_text):
            return Framing.UNBUFFERABLE
        size = int(size_text, 16)
        if size == 0:
            # The last chunk; the trailer section ends with an empty line.
            if buffer.find(b"\r\n\r\n", line_end) != -1:
                return Framing.COMPLETE
            return Framing.UNBUFFERABLE if len(buffer) > limit else Framing.INCOMPLETE
        data_end = line_end + 2 + size
        if data_end + 2 > limit:
            return Framing.UNBUFFERABLE
        if len(buffer) < data_end + 2:
            return Framing.INCOMPLETE
        if buffer[data_end : data_end + 2] != b"\r\n":
            return Framing.UNBUFFERABLE
        position = data_end + 2
