"""Typed gateway answers with stable codes: an HTML page for a browser navigation, the
contract's JSON envelope otherwise, and a close code on a WebSocket.

Messages are ours; no text from an upstream exception ever reaches the client.
"""

from __future__ import annotations

import json

from django.template.loader import render_to_string

from console.middleware import new_request_id
from gateway.headers import header
from gateway.types import Scope, Send

# code -> (HTTP status, WebSocket close code, page title, message)
CODES: dict[str, tuple[int, int, str, str]] = {
    "preview_not_found": (
        404,
        4404,
        "No preview here",
        "This address does not name a sandbox preview.",
    ),
    "edge_token_missing": (401, 4401, "Link needed", "Open this preview through its signed link."),
    "edge_token_invalid": (401, 4401, "Link not valid", "This preview link is not valid."),
    "edge_token_expired": (
        401,
        4401,
        "Link expired",
        "This preview link has expired. Ask for a new one.",
    ),
    "edge_token_scope_mismatch": (
        403,
        4403,
        "Wrong link",
        "This link is for another sandbox, port or transport.",
    ),
    "preview_grant_invalid": (401, 4401, "Link not valid", "This preview link is no longer valid."),
    "preview_grant_revoked": (403, 4403, "Link revoked", "The owner revoked this preview link."),
    "preview_proxy_token_missing": (
        401,
        4401,
        "Proxy token needed",
        "Send the x-nullspace-preview-proxy-token header.",
    ),
    "preview_proxy_token_invalid": (
        401,
        4401,
        "Proxy token not valid",
        "The preview proxy token is not valid.",
    ),
    "preview_proxy_token_expired": (
        401,
        4401,
        "Proxy token expired",
        "The preview proxy token has expired.",
    ),
    "preview_proxy_token_revoked": (
        403,
        4403,
        "Proxy token revoked",
        "The preview proxy token was revoked.",
    ),
    "preview_proxy_token_scope_mismatch": (
        403,
        4403,
        "Wrong proxy token",
        "This proxy token is for another sandbox, port or transport.",
    ),
    "traffic_access_token_missing": (
        401,
        4401,
        "Private sandbox",
        "This sandbox needs the x-nullspace-traffic-access-token header.",
    ),
    "traffic_access_token_invalid": (
        403,
        4403,
        "Private sandbox",
        "The traffic access token is not valid for this sandbox.",
    ),
    "sandbox_not_found": (
        404,
        4404,
        "No such sandbox",
        "The sandbox behind this preview does not exist.",
    ),
    "sandbox_gone": (410, 4410, "Sandbox gone", "The sandbox behind this preview was destroyed."),
    "sandbox_paused": (
        409,
        4409,
        "Sandbox paused",
        "The sandbox is paused. Resume it to see this preview.",
    ),
    "sandbox_starting": (503, 4503, "Still starting", "The sandbox is starting up."),
    "sandbox_error": (
        502,
        4502,
        "Sandbox failed",
        "The sandbox behind this preview is in an error state.",
    ),
    "upstream_unavailable": (
        502,
        4502,
        "Nothing listening",
        "Nothing is answering on this port yet.",
    ),
    "upstream_timeout": (504, 4504, "Timed out", "The app in the sandbox took too long to answer."),
    "upstream_invalid_response": (
        502,
        4502,
        "Bad answer",
        "The app in the sandbox sent an answer the gateway cannot pass on (headers too large "
        "or malformed).",
    ),
    "request_body_timeout": (
        408,
        4408,
        "Upload stalled",
        "The request body stopped arriving. Check your connection and send it again.",
    ),
    "gateway_unavailable": (
        503,
        4503,
        "Try again",
        "The preview gateway could not check this link just now.",
    ),
}


_NEW_LINK = (
    "Ask whoever shared it for a new link. If the sandbox is yours, make one in the "
    "console's Preview links page or with `nullspace sandbox preview-url create`."
)
# What a visitor can do about it, shown on the HTML page under the message.
NEXT_STEPS: dict[str, str] = {
    "edge_token_missing": "Open the preview through the full link you were given (it carries "
    "an edge_token); the gateway then remembers it in a cookie for this tab's site.",
    "edge_token_invalid": _NEW_LINK,
    "edge_token_expired": _NEW_LINK,
    "preview_grant_invalid": _NEW_LINK,
    "preview_grant_revoked": "The link was turned off on purpose. " + _NEW_LINK,
    "edge_token_scope_mismatch": "Check the address: the number before the first hyphen is "
    "the port the link was made for.",
    "sandbox_paused": "Resume it with `nullspace sandbox resume <id>` or from the console; "
    "create it with auto-resume to have visits wake it.",
    "sandbox_gone": "Create a new sandbox and a new preview link for it.",
    "upstream_unavailable": "Start the app in the sandbox listening on 0.0.0.0 and this port, "
    "then reload.",
}


class GatewayError(Exception):
    def __init__(self, code: str, *, hint: str = "", retry_after: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status, self.close_code, self.title, self.message = CODES[code]
        self.hint = hint
        self.retry_after = retry_after


def wants_html(scope: Scope) -> bool:
    if header(scope, b"sec-fetch-mode") == b"navigate":
        return True
    return b"text/html" in (header(scope, b"accept") or b"")


def request_id(scope: Scope) -> str:
    """This request's id, made when first needed (a proxied 200 carries none)."""
    found = scope.get("request_id")
    if found is None:
        found = scope["request_id"] = new_request_id()
    return str(found)


async def send_error(scope: Scope, send: Send, error: GatewayError) -> None:
    rid = request_id(scope)
    if wants_html(scope):
        context = {
            "title": error.title,
            "message": error.message,
            "hint": error.hint,
            "next_step": NEXT_STEPS.get(error.code, ""),
            "code": error.code,
            "status": error.status,
            "request_id": rid,
            "retry_after": error.retry_after,
        }
        body = render_to_string("gateway/error.html", context).encode()
        content_type = b"text/html; charset=utf-8"
    else:
        envelope: dict[str, object] = {
            "error": f"{error.message} {error.hint}".strip(),
            "code": error.code,
            "request_id": rid,
        }
        if error.code in ("sandbox_starting", "gateway_unavailable", "upstream_timeout"):
            envelope["retryable"] = True
        body = json.dumps(envelope).encode()
        content_type = b"application/json"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-nullspace-preview-error", error.code.encode()),
    ]
    headers.append((b"x-request-id", rid.encode()))
    if error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def close_websocket(send: Send, error: GatewayError) -> None:
    """Refuse before accept (daphne answers the handshake with 403; the close code is for tests
    and servers that keep it)."""
    await send({"type": "websocket.close", "code": error.close_code, "reason": error.code})
