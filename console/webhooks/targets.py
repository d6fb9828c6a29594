"""Where a webhook may deliver: an http(s) URL whose host resolves only to public
addresses. Loopback, private, link-local, shared (CGNAT), multicast and reserved
addresses are refused unless WEBHOOK_ALLOW_PRIVATE_TARGETS is on (tests, or a
deployment whose receivers live on its own network). Checked at create/update and
again at every delivery, on the addresses the delivery then connects to, so a DNS
answer that changes in between (rebinding) cannot reach an internal service.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from console.errors import DomainError

MAX_URL_LENGTH = 2048
MAX_ADDRESSES = 8

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(DomainError):
    """A webhook URL we will not deliver to: refused when a webhook is saved (the `url`
    field), a failed attempt when an address changed since (console/webhooks/delivery.py)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, details={"field": "url"})


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line
    addresses: tuple[str, ...]


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL; TargetRefused otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("invalid_request", "url is required")
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused("invalid_request", f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise TargetRefused("invalid_request", "url must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("invalid_request", "url must start with https:// or http://")
    if parts.username or parts.password:
        raise TargetRefused("invalid_request", "url must not carry credentials")
    if parts.fragment:
        raise TargetRefused("invalid_request", "url must not have a #fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("invalid_request", "url has an invalid port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("invalid_request", "url must name a host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, host, port, path


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(url: str) -> Target:
    """Parse and resolve; every address must be allowed (one internal answer refuses all)."""
    scheme, host, port, path = parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused("invalid_request", f"url host {host!r} does not resolve") from None
    addresses: list[str] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]
        if raw not in addresses:
            addresses.append(raw)
    if not addresses:
        raise TargetRefused("invalid_request", f"url host {host!r} does not resolve")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        for raw in addresses:
            if not _public(ipaddress.ip_address(raw)):
                raise TargetRefused(
                    "invalid_request",
                    f"url host {host!r} resolves to {raw}, a loopback, private or link-local "
                    "address; webhooks deliver to public addresses only",
                )
    return Target(scheme, host, port, path, tuple(addresses[:MAX_ADDRESSES]))
