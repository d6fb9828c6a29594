"""Header and query rules for both legs: what the upstream may see and what comes back.

The upstream never sees our cookie, our token headers or `edge_token`; it gets
X-Forwarded-For/-Proto/-Host. Hop-by-hop headers are dropped in both directions.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

COOKIE_NAME = "__ns_preview"
PROXY_TOKEN_HEADER = b"x-nullspace-preview-proxy-token"
TRAFFIC_TOKEN_HEADER = b"x-nullspace-traffic-access-token"
EDGE_TOKEN_PARAM = b"edge_token"
TRANSPORT_PARAM = b"__ns_preview_transport"

# jupyter-server-proxy's list plus Host (set per leg) and the WebSocket handshake headers
# the upstream client makes for itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
WEBSOCKET_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
OURS = frozenset({PROXY_TOKEN_HEADER, TRAFFIC_TOKEN_HEADER})
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


def header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def query_params(scope) -> dict[bytes, bytes]:
    params: dict[bytes, bytes] = {}
    for part in scope.get("query_string", b"").split(b"&"):
        key, _, value = part.partition(b"=")
        if key and key not in params:
            params[key] = unquote_to_bytes(value.replace(b"+", b" "))
    return params


def strip_query(query: bytes) -> bytes:
    """The query string without our parameters, other parameters untouched (encoding kept)."""
    if EDGE_TOKEN_PARAM not in query and TRANSPORT_PARAM not in query:
        return query
    kept = [
        p
        for p in query.split(b"&")
        if p and p.partition(b"=")[0] not in (EDGE_TOKEN_PARAM, TRANSPORT_PARAM)
    ]
    return b"&".join(kept)


def cookie_value(scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                if name == COOKIE_NAME:
                    return val
    return None


def _without_our_cookie(value: bytes) -> bytes:
    parts = [p for p in value.split(b";") if p.strip().partition(b"=")[0] != COOKIE_NAME.encode()]
    return b";".join(parts).strip()


def _without_edge_token(referer: bytes) -> bytes:
    path, sep, query = referer.partition(b"?")
    if not sep:
        return referer
    query, hashmark, fragment = query.partition(b"#")
    query = strip_query(query)
    return path + (b"?" + query if query else b"") + hashmark + fragment


def upstream_request_headers(
    scope, *, proxied_by_customer: bool, websocket: bool = False
) -> list[tuple[bytes, bytes]]:
    """The client's headers as the upstream should get them (Host is set by the caller)."""
    connection_named = {
        token.strip().lower() for value in _all(scope, b"connection") for token in value.split(b",")
    }
    drop = (
        HOP_BY_HOP | OURS | connection_named | (WEBSOCKET_HANDSHAKE if websocket else frozenset())
    )
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    for key, value in scope["headers"]:
        if key in drop:
            continue
        if key in FORWARDED:
            # Only a customer's proxy (it authenticated with its token) may tell us these.
            if proxied_by_customer:
                if key == b"x-forwarded-for":
                    forwarded_for = value
                else:
                    out.append((key, value))
            continue
        if key == b"cookie":
            value = _without_our_cookie(value)
            if not value:
                continue
        elif key == b"referer" and EDGE_TOKEN_PARAM in value:
            value = _without_edge_token(value)
        out.append((key, value))
    client = (scope.get("client") or ("", 0))[0].encode()
    chain = b", ".join(part for part in (forwarded_for, client) if part)
    if chain:
        out.append((b"x-forwarded-for", chain))
    present = {key for key, _ in out}
    if b"x-forwarded-proto" not in present:
        secure = scope.get("scheme") in ("https", "wss")
        out.append((b"x-forwarded-proto", b"https" if secure else b"http"))
    if b"x-forwarded-host" not in present:
        out.append((b"x-forwarded-host", header(scope, b"host") or b""))
    return out


def upstream_host(scope, mask_request_host: str, port: int) -> str:
    """The Host the upstream sees: the client's, or the sandbox's mask (`${PORT}` filled in)."""
    if mask_request_host:
        return mask_request_host.replace("${PORT}", str(port))
    return (header(scope, b"host") or b"").decode("latin-1")


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    connection_named = {
        t.strip().lower() for k, v in raw if k.lower() == b"connection" for t in v.split(b",")
    }
    drop = HOP_BY_HOP | connection_named
    return [(k.lower(), v) for k, v in raw if k.lower() not in drop]


def _all(scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key == name]
