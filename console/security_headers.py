"""Security headers on every console and /v1 response (preview hosts never come here).

Content-Security-Policy: scripts, styles, images and fonts from our own origin only;
no inline script, inline style or eval anywhere in templates/ (behaviour lives in
static/js, looks in static/css; htmx is told not to inject its indicator style), so the
policy needs no 'unsafe-inline' and no nonce. WebSockets may go to this same host.
Permissions-Policy turns off device APIs the console never uses. HSTS comes from
Django's SecurityMiddleware (SECURE_HSTS_SECONDS, on when SITE_URL is https).
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

PERMISSIONS_POLICY = ", ".join(
    [
        "accelerometer=()",
        "camera=()",
        "geolocation=()",
        "gyroscope=()",
        "magnetometer=()",
        "microphone=()",
        "payment=()",
        "usb=()",
        "clipboard-write=(self)",  # the copy buttons
    ]
)


def content_security_policy(host: str, *, secure: bool = False) -> str:
    """The policy for a page served to `host` (empty: a host that is not ours); over HTTPS
    its WebSockets may only be wss://, never plain ws://."""
    sockets = f"wss://{host}" if secure else f"ws://{host} wss://{host}"
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        f"connect-src 'self' {sockets}" if host else "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            try:
                host = request.get_host()
            except DisallowedHost:  # the 400 for a Host that is not ours gets the policy too
                host = ""
            response["Content-Security-Policy"] = content_security_policy(
                host, secure=request.is_secure()
            )
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
