"""Who may pass: decided per request and per transport ("http" or "websocket").

Order: the proxy-token header (customer proxies; `__ns_preview_transport=header`
without it is a missing token), then `edge_token` in the query (an HTTP request is
answered with a 303 that trades it for our cookie), then our cookie. Every path
re-checks the grant's revocation and expiry. A private sandbox also needs the
owner's traffic token.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from console import tokens
from console.previews import DISABLED, EXPIRED, REVOKED, SCOPE, GrantState
from gateway import accounting, grants
from gateway.errors import GatewayError, request_id
from gateway.headers import (
    COOKIE_NAME,
    EDGE_TOKEN_PARAM,
    PROXY_TOKEN_HEADER,
    TRAFFIC_TOKEN_HEADER,
    TRANSPORT_PARAM,
    cookie_value,
    header,
    query_params,
    strip_query,
)
from gateway.hosts import Route
from gateway.upstream import SandboxInfo


@dataclass(frozen=True)
class _Credential:
    kind: str  # the signing kind this transport needs
    sibling: str  # same family, other transport: a token of that kind is a scope mismatch
    codes: dict[str, str]


_EDGE = {
    "missing": "edge_token_missing",
    "invalid": "edge_token_invalid",
    EXPIRED: "edge_token_expired",
    SCOPE: "edge_token_scope_mismatch",
    REVOKED: "preview_grant_revoked",
    DISABLED: "preview_grant_invalid",
}
_PROXY = {
    "missing": "preview_proxy_token_missing",
    "invalid": "preview_proxy_token_invalid",
    EXPIRED: "preview_proxy_token_expired",
    SCOPE: "preview_proxy_token_scope_mismatch",
    REVOKED: "preview_proxy_token_revoked",
    DISABLED: "preview_proxy_token_revoked",
}
_CREDENTIALS = {
    ("edge", "http"): _Credential(tokens.DIRECT_HTTP, tokens.DIRECT_WS, _EDGE),
    ("edge", "websocket"): _Credential(tokens.DIRECT_WS, tokens.DIRECT_HTTP, _EDGE),
    ("proxy", "http"): _Credential(tokens.PROXY_HTTP, tokens.PROXY_WS, _PROXY),
    ("proxy", "websocket"): _Credential(tokens.PROXY_WS, tokens.PROXY_HTTP, _PROXY),
    ("cookie", "http"): _Credential(tokens.COOKIE, "", _EDGE),
    ("cookie", "websocket"): _Credential(tokens.COOKIE, "", _EDGE),
}


# The fast path for a credential seen before: (raw token, kind) -> grant id. A signature
# is a pure function of the token, so it is verified once; what can change (revocation,
# expiry, disabling) is still checked on every request below, from grants' cache, which
# the revocation fan-out updates at once.
_verified: dict[tuple[str, str], str] = {}
MAX_VERIFIED = 50_000


def _read_token(raw: str, kind: str) -> str | None:
    grant_id = _verified.get((raw, kind))
    if grant_id is None:
        grant_id = tokens.read_preview_token(raw, kind)
        if grant_id is not None:
            if len(_verified) >= MAX_VERIFIED:
                _verified.clear()
            _verified[(raw, kind)] = grant_id
    return grant_id


@dataclass(slots=True)
class Admission:
    grant: GrantState
    via: str  # edge | proxy | cookie
    bootstrap: bool  # answer with the 303 + cookie instead of proxying


def _credential(scope) -> tuple[str, str]:
    """(via, raw token) from one pass over the headers, then the query only if it names ours."""
    proxy_token = cookie = None
    for key, value in scope["headers"]:
        if key == PROXY_TOKEN_HEADER:
            proxy_token = value
            break
        if key == b"cookie" and cookie is None:
            cookie = value
    if proxy_token is not None:
        return "proxy", proxy_token.decode("latin-1").strip()
    query = scope.get("query_string", b"")
    if query and (TRANSPORT_PARAM in query or EDGE_TOKEN_PARAM in query):
        params = query_params(scope)
        if params.get(TRANSPORT_PARAM) == b"header":
            raise GatewayError("preview_proxy_token_missing")
        if EDGE_TOKEN_PARAM in params:
            return "edge", params[EDGE_TOKEN_PARAM].decode("latin-1")
    if cookie is not None and (raw := cookie_value(cookie)) is not None:
        return "cookie", raw
    raise GatewayError("edge_token_missing")


async def admit(scope, route: Route, transport: str) -> Admission:
    via, raw = _credential(scope)
    credential = _CREDENTIALS[(via, transport)]
    grant_id = _read_token(raw, credential.kind)
    if grant_id is None:
        sibling = credential.sibling and tokens.read_preview_token(raw, credential.sibling)
        raise GatewayError(credential.codes[SCOPE if sibling else "invalid"])
    state = await grants.grant_state(grant_id)
    if state is None:
        raise GatewayError(credential.codes["invalid"])
    refusal = state.refusal(sandbox_id=route.sandbox_id, port=route.port, transport=transport)
    if refusal is not None:
        code = credential.codes[refusal]
        accounting.count_error(grant_id, code)
        raise GatewayError(code)
    return Admission(state, via, via == "edge" and transport == "http")


def check_traffic_token(scope, sandbox: SandboxInfo) -> None:
    if sandbox.allow_public_traffic:
        return
    raw = header(scope, TRAFFIC_TOKEN_HEADER)
    if raw is None:
        raise GatewayError("traffic_access_token_missing")
    if not tokens.secret_matches(raw.decode("latin-1").strip(), sandbox.traffic_token_digest):
        raise GatewayError("traffic_access_token_invalid")


def is_secure(scope) -> bool:
    return scope.get("scheme") in ("https", "wss") or settings.PREVIEW_SCHEME == "https"


async def send_bootstrap(scope, send, admission: Admission) -> None:
    """303 to the same URL without edge_token, with a host-only cookie standing for the grant."""
    query = strip_query(scope.get("query_string", b""))
    location = (scope.get("raw_path") or scope["path"].encode()) + (b"?" + query if query else b"")
    cookie = [
        f"{COOKIE_NAME}={tokens.sign_preview_token(admission.grant.grant_id, tokens.COOKIE)}",
        "Path=/",
        f"Max-Age={admission.grant.remaining_seconds()}",
        "HttpOnly",
        f"SameSite={settings.PREVIEW_COOKIE_SAMESITE}",
    ]
    if is_secure(scope):
        cookie.append("Secure")
    if settings.PREVIEW_COOKIE_PARTITIONED:
        cookie.append("Partitioned")
    headers = [
        (b"location", location),
        (b"set-cookie", "; ".join(cookie).encode()),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-length", b"0"),
    ]
    headers.append((b"x-request-id", request_id(scope).encode()))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
