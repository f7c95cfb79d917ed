"""When a buffered request is whole, from its framing alone (the web worker's buffering)."""

from __future__ import annotations

import pytest

from timo_hub.serving.request_framing import Framing, scan

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
        b"Content-Length: 2000\r\n",  # past the limit
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
    assert scan(b"GET /" + b"a" * LIMIT, LIMIT).framing is Framing.UNBUFFERABLE
    endless_chunk_line = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * LIMIT
    assert scan(endless_chunk_line, LIMIT).framing is Framing.UNBUFFERABLE
    assert scan(b"GET / HTTP/1.1\n\n", LIMIT).framing is Framing.UNBUFFERABLE  # bare LF


def test_a_client_awaiting_100_continue_is_told_so_until_its_body_starts() -> None:
    head = HEAD + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    assert scan(head, LIMIT).expects_continue
    assert not scan(head + b"ab", LIMIT).expects_continue
    assert not scan(HEAD + b"Content-Length: 4\r\n\r\n", LIMIT).expects_continue
