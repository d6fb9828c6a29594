"""Parsing preview hosts: `<port>-<sandbox label>.<preview domain>` into a Route.

Owns only the shape of the name; it knows nothing of grants or sandboxes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = re.compile(r"^(?P<port>[0-9]{1,5})-(?P<label>[a-z][a-z0-9]*-[a-z0-9]+)$")


@dataclass(frozen=True)
class Route:
    port: int
    sandbox_id: str  # e.g. sb_ab12 (the label with its first hyphen turned back into `_`)
    host: str  # the Host header as received, port included


def scope_host(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1").strip().lower()
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host
    return host.rsplit(":", 1)[0] if ":" in host else host


def is_preview_scope(scope, preview_domain: str) -> bool:
    return _hostname(scope_host(scope)).endswith("." + preview_domain)


# Hosts seen recently -> their Route (or None): parsing is pure, and a busy preview
# sends the same Host on every request.
_routes: dict[tuple[str, str], Route | None] = {}
MAX_ROUTES = 10_000


def parse_route(host: str, preview_domain: str) -> Route | None:
    key = (host, preview_domain)
    try:
        return _routes[key]
    except KeyError:
        pass
    route = _parse(host, preview_domain)
    if len(_routes) >= MAX_ROUTES:
        _routes.clear()
    _routes[key] = route
    return route


def _parse(host: str, preview_domain: str) -> Route | None:
    name = _hostname(host.lower())
    suffix = "." + preview_domain
    if not name.endswith(suffix):
        return None
    match = _LABEL.match(name[: -len(suffix)])
    if match is None:
        return None
    port = int(match["port"])
    if not 1 <= port <= 65535:
        return None
    kind, _, rest = match["label"].partition("-")
    return Route(port=port, sandbox_id=f"{kind}_{rest}", host=host)


def sandbox_host(port: int, sandbox_id: str, preview_domain: str, port_suffix: str = "") -> str:
    return f"{port}-{sandbox_id.replace('_', '-')}.{preview_domain}{port_suffix}"
