"""Where a webhook may be sent, and sending one attempt there without being turned against us.

A webhook URL is chosen by a customer, and our workers then send requests to it from inside our
network: left unchecked, that is a server-side request forgery (SSRF) service aimed at our own
database, the cloud metadata endpoint or anything else only reachable from inside. So:

* `check_url` refuses, at registration, URLs that are malformed, carry credentials, use plain
  http in production, or whose host resolves to any address that is not public.
* `post` checks again at every attempt (DNS answers change), resolves the host exactly once and
  connects to the very address it checked, so a name that answers "public" to the check and
  "127.0.0.1" to the connect (DNS rebinding) gains nothing. TLS is still verified against the
  URL's host name. Redirects are never followed: a 3xx could point anywhere, unchecked. The whole
  attempt is bounded in time, so a receiver that answers a byte at a time cannot hold a worker.

`allow_private` (development and tests only) lifts the address rule, never the others.
Owns nothing in the database; knows nothing of endpoints, deliveries or signatures.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.ssl_match_hostname import CertificateError

from timo_hub.errors import InvalidError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2_000
USER_AGENT = "Timo-Hub-Webhooks/1"
# Read at most this much of an answer: receivers are asked for a status, not a document, and a
# hostile one must not be able to fill a worker's memory.
MAX_RESPONSE_BYTES = 64 * 1024
# What an attempt keeps of the answer, for the customer's delivery log.
EXCERPT_CHARS = 1_000
# How long registration waits for DNS: a web request must not hang on a slow resolver.
CHECK_RESOLVE_TIMEOUT = 5.0

# Cloud instance metadata services (AWS, GCP and Azure on 169.254.169.254, AWS over IPv6, AWS
# ECS task metadata, Alibaba Cloud): the classic SSRF prize, named so the refusal says so.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)

# Ranges checked before `ipaddress`'s broad flags, so a refusal names the range precisely (most
# are also `is_private` or not `is_global`; 100.64/10 is neither private nor global).
_NAMED_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), label)
    for network, label in (
        ("0.0.0.0/8", "a 'this network' address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("2001:2::/48", "a benchmarking address"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique local address"),
        ("fec0::/10", "a site-local address"),
    )
)

# The well-known NAT64 prefix: a gateway translates 64:ff9b::a.b.c.d to IPv4 a.b.c.d.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Host names as DNS carries them (after IDNA); anything else (percent signs, spaces) is refused
# rather than guessed at by a resolver.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Characters kept as they are in a path or query; the rest is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class DestinationRefusedError(InvalidError):
    """A webhook URL we will not send to; `detail` says why, for the customer."""

    def __init__(self, detail: str, **details: Any) -> None:
        details.setdefault("field", "url")
        super().__init__(detail, **details)


@dataclass(frozen=True)
class SendResult:
    """What one attempt came to.

    `status` is the HTTP status when a response arrived (a 3xx included), else None. `error` is
    None when the attempt went through normally, else a short text for the customer: no
    response (refused, unresolvable, connection failed, TLS failed, timed out), a 3xx (the
    redirect was not followed; `status` holds the 3xx), or a response whose body did not finish
    in time (`status` holds what the receiver answered). Whether the receiver accepted the
    webhook is decided by `status` alone: a 2xx is acceptance.
    """

    status: int | None
    latency_ms: int
    """From the start of the attempt (resolution included) to its end."""
    error: str | None
    response_excerpt: str
    """At most the first 1,000 characters of the response body (UTF-8, bad bytes replaced)."""


@dataclass(frozen=True)
class _Target:
    """A parsed, checked webhook URL."""

    scheme: str
    host: str
    """Lower case, IDNA-encoded, without IPv6 brackets."""
    port: int
    request_path: str
    """Path and query as they go on the request line."""

    @property
    def host_header(self) -> str:
        """`host[:port]` as the Host header and the URL carry it (the port only if not default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The normalised URL."""
        return f"{self.scheme}://{self.host_header}{self.request_path}"


class _AttemptFailed(Exception):
    """An attempt ended without a usable response; the message is `SendResult.error`."""


def check_url(url: str, *, require_https: bool, allow_private: bool) -> str:
    """Validate a webhook URL at registration and return it normalised.

    The URL must be at most 2,000 characters, https (or http too when not `require_https`),
    without user name, password or fragment, with a host and a port from 1 to 65535. Its host
    is resolved now, and refused if any of its addresses is not public; with `allow_private`
    (development, tests) nothing is resolved, since any address would do. Normalised: scheme and
    host in lower case, an international host name IDNA-encoded, the default port dropped, an
    empty path made `/`, other characters of the path and query percent-encoded.
    Raises DestinationRefusedError.
    """
    target = _parse(url, require_https=require_https)
    if not allow_private:
        try:
            addresses = _resolve(
                target.host, target.port, wait=CHECK_RESOLVE_TIMEOUT, timeout=CHECK_RESOLVE_TIMEOUT
            )
        except _AttemptFailed as failure:
            raise DestinationRefusedError(f"{_capitalised(str(failure))}.") from None
        refusal = _refusal(target.host, addresses)
        if refusal is not None:
            raise DestinationRefusedError(f"{refusal}; webhooks go only to public addresses.")
    return target.url


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    require_https: bool,
    allow_private: bool,
    timeout: float = 10.0,
    ca_certs: str | None = None,
) -> SendResult:
    """Make one POST attempt of `body` to `url`; never raises for what the network or the
    receiver does (refusals, DNS, connection, TLS, timeouts come back in `SendResult.error`).

    The host is resolved once; unless `allow_private`, every address it resolved to must be
    public. The connection goes to those checked addresses, in order, moving on only when one
    cannot be connected to, with TLS verified (SNI and certificate) against the URL's host name
    and `ca_certs` (default: the system's trusted CAs). Redirects are not followed. Everything,
    resolution to the last byte read, ends within `timeout` seconds. `Content-Type:
    application/json` and `User-Agent: Timo-Hub-Webhooks/1` are added unless `headers` has them;
    `Host` is always the URL's. Header values with line breaks are the caller's bug: ValueError.
    """
    started = time.monotonic()
    deadline = started + timeout
    status: int | None = None
    excerpt = ""
    try:
        try:
            target = _parse(url, require_https=require_https)
        except DestinationRefusedError as refused:
            raise _AttemptFailed(f"refused: {_uncapitalised(refused.detail.rstrip('.'))}") from None
        addresses = _resolve(
            target.host, target.port, wait=deadline - time.monotonic(), timeout=timeout
        )
        if not allow_private:
            refusal = _refusal(target.host, addresses)
            if refusal is not None:
                raise _AttemptFailed(f"refused: {refusal}")
        status, excerpt, error = _send(
            target, addresses, body, _request_headers(target, headers), deadline, timeout, ca_certs
        )
    except _AttemptFailed as failure:
        error = str(failure)
    latency_ms = round((time.monotonic() - started) * 1000)
    return SendResult(status, latency_ms, error, excerpt)


def _parse(url: str, *, require_https: bool) -> _Target:
    """Check everything about `url` that needs no network; raises DestinationRefusedError."""
    if len(url) > MAX_URL_LENGTH:
        raise DestinationRefusedError(
            f"Webhook URLs are at most {MAX_URL_LENGTH:,} characters.", limit=MAX_URL_LENGTH
        )
    # Checked before parsing: urlsplit silently drops tabs and newlines, and a resolver may
    # read a host with spaces differently from us.
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise DestinationRefusedError("Webhook URLs may not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DestinationRefusedError(
            "Not a valid URL (is the port a number from 1 to 65535, an IPv6 host in [ ]?)."
        ) from None
    scheme = parts.scheme.lower()
    if require_https and scheme != "https":
        raise DestinationRefusedError("Webhook URLs must use https.")
    if scheme not in ("http", "https"):
        raise DestinationRefusedError("Webhook URLs must use https or http.")
    # `@` anywhere in the authority: credentials would be sent to the receiver (and logged),
    # and `https://trusted@evil/` misleads whoever reads the URL.
    if "@" in parts.netloc:
        raise DestinationRefusedError("Webhook URLs may not carry a user name or password.")
    if "#" in url:
        raise DestinationRefusedError("Webhook URLs may not have a fragment (#…).")
    if port == 0:
        raise DestinationRefusedError("The port must be a number from 1 to 65535.")
    host = _host(parts.hostname or "")
    target = _Target(
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        request_path=quote(parts.path or "/", safe=_PATH_SAFE)
        + (f"?{quote(parts.query, safe=_PATH_SAFE + '?')}" if parts.query else ""),
    )
    # Again once normalised: percent-encoding and IDNA can make a URL several times longer, and
    # what is stored and sent is the normalised one.
    if len(target.url) > MAX_URL_LENGTH:
        raise DestinationRefusedError(
            f"Webhook URLs are at most {MAX_URL_LENGTH:,} characters (once percent-encoded).",
            limit=MAX_URL_LENGTH,
        )
    return target


def _host(hostname: str) -> str:
    """The host as we resolve and send it: an IP literal as is, a name IDNA-encoded."""
    if not hostname:
        raise DestinationRefusedError("Webhook URLs need a host.")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(hostname)
        return hostname
    try:
        ascii_host = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise DestinationRefusedError(f"{hostname!r} is not a valid host name.") from None
    if not _HOST_NAME.fullmatch(ascii_host):
        raise DestinationRefusedError(f"{hostname!r} is not a valid host name.")
    return ascii_host


def _resolve(host: str, port: int, *, wait: float, timeout: float) -> list[IPAddress]:
    """Every address `host` resolves to (in the resolver's order, once each), waiting at most
    `wait` seconds of the attempt's `timeout`; raises _AttemptFailed.

    An IP literal is its own answer. Integer forms such as `2130706433` or `0x7f.1` are left to
    the resolver, which reads them as C does: what we check is what a connection would use.
    """
    with contextlib.suppress(ValueError):
        return [ipaddress.ip_address(host)]
    answer: list[Any] = []
    failure: list[OSError] = []

    def lookup() -> None:
        try:
            answer.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as error:
            failure.append(error)

    # getaddrinfo takes no timeout; the lookup runs in a daemon thread we stop waiting for. Such
    # a thread ends on its own when the resolver gives up.
    lookup_thread = threading.Thread(target=lookup, name="webhook-dns", daemon=True)
    lookup_thread.start()
    lookup_thread.join(max(wait, 0.0))
    if lookup_thread.is_alive():
        raise _AttemptFailed(f"timed out after {_seconds(timeout)} resolving {host}")
    if failure or not answer:
        raise _AttemptFailed(f"could not resolve {host}")
    addresses: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canonname, sockaddr in answer:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return list(addresses)


def _refusal(host: str, addresses: list[IPAddress]) -> str | None:
    """Why `host` may not be sent to (the first address that is not public), or None."""
    for address in addresses:
        reason = _why_not_public(address)
        if reason is not None:
            if _is_ip(host):
                return f"{address} is {reason}"
            return f"{host} resolves to {address}, {reason}"
    return None


def _why_not_public(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address, which is where the packets end up: judge that.
        if address.ipv4_mapped is not None:
            inner = _why_not_public(address.ipv4_mapped)
            if inner is None:
                return None
            return f"an IPv4-mapped address of {address.ipv4_mapped}, {inner}"
        wrapped = [("6to4", address.sixtofour)]
        if address.teredo is not None:
            wrapped += [("Teredo", address.teredo[0]), ("Teredo", address.teredo[1])]
        if address in _NAT64:
            wrapped.append(("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
        for kind, ipv4 in wrapped:
            inner = None if ipv4 is None else _why_not_public(ipv4)
            if inner is not None:
                return f"a {kind} address of {ipv4}, {inner}"
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    for network, label in _NAMED_RANGES:
        if address.version == network.version and address in network:
            return label
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def _request_headers(target: _Target, given: Mapping[str, str]) -> dict[str, str]:
    """The headers sent: `given`, with defaults for what it lacks, and always our Host."""
    headers = {name: value for name, value in given.items() if name.lower() != "host"}
    present = {name.lower() for name in headers}
    if "content-type" not in present:
        headers["Content-Type"] = "application/json"
    if "user-agent" not in present:
        headers["User-Agent"] = USER_AGENT
    # We connect to an IP address, so the Host header (virtual hosting) comes from the URL.
    headers["Host"] = target.host_header
    return headers


def _send(
    target: _Target,
    addresses: list[IPAddress],
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    timeout: float,
    ca_certs: str | None,
) -> tuple[int | None, str, str | None]:
    """POST to the first of `addresses` that accepts a connection: (status, excerpt, error)."""
    watchdog = _Watchdog(deadline)
    try:
        for index, address in enumerate(addresses):
            try:
                return _send_to(
                    target, address, body, headers, deadline, timeout, watchdog, ca_certs
                )
            except NewConnectionError as error:
                # Nothing was sent to this address; try the next one the name gave, if any.
                if index == len(addresses) - 1 or watchdog.fired.is_set():
                    raise _AttemptFailed(_describe(error, watchdog, timeout)) from None
            except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as error:
                raise _AttemptFailed(_describe(error, watchdog, timeout)) from None
        raise _AttemptFailed("no address to connect to")  # resolution never answers empty
    finally:
        watchdog.close()


def _send_to(
    target: _Target,
    address: IPAddress,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    timeout: float,
    watchdog: _Watchdog,
    ca_certs: str | None,
) -> tuple[int | None, str, str | None]:
    """One POST to `address`; raises urllib3's and the socket's errors until a status arrives."""
    remaining = max(deadline - time.monotonic(), 0.001)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            host=str(address),
            port=target.port,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
            # SNI and the certificate check use the URL's name, not the address we dial.
            server_hostname=target.host,
            assert_hostname=target.host,
            watchdog=watchdog,
        )
        pool.ConnectionCls = _WatchedHTTPSConnection
    else:
        pool = urllib3.HTTPConnectionPool(
            host=str(address), port=target.port, maxsize=1, watchdog=watchdog
        )
        pool.ConnectionCls = _WatchedHTTPConnection
    with pool:
        response = pool.urlopen(
            "POST",
            target.request_path,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            # Each phase is bounded here too; the watchdog bounds their sum.
            timeout=urllib3.Timeout(connect=remaining, read=remaining),
            preload_content=False,
            decode_content=False,
            release_conn=False,
        )
        status = response.status
        location = response.headers.get("Location")
        error: str | None = None
        content = b""
        try:
            # Not decompressed: we asked for no encoding, and a small gzip can unpack to gigabytes.
            content = response.read(MAX_RESPONSE_BYTES, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as failure:
            error = f"{_describe(failure, watchdog, timeout)} reading the response"
        finally:
            response.close()
        if error is None and watchdog.fired.is_set():
            # Cut by the watchdog, a body without a length ends as if it were complete.
            error = f"timed out after {_seconds(timeout)} reading the response"
        if error is None and 300 <= status < 400:
            where = f"to {location[:200]}" if location else "without a Location"
            error = f"redirects are not followed ({status} {where})"
        excerpt = content.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
        return status, excerpt, error


class _Watchdog:
    """Cuts the connections of one attempt when its time is up.

    Socket timeouts bound each wait for data, not their sum: a receiver sending one byte a
    second keeps every wait short and the attempt alive for ever. At the deadline this shuts
    the sockets down, which ends whatever read, TLS handshake or write is blocked on them.
    """

    def __init__(self, deadline: float) -> None:
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        """Cut `sock` at the deadline (at once if it has passed)."""
        # A duplicate descriptor: wrapping in TLS detaches the original socket object, and a
        # shutdown through the duplicate acts on the same connection.
        duplicate = sock.dup()
        with self._lock:
            self._sockets.append(duplicate)
            if self.fired.is_set():
                _shut(duplicate)

    def close(self) -> None:
        """Stop the timer and let go of the sockets."""
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def _fire(self) -> None:
        with self._lock:
            self.fired.set()
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, with its socket handed to the attempt's watchdog as it is made
    (TLS included: `HTTPSConnection` makes its socket here too)."""

    def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog

    # `_new_conn` is where urllib3 creates the socket, before any TLS; overriding it is the way
    # to reach that socket without re-implementing the connection.
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._watchdog.watch(sock)
        return sock


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """urllib3's TLS connection, watched the same way."""


def _describe(error: BaseException, watchdog: _Watchdog, timeout: float) -> str:
    """A short text for the customer about why an attempt failed."""
    if watchdog.fired.is_set() or isinstance(error, (ReadTimeoutError, TimeoutError)):
        return f"timed out after {_seconds(timeout)}"
    causes = _chain(error)
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {cause.verify_message}"
        if isinstance(cause, CertificateError):
            return f"TLS certificate not accepted: {cause}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        if isinstance(cause, Urllib3SSLError):
            continue
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the receiver"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "connection closed without a response"
        if isinstance(cause, (TimeoutError, ConnectTimeoutError)) and not isinstance(
            cause, NewConnectionError
        ):
            return f"timed out after {_seconds(timeout)}"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return f"network error: {cause.strerror.lower()}"
    if isinstance(error, Urllib3SSLError):
        return f"TLS failed: {error}"[:300]
    if isinstance(error, ProtocolError):
        return f"broken response: {causes[-1]}"[:300]
    return f"{type(error).__name__}: {error}"[:300]


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps (urllib3 wraps socket and TLS errors, sometimes twice)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        wrapped = [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        current = current.__cause__ or (wrapped[0] if wrapped else current.__context__)
    return chain


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _uncapitalised(text: str) -> str:
    # "Webhook URLs must use https." reads "refused: webhook URLs must use https"; a host name
    # or address at the start stays as it is (they are lower case already).
    return text[:1].lower() + text[1:]
