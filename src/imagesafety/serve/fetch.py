"""Turning an `image_url` into bytes: data URLs always; http(s) only to allow-listed public hosts (no SSRF)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from urllib.parse import urlparse

from imagesafety.serve.errors import APIError


def decode_data_url(url: str, max_bytes: int) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise APIError(400, "data URLs must be base64 encoded: data:image/...;base64,...", code="invalid_image_url")
    if len(payload) * 3 // 4 > max_bytes:
        raise APIError(413, f"image exceeds {max_bytes} bytes", code="image_too_large")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "data URL payload is not valid base64", code="invalid_image_url") from None


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_url_allowed(url: str, allowed_hosts: list[str]) -> tuple[str, list[str]]:
    """(host, resolved public addresses) or an APIError: scheme, allow-list, and every address must be public."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise APIError(400, "image_url must be a data URL or an http(s) URL", code="invalid_image_url")
    if not allowed_hosts:
        raise APIError(400, "this server accepts only data URLs (the operator has not enabled remote URLs)", code="url_not_allowed")
    host = parsed.hostname.lower()
    if not any(host == h or (h.startswith(".") and host.endswith(h)) for h in allowed_hosts):
        raise APIError(400, f"host {host!r} is not on this server's allow-list", code="url_not_allowed")
    try:
        infos = socket.getaddrinfo(host, parsed.port or (443 if parsed.scheme == "https" else 80), proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise APIError(400, f"cannot resolve host {host!r}", code="invalid_image_url") from None
    addresses = sorted({info[4][0] for info in infos})
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise APIError(400, f"host {host!r} resolves to a private or loopback address; refused", code="url_not_allowed")
    return host, addresses


async def fetch_image_url(url: str, allowed_hosts: list[str], max_bytes: int, timeout_s: float) -> bytes:
    """Bytes of an http(s) image after the SSRF checks; redirects are not followed."""
    import httpx

    check_url_allowed(url, allowed_hosts)
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        try:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise APIError(400, f"fetching image_url gave HTTP {response.status_code}", code="image_fetch_failed")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        raise APIError(413, f"image exceeds {max_bytes} bytes", code="image_too_large")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise APIError(400, f"fetching image_url failed: {type(exc).__name__}", code="image_fetch_failed") from None
