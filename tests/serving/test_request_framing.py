"""When a buffered request is whole, from its framing alone (the web worker's buffering)."""

from __future__ import annotations

from typing import Any

import pytest

from timo_hub.serving.request_framing import Framing, FramingScanner, scan

LIMIT = 1024
HEAD = b"POST /api/v1/auth/keys HTTP/1.1\r\nHost: x\r\n"


def test_a_request_without_a_body_is_whole_once_its_headers_end() -> None:
    request = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    assert [scan(request[:n], LIMIT).framing for n in (10, len(request) - 1)] == [
        Framing.INCOMPLETE,
        Framing.INCOMPLETE,
    ]
    assert scan(request, LIMIT).framing is Framing.COMPLETE


def test_a_content_length_body_is_whole_only_with_every_byte() -> None:
    request = HEAD + b"Content-Length: 10\r\n\r\n0123456789"
    assert scan(request[:-1], LIMIT).framing is Framing.INCOMPLETE
    assert scan(request, LIMIT).framing is Framing.COMPLETE
    # The stalled client: 4 of 100 bytes.
    stalled = HEAD + b"Content-Length: 100\r\n\r\nabcd"
    assert scan(stalled, LIMIT).framing is Framing.INCOMPLETE


@pytest.mark.parametrize(
    "chunks",
    [
        b"4\r\nabcd\r\n0\r\n\r\n",
        b"4;ext=1\r\nabcd\r\nA\r\n0123456789\r\n0\r\n\r\n",
        b"4\r\nabcd\r\n0\r\nTrailer: yes\r\n\r\n",
    ],
)
def test_a_chunked_body_is_whole_after_its_last_chunk_and_trailers(chunks: bytes) -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    assert scan(request, LIMIT).framing is Framing.COMPLETE
    for cut in range(len(HEAD) + 30, len(request)):
        assert scan(request[:cut], LIMIT).framing is Framing.INCOMPLETE, request[:cut]


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 4\r\nContent-Length: 5\r\n",  # conflicting lengths
        b"Content-Length: -4\r\n",
        b"Content-Length: 0x4\r\n",
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",  # smuggling shape
        b"Transfer-Encoding: gzip\r\n",  # no length at all
        b"Bad Header: x\r\n",
        b"NoColon\r\n",
        b" Folded: x\r\n",
    ],
)
def test_framing_it_cannot_vouch_for_goes_to_the_servers_parser(head: bytes) -> None:
    assert scan(HEAD + head + b"\r\nabcd", LIMIT).framing is Framing.UNBUFFERABLE


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabcd\r\n0\r\n\r\n", b"4\r\nabcdXX0\r\n\r\n", b"+4\r\nabcd\r\n0\r\n\r\n"],
)
def test_malformed_chunks_go_to_the_servers_parser(body: bytes) -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    assert scan(request, LIMIT).framing is Framing.UNBUFFERABLE


def test_nothing_is_held_past_the_limit() -> None:
    assert scan(b"GET /" + b"a" * LIMIT, LIMIT).framing is Framing.HEADERS_TOO_LARGE
    assert scan(HEAD + b"Content-Length: 2000\r\n\r\n", LIMIT).framing is Framing.BODY_TOO_LARGE
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert scan(chunked + b"1" * LIMIT, LIMIT).framing is Framing.BODY_TOO_LARGE
    assert scan(chunked + b"800\r\nab", LIMIT).framing is Framing.BODY_TOO_LARGE
    assert scan(b"GET / HTTP/1.1\n\n", LIMIT).framing is Framing.UNBUFFERABLE  # bare LF


def test_a_length_python_cannot_read_is_too_large_not_an_error() -> None:
    # Guards the defect where a Content-Length of 4,400 digits made int() raise in the worker's
    # loop: the worker process died, and every connection it held with it.
    request = HEAD + b"Content-Length: " + b"9" * 4400 + b"\r\n\r\nhello"
    assert scan(request, 10 * LIMIT).framing is Framing.BODY_TOO_LARGE
    chunk = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 4400 + b"\r\nhello"
    assert scan(chunk, 10 * LIMIT).framing is Framing.BODY_TOO_LARGE


def test_leading_zeros_are_only_zeros() -> None:
    zeros = b"0" * 4400
    request = HEAD + b"Content-Length: " + zeros + b"5\r\n\r\nhello"
    assert scan(request, 10 * LIMIT).framing is Framing.COMPLETE
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + zeros + b"5\r\nhello\r\n0\r\n\r\n"
    assert scan(chunked, 10 * LIMIT).framing is Framing.COMPLETE


def test_one_empty_line_before_the_request_line_is_ignored_as_gunicorn_does() -> None:
    # Guards the defect where the leading CRLF made the request line read as a header line: the
    # request went unbuffered to gunicorn's blocking parser, where a trickle held the worker.
    request = b"\r\n" + HEAD + b"Content-Length: 4\r\n\r\nab"
    assert scan(request, LIMIT).framing is Framing.INCOMPLETE
    assert scan(request + b"cd", LIMIT).framing is Framing.COMPLETE


def test_a_trickled_request_is_examined_once_in_all() -> None:
    # Guards the defect where every read rescanned the buffer from its first byte: a chunked
    # body sent six bytes at a time kept a worker's CPU busy (~20 ms a scan near the limit).
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 2000 + b"0\r\n\r\n"
    scanner = FramingScanner(len(request))
    calls = 0

    class CountingBuffer(bytearray):
        def find(self, *args: Any) -> int:
            nonlocal calls
            calls += 1
            return super().find(*args)

    buffer = CountingBuffer()
    results = []
    for start in range(0, len(request), 6):
        buffer += request[start : start + 6]
        results.append(scanner.scan(buffer).framing)
    assert results[-1] is Framing.COMPLETE
    assert set(results[:-1]) == {Framing.INCOMPLETE}
    # One search per read, plus one per chunk: not one per chunk per read.
    assert calls < len(results) + 2 * 2000 + 10


def test_a_client_awaiting_100_continue_is_told_so_until_its_body_starts() -> None:
    head = HEAD + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    assert scan(head, LIMIT).expects_continue
    assert not scan(head + b"ab", LIMIT).expects_continue
    assert not scan(HEAD + b"Content-Length: 4\r\n\r\n", LIMIT).expects_continue
    # HTTP/1.0 clients are sent no 1xx (RFC 9110 section 15.2).
    old = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    assert not scan(old, LIMIT).expects_continue
    later = b"POST / HTTP/1.2\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    assert scan(later, LIMIT).expects_continue
