"""Where webhooks may go, and one attempt at sending one: SSRF refusals, no redirects, one
deadline for the whole attempt, TLS checked against the URL's name.

Every request goes to a real receiver on 127.0.0.1 (`tests.support.webhook_receiver`); the
refusals are checked before any connection, so the URLs naming other addresses send nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.processes import free_port
from tests.support.webhook_receiver import PlannedAnswer, WebhookReceiver
from timo_hub.errors import InvalidError
from timo_hub.webhooks.destinations import (
    DestinationRefusedError,
    SendResult,
    check_url,
    post,
)

BODY = b'{"type":"webhook.test","data":{}}'
# A deadline test passes when the attempt ends within this much of its timeout (thread start-up
# and a loaded machine), and fails when it waits out the receiver's far longer misbehaviour.
SLACK = 0.75


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A plain-HTTP receiver on 127.0.0.1."""
    with WebhookReceiver() as started:
        yield started


@pytest.fixture
def tls_receiver() -> Iterator[WebhookReceiver]:
    """An HTTPS receiver whose certificate names `localhost` only, from a throwaway CA."""
    with WebhookReceiver(tls=True) as started:
        yield started


def send(url: str, **options: Any) -> SendResult:
    """`post` of BODY as development sends it (http and private addresses allowed)."""
    arguments: dict[str, Any] = {"require_https": False, "allow_private": True, **options}
    return post(url, BODY, arguments.pop("headers", {}), **arguments)


def refusal(url: str, *, require_https: bool = True) -> str:
    """Why `check_url` refuses `url` in production."""
    with pytest.raises(DestinationRefusedError) as refused:
        check_url(url, require_https=require_https, allow_private=False)
    return refused.value.detail


# check_url: at registration


def test_production_refuses_plain_http() -> None:
    """Guards against webhooks (signed, but readable and replayable) sent in clear text."""
    assert refusal("http://hooks.example.com/in") == "Webhook URLs must use https."
    assert check_url("http://8.8.8.8/in", require_https=False, allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:secret@hooks.example.com/", "may not carry a user name or password"),
        ("https://hooks.example.com@evil.example/", "may not carry a user name or password"),
        ("https://hooks.example.com/in#part", "may not have a fragment"),
        ("https://hooks.example.com:0/", "port must be a number from 1 to 65535"),
        ("https://hooks.example.com:70000/", "Not a valid URL"),
        ("https:///in", "need a host"),
        ("https://hooks.example.com/in?x=" + "a" * 2000, "at most 2,000 characters"),
        ("https://hooks.example.com/a b", "may not contain spaces or control characters"),
        ("https://hooks.example.com/a\nb", "may not contain spaces or control characters"),
        ("https://%31%32%37.0.0.1/", "is not a valid host name"),
    ],
)
def test_malformed_urls_are_refused(url: str, why: str) -> None:
    """Guards against URLs that leak credentials, read differently by us and by a resolver or
    a server, or that cannot be sent to."""
    assert why in refusal(url)


def test_only_http_and_https() -> None:
    """Guards against other schemes (file:, gopher:) reaching a client that would honour them."""
    assert refusal("ftp://hooks.example.com/", require_https=False) == (
        "Webhook URLs must use https or http."
    )


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.0.0.5", "10.0.0.5 is a private address"),
        ("172.16.3.4", "172.16.3.4 is a private address"),
        ("192.168.1.1", "192.168.1.1 is a private address"),
        ("169.254.10.1", "169.254.10.1 is a link-local address"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("[fd00:ec2::254]", "fd00:ec2::254 is a cloud metadata address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("[::]", ":: is an unspecified address"),
        ("[::1]", "::1 is a loopback address"),
        ("[fe80::1]", "fe80::1 is a link-local address"),
        ("[fc00::1]", "fc00::1 is a unique local address"),
        ("[fd12:3456::1]", "fd12:3456::1 is a unique local address"),
        ("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("198.18.0.1", "198.18.0.1 is a benchmarking address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("240.0.0.1", "240.0.0.1 is a reserved address"),
        ("192.0.2.1", "192.0.2.1 is a documentation address"),
        ("[::ffff:127.0.0.1]", "an IPv4-mapped address of 127.0.0.1, a loopback address"),
        ("[::ffff:169.254.169.254]", "of 169.254.169.254, a cloud metadata address"),
        ("[2002:7f00:1::]", "a 6to4 address of 127.0.0.1, a loopback address"),
        ("[2002:a00:5::]", "a 6to4 address of 10.0.0.5, a private address"),
        # Teredo hides the client's address inverted: 80ff:fffe is 127.0.0.1.
        ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "a Teredo address of 127.0.0.1"),
        ("[64:ff9b::a00:5]", "a NAT64 address of 10.0.0.5, a private address"),
        # The C library reads these as 127.0.0.1; so would a connection.
        ("2130706433", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("0x7f000001", "0x7f000001 resolves to 127.0.0.1, a loopback address"),
        ("0177.0.0.1", "0177.0.0.1 resolves to 127.0.0.1, a loopback address"),
        ("127.1", "127.1 resolves to 127.0.0.1, a loopback address"),
        ("localhost", "localhost resolves to 127.0.0.1, a loopback address"),
        ("LocalHost", "localhost resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_non_public_addresses_are_refused(host: str, why: str) -> None:
    """Guards against SSRF: a customer's webhook aimed at our own network, the machine itself
    or the cloud metadata service, directly or under an alias (integer and octal forms, IPv6
    wrappings of IPv4, names that resolve there)."""
    detail = refusal(f"https://{host}/in")
    assert why in detail
    assert detail.endswith("; webhooks go only to public addresses.")


def test_a_refusal_is_an_invalid_url() -> None:
    """Guards against a refusal surfacing as a server error instead of a 422 about `url`."""
    with pytest.raises(InvalidError) as refused:
        check_url("https://10.0.0.5/", require_https=True, allow_private=False)
    assert refused.value.details == {"field": "url"}
    assert refused.value.detail == (
        "10.0.0.5 is a private address; webhooks go only to public addresses."
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/in",
        "http://localhost:8080/in",
        "https://10.0.0.5/in",
        "https://[fd00:ec2::254]/in",
        "http://2130706433/in",
    ],
)
def test_development_allows_private_addresses(url: str) -> None:
    """Guards against `allow_private` (development, tests) not lifting the address rule."""
    assert check_url(url, require_https=False, allow_private=True) == url


def test_allow_private_lifts_only_the_address_rule() -> None:
    """Guards against `allow_private` also letting through credentials or other schemes."""
    for url in ("http://user:pw@127.0.0.1/", "ftp://127.0.0.1/", "http://127.0.0.1/#x"):
        with pytest.raises(DestinationRefusedError):
            check_url(url, require_https=False, allow_private=True)


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/in", "https://[2606:4700:4700::1111]/in", "https://1.1.1.1:8443/x"]
)
def test_public_addresses_are_accepted(url: str) -> None:
    """Guards against a refusal rule so broad that no real receiver could be registered."""
    assert check_url(url, require_https=True, allow_private=False) == url


def test_urls_are_normalised() -> None:
    """Guards against one endpoint stored under several spellings, or a URL that the sender
    would send differently from how it was checked."""

    def normalise(url: str) -> str:
        return check_url(url, require_https=True, allow_private=True)

    assert normalise("HTTPS://Hooks.Example.COM:443") == "https://hooks.example.com/"
    assert normalise("https://hooks.example.com:8443/a/b?c=d&e") == (
        "https://hooks.example.com:8443/a/b?c=d&e"
    )
    assert normalise("https://Bücher.example/ü?q=ü") == (
        "https://xn--bcher-kva.example/%C3%BC?q=%C3%BC"
    )
    assert normalise("https://[2606:4700::1111]:443/") == "https://[2606:4700::1111]/"


# post: one attempt


def test_post_reaches_a_loopback_receiver_when_private_addresses_are_allowed(
    receiver: WebhookReceiver,
) -> None:
    """Guards against a sender that changes what it was given: body, path, query, headers."""
    result = send(receiver.url_for("/in?account=7"), headers={"webhook-id": "msg_1"})
    assert result == SendResult(200, result.latency_ms, None, "")
    (request,) = receiver.wait_for(1)
    assert (request.method, request.path, request.body) == ("POST", "/in?account=7", BODY)
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Timo-Hub-Webhooks/1"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-length"] == str(len(BODY))


def test_given_headers_win_over_the_defaults_but_not_over_host(
    receiver: WebhookReceiver,
) -> None:
    """Guards against duplicated Content-Type headers, and against a Host header that names
    another site than the URL (a virtual-hosting confusion)."""
    headers = {"content-type": "application/cloudevents+json", "HOST": "internal.example"}
    send(receiver.url_for("/in"), headers=headers)
    (request,) = receiver.wait_for(1)
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"]
)
def test_post_refuses_loopback_without_sending(receiver: WebhookReceiver, host: str) -> None:
    """Guards against SSRF at send time: the address rule must hold at every attempt (DNS
    answers change after registration), whatever spelling of the address the URL uses."""
    result = send(f"http://{host}:{receiver.port}/in", allow_private=False)
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("refused: ")
    assert "127.0.0.1, a loopback address" in result.error or result.error == (
        "refused: 127.0.0.1 is a loopback address"
    )
    assert receiver.requests == []


def test_post_refuses_plain_http_in_production(receiver: WebhookReceiver) -> None:
    """Guards against a URL stored before https was required being sent in clear text."""
    result = send(receiver.url_for("/in"), require_https=True)
    assert (result.status, result.error) == (None, "refused: webhook URLs must use https")
    assert receiver.requests == []


def test_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    """Guards against a receiver bouncing our request, unchecked, to an address we would have
    refused (a 302 to http://169.254.169.254/ is the classic)."""
    elsewhere = receiver.url_for("/elsewhere")
    receiver.plan(PlannedAnswer(302, location=elsewhere))
    result = send(receiver.url_for("/in"))
    assert result.status == 302
    assert result.error == f"redirects are not followed (302 to {elsewhere})"
    assert [request.path for request in receiver.requests] == ["/in"]


def test_an_error_status_is_reported_with_its_body(receiver: WebhookReceiver) -> None:
    """Guards against losing what the receiver said, which the customer needs to debug it."""
    receiver.plan(PlannedAnswer(503, body=b"down for maintenance"))
    result = send(receiver.url_for("/in"))
    assert (result.status, result.error, result.response_excerpt) == (
        503,
        None,
        "down for maintenance",
    )


def test_the_excerpt_survives_bytes_that_are_not_utf8(receiver: WebhookReceiver) -> None:
    """Guards against a crash (and a lost attempt record) on a receiver answering in Latin-1."""
    receiver.plan(PlannedAnswer(body=b"caf\xe9 ok"))
    assert send(receiver.url_for("/in")).response_excerpt == "caf\ufffd ok"


def test_a_large_answer_is_read_only_up_to_64_kib(receiver: WebhookReceiver) -> None:
    """Guards against reading an endless or huge answer: the receiver announces 1 MiB, sends a
    little over 64 KiB and then nothing; a sender reading on would wait out its timeout."""
    receiver.plan(PlannedAnswer(body=b"y" * 1024 * 1024, hold_after=64 * 1024 + 100))
    started = time.monotonic()
    result = send(receiver.url_for("/in"), timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert (result.status, result.error) == (200, None)
    assert result.response_excerpt == "y" * 1000


def test_the_timeout_holds_against_a_receiver_that_answers_late(
    receiver: WebhookReceiver,
) -> None:
    """Guards against a slow receiver holding a worker past the attempt's timeout."""
    receiver.plan(PlannedAnswer(delay=10.0))
    started = time.monotonic()
    result = send(receiver.url_for("/in"), timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.0 + SLACK
    assert (result.status, result.error) == (None, "timed out after 1 s")
    assert 900 <= result.latency_ms < 1000 + SLACK * 1000


def test_the_timeout_holds_against_a_receiver_that_drips_its_headers(
    receiver: WebhookReceiver,
) -> None:
    """Guards against a slow-loris receiver: a byte every 0.1 s keeps each socket read short,
    so per-read timeouts alone would let it hold the worker for as long as it likes."""
    receiver.plan(PlannedAnswer(drip_interval=0.1))
    started = time.monotonic()
    result = send(receiver.url_for("/in"), timeout=1.0)
    assert time.monotonic() - started < 1.0 + SLACK
    assert (result.status, result.error) == (None, "timed out after 1 s")


def test_the_timeout_holds_against_a_receiver_that_drips_its_body(
    receiver: WebhookReceiver,
) -> None:
    """Guards against the same, after a prompt status line: the status is kept (the receiver
    did answer), the error says the rest did not come in time."""
    receiver.plan(PlannedAnswer(body=b"z" * 100, drip_interval=0.1, drip_head=False))
    started = time.monotonic()
    result = send(receiver.url_for("/in"), timeout=1.0)
    assert time.monotonic() - started < 1.0 + SLACK
    assert result.status == 200
    assert result.error == "timed out after 1 s reading the response"
    assert set(result.response_excerpt) <= {"z"}


def test_a_closed_port_is_a_refused_connection() -> None:
    """Guards against a network failure escaping as an exception instead of a result."""
    result = send(f"http://127.0.0.1:{free_port()}/in")
    assert (result.status, result.error) == (None, "connection refused")


def test_https_is_verified_against_the_urls_host_name(tls_receiver: WebhookReceiver) -> None:
    """Guards against the DNS-rebinding defence (dialling the checked address) breaking TLS:
    the certificate names only `localhost`, and we connect to 127.0.0.1."""
    result = send(tls_receiver.url_for("/in"), ca_certs=str(tls_receiver.ca_file))
    assert (result.status, result.error) == (200, None)
    (request,) = tls_receiver.wait_for(1)
    assert request.tls_server_name == "localhost"
    assert request.headers["host"] == f"localhost:{tls_receiver.port}"
    assert request.body == BODY


def test_https_refuses_a_certificate_from_an_untrusted_ca(
    tls_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Guards against certificate verification being off: anyone on the path could read and
    answer our webhooks."""
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    result = send(tls_receiver.url_for("/in"), ca_certs=str(other_ca))
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("TLS certificate not accepted: ")
    assert tls_receiver.requests == []
    # The receiver's thread records the failed handshake a moment after the client gave up.
    deadline = time.monotonic() + 5
    while tls_receiver.handshake_failures < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tls_receiver.handshake_failures == 1


def test_https_refuses_a_certificate_for_another_name(tls_receiver: WebhookReceiver) -> None:
    """Guards against checking the chain but not the name: a certificate for `localhost` must
    not pass for https://127.0.0.1/."""
    result = send(f"https://127.0.0.1:{tls_receiver.port}/in", ca_certs=str(tls_receiver.ca_file))
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("TLS certificate not accepted: ")
    assert "127.0.0.1" in result.error
    assert tls_receiver.requests == []


def test_https_to_a_plain_http_server_fails_cleanly(receiver: WebhookReceiver) -> None:
    """Guards against a TLS protocol error escaping as an exception instead of a result."""
    result = send(f"https://127.0.0.1:{receiver.port}/in")
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("TLS failed: ")
