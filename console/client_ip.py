"""The client's IP address: REMOTE_ADDR, or a trusted proxy's header when configured.

Behind a reverse proxy every request comes from the proxy's address, so sign-in
lockout and audit rows would lump all users together. When TRUSTED_PROXY_HEADER is
set (e.g. X-Forwarded-For), the address is read from it: the TRUSTED_PROXY_COUNT-th
entry from the right, as each trusted proxy appends the address it saw and anything
further left was written by the client and may be forged. Without the setting the
header is ignored, whatever it says.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    header = settings.TRUSTED_PROXY_HEADER
    if not header:
        return remote
    raw = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
    hops = [hop.strip() for hop in raw.split(",") if hop.strip()]
    if len(hops) < settings.TRUSTED_PROXY_COUNT:
        return remote  # not through the expected proxies: only the peer is known
    candidate = hops[-settings.TRUSTED_PROXY_COUNT]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
