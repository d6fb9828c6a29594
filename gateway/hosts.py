"""The one host parser: what name a request is for, the same on every server.

Every server and both entries (console/asgi.py, gateway/asgi.py) decide "preview or
console" here, and the gateway's routes read the label from here, so a trailing dot,
upper case or a port suffix can never send a name one way in one place and another
way elsewhere. Owns only the shape of names; it knows nothing of grants or sandboxes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.types import Scope


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # lower case, without a trailing dot or a port
    valid: bool  # False: an empty name, a port that is not a number, bad characters


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def canonical(raw: str) -> Host:
    """`Example.COM.:8000` -> Host("example.com", valid=True)."""
    raw = raw.strip().lower()
    if raw.startswith("["):  # an IPv6 literal: never a preview name
        end = raw.find("]")
        port = raw[end + 1 :] if end > 0 else ""
        ok = end > 0 and (not port or (port[0] == ":" and _is_port(port[1:])))
        return Host(raw[: end + 1] if end > 0 else raw, ok)
    name, sep, port = raw.partition(":")
    valid = not sep or _is_port(port)
    if name.endswith("."):
        name = name[:-1]
    valid = valid and bool(name) and not name.startswith(".") and set(name) <= _NAME_CHARS
    return Host(name, valid and ".." not in name)


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def scope_host(scope: Scope) -> str:
    """The Host header as received (the first one; our HTTP server refuses two)."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return str(value.decode("latin-1"))
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def preview_label(host: Host, preview_domain: str) -> str | None:
    """What precedes `.<preview domain>` ("" for the bare domain), or None: not a preview name."""
    name = host.name
    if name == preview_domain:
        return ""
    if name.endswith(preview_domain) and name[-len(preview_domain) - 1] == ".":
        return name[: -len(preview_domain) - 1]
    return None


def is_preview_scope(scope: Scope, preview_domain: str) -> bool:
    """The request is for the preview domain or a name under it (valid or not: the gateway
    answers a malformed one with its typed 404, never the console)."""
    return preview_label(canonical(scope_host(scope)), preview_domain) is not None


def sandbox_host(port: int, sandbox_id: str, preview_domain: str, port_suffix: str = "") -> str:
    return f"{port}-{sandbox_id.replace('_', '-')}.{preview_domain}{port_suffix}"


def request_target(scope: Scope) -> bytes | None:
    """The origin-form path to send upstream and to redirect to, or None when the request
    line was absolute-form for another host than the Host header names.

    A path that starts with `//` is collapsed to one slash: relayed as is, or put in a
    Location, it would read as a network-path reference to another host.
    """
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    if not raw.startswith(b"/"):
        # Absolute-form (`GET http://name/path`): some servers pass it through as the path.
        scheme, sep, rest = raw.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https", b"ws", b"wss"):
            return None
        authority, slash, path = rest.partition(b"/")
        if canonical(authority.decode("latin-1")) != canonical(scope_host(scope)):
            return None
        raw = slash + path or b"/"
    # Browsers read `/\` in a Location like `//`.
    while len(raw) > 1 and raw[1:2] in (b"/", b"\\"):
        raw = b"/" + raw[2:]
    return raw
