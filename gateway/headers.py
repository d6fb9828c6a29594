"""Header and query rules for both legs: what the upstream may see and what comes back.

The upstream never sees our cookie, our token headers or `edge_token`; it gets
X-Forwarded-For/-Proto/-Host. Hop-by-hop headers are dropped in both directions.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from gateway.types import Headers, Scope

COOKIE_NAME = "__ns_preview"
HOST_COOKIE_NAME = "__Host-ns_preview"  # on HTTPS: no other host can set it (docs/previews.md)
_OUR_COOKIES = (COOKIE_NAME.encode(), HOST_COOKIE_NAME.encode())
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
_OUR_HEADER_PREFIX = b"x-nullspace-"
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def query_params(scope: Scope) -> dict[bytes, bytes]:
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


def _is_ours(name: bytes) -> bool:
    return name.strip().lower() in _OUR_LOWER


_OUR_LOWER = frozenset(name.lower() for name in _OUR_COOKIES)


def cookie_values(cookie: bytes, *, secure_only: bool = False) -> list[str]:
    """Every value of our cookie in a Cookie header (a browser may send several).

    secure_only: only the `__Host-` one counts (on HTTPS, anything else may be planted).
    """
    if b"ns_preview" not in cookie:
        return []
    wanted = (HOST_COOKIE_NAME,) if secure_only else (COOKIE_NAME, HOST_COOKIE_NAME)
    found = []
    for part in cookie.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name in wanted and value:
            found.append(value)
    return found


def _without_our_cookie(value: bytes) -> bytes:
    if b"ns_preview" not in value:
        return value
    parts = [p for p in value.split(b";") if not _is_ours(p.partition(b"=")[0])]
    return b";".join(parts).strip()


def _without_edge_token(referer: bytes) -> bytes:
    path, sep, query = referer.partition(b"?")
    if not sep:
        return referer
    query, hashmark, fragment = query.partition(b"#")
    query = strip_query(query)
    return path + (b"?" + query if query else b"") + hashmark + fragment


# Framing is the client's business with us; the upstream leg frames the body itself. Expect
# is answered by our server (as nginx does), not passed on.
FRAMING = frozenset({b"content-length", b"expect"})
_DROP = HOP_BY_HOP | OURS | FRAMING
_DROP_WEBSOCKET = _DROP | WEBSOCKET_HANDSHAKE
_CONNECTION_PLAIN = frozenset({b"keep-alive", b"close", b"upgrade", b""})


def upstream_request_headers(
    scope: Scope, *, proxied_by_customer: bool, websocket: bool = False
) -> list[tuple[bytes, bytes]]:
    """The client's headers as the upstream should get them (Host is set by the caller)."""
    drop = _DROP_WEBSOCKET if websocket else _DROP
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    host = b""
    connection = b""
    customer_proto = customer_host = False
    for key, value in scope["headers"]:
        if key in drop:
            if key == b"host":
                host = value
            elif key == b"connection":
                connection += b"," + value
            continue
        if key in FORWARDED:
            # Only a customer's proxy (it authenticated with its token) may tell us these.
            if proxied_by_customer:
                if key == b"x-forwarded-for":
                    forwarded_for = value
                    continue
                if key == b"x-forwarded-proto":
                    customer_proto = True
                else:
                    customer_host = True
                out.append((key, value))
            continue
        if key == b"cookie":
            value = _without_our_cookie(value)
            if not value:
                continue
        elif key == b"referer" and EDGE_TOKEN_PARAM in value:
            value = _without_edge_token(value)
        out.append((key, value))
    if connection:
        # Headers the client named in Connection are hop-by-hop too.
        named = {token.strip().lower() for token in connection.split(b",")} - _CONNECTION_PLAIN
        if named:
            out = [(key, value) for key, value in out if key not in named]
            customer_proto = customer_proto and b"x-forwarded-proto" not in named
            customer_host = customer_host and b"x-forwarded-host" not in named
            if b"x-forwarded-for" in named:
                forwarded_for = b""
    client = (scope.get("client") or ("", 0))[0].encode()
    chain = b", ".join(part for part in (forwarded_for, client) if part)
    if chain:
        out.append((b"x-forwarded-for", chain))
    if not customer_proto:
        secure = scope.get("scheme") in ("https", "wss")
        out.append((b"x-forwarded-proto", b"https" if secure else b"http"))
    if not customer_host:
        out.append((b"x-forwarded-host", host))
    return out


def upstream_host(scope: Scope, mask_request_host: str, port: int) -> str:
    """The Host the upstream sees: the client's, or the sandbox's mask (`${PORT}` filled in)."""
    if mask_request_host:
        # The owner's setting goes into the request head as is: no line breaks in it.
        masked = mask_request_host.replace("${PORT}", str(port))
        return "".join(c for c in masked if c >= " " and c != "\x7f")
    return (header(scope, b"host") or b"").decode("latin-1")


def response_headers(raw: Headers) -> Headers:
    """The upstream's headers for the client: no hop-by-hop, none of ours (x-nullspace-*),
    and cookies kept host-only (see set_cookie)."""
    out = []
    connection = b""
    for key, value in raw:
        key = key.lower()
        if key in HOP_BY_HOP:
            if key == b"connection":
                connection += b"," + value
            continue
        if key.startswith(_OUR_HEADER_PREFIX):
            continue
        if key == b"set-cookie":
            kept = set_cookie(value)
            if kept is None:
                continue
            value = kept
        out.append((key, value))
    if connection:
        named = {token.strip().lower() for token in connection.split(b",")} - _CONNECTION_PLAIN
        if named:
            out = [(key, value) for key, value in out if key not in named]
    return out


def set_cookie(value: bytes) -> bytes | None:
    """An upstream's Set-Cookie as the client may get it: None for a cookie named like ours,
    else without its Domain attribute, so it stays on this preview host and can never
    reach another sandbox's host under the same preview domain."""
    name, _, rest = value.partition(b"=")
    if _is_ours(name):
        return None
    if b"domain" not in value.lower():
        return value
    attributes = rest.split(b";")
    kept = [attributes[0]] + [
        a for a in attributes[1:] if a.partition(b"=")[0].strip().lower() != b"domain"
    ]
    return name + b"=" + b";".join(kept)
