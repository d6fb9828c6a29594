"""Console WebSockets open only from the console's own origin.

A console socket is authenticated by the session cookie, which a browser sends from
any page, including one a sandbox serves under the preview domain (the two may share
a parent domain, so a host-based check is not enough). The Origin must therefore be
exactly SITE_URL's or one of CSRF_TRUSTED_ORIGINS (wildcard entries do not count
here); anything else, or no Origin at all, is refused before the consumer runs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalized_origin(value: str) -> str | None:
    """scheme://host[:port] in lower case with the default port left out; None if malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.path not in ("", "/"):
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def console_origins() -> set[str]:
    candidates = [settings.SITE_URL, *settings.CSRF_TRUSTED_ORIGINS]
    found = {normalized_origin(value) for value in candidates if "*" not in value}
    return {origin for origin in found if origin}


def origin_of(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"origin":
            return normalized_origin(value.decode("latin-1"))
    return None


class ConsoleOriginValidator:
    """ASGI middleware: refuse the handshake unless the Origin is the console's."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and origin_of(scope) not in console_origins():
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
