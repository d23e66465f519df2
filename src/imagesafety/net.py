"""The one guarded way to fetch an image URL, for the moderation service and for dataset rows alike.

The host is resolved once, every resolved address must be public (no private, loopback, link-local,
shared 100.64/10 or other special-purpose ranges, IPv4-mapped IPv6 included) unless the caller allows the
host, and the connection goes to the address that was checked (the Host header and TLS name stay the
host's), so a DNS answer that changes between the check and the connection cannot reach an inside address.
Redirects are not followed and the body is read up to a size limit.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

MAX_URL_BYTES = 50 * 1024 * 1024
Resolver = Callable[[str, int], list[str]]


class FetchError(ValueError):
    """A URL that may not or could not be fetched; `reason` is invalid_url, not_allowed, too_large or failed."""

    def __init__(self, message: str, reason: str = "failed"):
        super().__init__(message)
        self.reason = reason


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable (IANA's special-purpose ranges, 100.64/10 included, are not)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def system_resolver(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})


def host_matches(host: str, patterns: list[str]) -> bool:
    """`example.com` matches itself; `.example.com` matches its subdomains."""
    return any(host == p or (p.startswith(".") and host.endswith(p)) for p in patterns)


def check_url(
    url: str,
    allow_hosts: list[str] | None = None,
    require_allowed: bool = False,
    allow_private: bool = False,
    resolver: Resolver = system_resolver,
) -> tuple[str, int, str, list[str]]:
    """(host, port, scheme, checked addresses) of an http(s) URL, or a FetchError saying why not.

    `require_allowed`: only hosts in `allow_hosts` (the service). `allow_private`: hosts in `allow_hosts` may
    resolve to private addresses (datasets on an intranet the user named)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("only http(s) URLs can be fetched", "invalid_url")
    host = parts.hostname.lower()
    allowed = host_matches(host, [h.lower() for h in allow_hosts or []])
    if require_allowed and not allowed:
        raise FetchError(f"host {host!r} is not on the allow-list", "not_allowed")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        raise FetchError(f"cannot resolve host {host!r}", "invalid_url") from None
    if not addresses:
        raise FetchError(f"cannot resolve host {host!r}", "invalid_url")
    if not (allow_private and allowed) and not all(is_public_address(a) for a in addresses):
        raise FetchError(
            f"host {host!r} resolves to a private, loopback or otherwise non-public address; refused", "not_allowed"
        )
    return host, port, parts.scheme, addresses


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_url(
    url: str,
    *,
    allow_hosts: list[str] | None = None,
    require_allowed: bool = False,
    allow_private: bool = False,
    max_bytes: int = MAX_URL_BYTES,
    timeout_s: float = 30.0,
    resolver: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """The body of a 200 response, after the checks above; redirects and oversized bodies are refused."""
    host, port, scheme, addresses = check_url(url, allow_hosts, require_allowed, allow_private, resolver)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout_s
    if scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPS(
            host, addresses[0], port, timeout_s, ssl_context or ssl.create_default_context()
        )
    else:
        conn = _PinnedHTTP(host, addresses[0], port, timeout_s)
    try:
        conn.request("GET", target, headers={"User-Agent": "imagesafety", "Accept": "image/*"})
        response = conn.getresponse()
        if response.status != 200:
            raise FetchError(f"fetching {url} gave HTTP {response.status} (redirects are not followed)", "failed")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"{url}: {int(length)} bytes exceeds the limit of {max_bytes}", "too_large")
        data = bytearray()
        while chunk := response.read(65536):
            data += chunk
            if len(data) > max_bytes:
                raise FetchError(f"{url}: body exceeds the limit of {max_bytes} bytes", "too_large")
            if time.monotonic() > deadline:
                raise FetchError(f"{url}: took longer than {timeout_s}s", "failed")
        return bytes(data)
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"fetching {url} failed: {type(exc).__name__}: {exc}", "failed") from None
    finally:
        conn.close()
