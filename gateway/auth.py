"""Who may pass: decided per request and per transport ("http" or "websocket").

Order: the proxy-token header (customer proxies; `__ns_preview_transport=header`
without it is a missing token), then `edge_token` in the query (an HTTP request is
answered with a 303 that trades it for our cookie), then our cookie. Every path
re-checks the grant's revocation and expiry. A private sandbox also needs the
owner's traffic token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from console import tokens
from console.previews.service import DISABLED, EXPIRED, REVOKED, SCOPE, GrantState
from gateway import accounting, grants
from gateway.errors import GatewayError, request_id
from gateway.headers import (
    COOKIE_NAME,
    EDGE_TOKEN_PARAM,
    HOST_COOKIE_NAME,
    PROXY_TOKEN_HEADER,
    TRAFFIC_TOKEN_HEADER,
    TRANSPORT_PARAM,
    cookie_values,
    header,
    query_params,
    strip_query,
)
from gateway.hosts import request_target
from gateway.routes import Admission, Route
from gateway.types import Scope, Send
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


# A browser sends every cookie of a name it holds for the host, and a page on another
# preview host can plant one (document.cookie with a Domain): try a few, first to admit wins.
MAX_COOKIE_CANDIDATES = 8


def _credentials(scope: Scope) -> tuple[str, list[str]]:
    """(via, raw tokens) from one pass over the headers, then the query only if it names ours."""
    proxy_token: bytes | None = None
    cookies: list[bytes] = []
    for key, value in scope["headers"]:
        if key == PROXY_TOKEN_HEADER:
            proxy_token = value
            break
        if key == b"cookie":
            cookies.append(value)
    if proxy_token is not None:
        return "proxy", [proxy_token.decode("latin-1").strip()]
    query = scope.get("query_string", b"")
    if query and (TRANSPORT_PARAM in query or EDGE_TOKEN_PARAM in query):
        params = query_params(scope)
        if params.get(TRANSPORT_PARAM) == b"header":
            raise GatewayError("preview_proxy_token_missing")
        if EDGE_TOKEN_PARAM in params:
            return "edge", [params[EDGE_TOKEN_PARAM].decode("latin-1")]
    found: list[str] = []
    for cookie in cookies:
        found += cookie_values(cookie, secure_only=is_secure(scope))
    if found:
        return "cookie", found[:MAX_COOKIE_CANDIDATES]
    raise GatewayError("edge_token_missing")


async def admit(scope: Scope, route: Route, transport: str) -> Admission:
    via, candidates = _credentials(scope)
    refused: GatewayError | None = None
    for raw in candidates:
        try:
            state = await _check(raw, via, route, transport)
        except GatewayError as error:
            refused = refused or error
            continue
        expires_at = time.time() + (state.expires_at - timezone.now()).total_seconds()
        return Admission(state.grant_id, expires_at, via, via == "edge" and transport == "http")
    assert refused is not None
    raise refused


async def _check(raw: str, via: str, route: Route, transport: str) -> GrantState:
    credential = _CREDENTIALS[(via, transport)]
    grant_id = _read_token(raw, credential.kind)
    if grant_id is None:
        sibling = credential.sibling and tokens.read_preview_token(raw, credential.sibling)
        raise GatewayError(credential.codes[SCOPE if sibling else "invalid"])
    state = await grants.grant_state(grant_id)
    if state is None:
        raise GatewayError(credential.codes["invalid"])
    refusal = state.refusal(sandbox_id=route.subject, port=route.port, transport=transport)
    if refusal is not None:
        code = credential.codes[refusal]
        accounting.count_error(grant_id, code)
        raise GatewayError(code)
    return state


def check_traffic_token(scope: Scope, sandbox: SandboxInfo) -> None:
    if sandbox.allow_public_traffic:
        return
    raw = header(scope, TRAFFIC_TOKEN_HEADER)
    if raw is None:
        raise GatewayError("traffic_access_token_missing")
    if not tokens.secret_matches(raw.decode("latin-1").strip(), sandbox.traffic_token_digest):
        raise GatewayError("traffic_access_token_invalid")


def is_secure(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss") or settings.PREVIEW_SCHEME == "https"


async def send_bootstrap(scope: Scope, send: Send, admission: Admission) -> None:
    """303 to the same path without edge_token, with a host-only cookie standing for the grant.

    The Location is always a path on this host (request_target collapses `//evil/`).
    """
    query = strip_query(scope.get("query_string", b""))
    location = (request_target(scope) or b"/") + (b"?" + query if query else b"")
    secure = is_secure(scope)
    remaining = max(0, int((admission.expires_at or time.time()) - time.time()))
    token = tokens.sign_preview_token(admission.grant_id, tokens.COOKIE)
    # `__Host-`: the browser refuses it with a Domain or without Secure, so no other host
    # can plant one under our name.
    cookie = [
        f"{HOST_COOKIE_NAME if secure else COOKIE_NAME}={token}",
        "Path=/",
        f"Max-Age={remaining}",
        "HttpOnly",
        f"SameSite={settings.PREVIEW_COOKIE_SAMESITE}",
    ]
    if secure:
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
