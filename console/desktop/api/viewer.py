"""The managed viewer: `/v1/sandboxes/{id}/desktop/viewer?auth=<stream auth key>`, the page
the client's `viewer_url` names. The auth key is the credential (no API key: the URL is
meant to be opened in a browser or framed by the console). The page is noVNC, served by
us, connecting through the preview gateway to the sandbox's WebSocket bridge."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from console.actor import Actor
from console.api.auth import PUBLIC, SIGNED_URL
from console.api.errors import ApiError, error_response
from console.client_ip import client_ip
from console.desktop import stream
from console.errors import DomainError
from console.models import DesktopSession, SandboxStatus


def _gone() -> DomainError:
    return DomainError("viewer_not_found", "This desktop viewer link is not valid")


def _plain(value: str) -> bool:
    """Short printable text (a database refuses NUL; nothing valid is long)."""
    return len(value) <= 200 and value.isprintable()


@csrf_exempt
def viewer(request: HttpRequest, sandbox_id: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        refused = ApiError(
            "method_not_allowed", "Only GET opens the viewer", headers={"Allow": "GET"}
        )
        return error_response(request, refused)
    raw = request.GET.get("auth", "")
    if not _plain(sandbox_id) or not _plain(raw):
        return _private(error_response(request, _gone()))
    session = (
        DesktopSession.objects.select_related("sandbox")
        .filter(sandbox__public_id=sandbox_id, sandbox__status=SandboxStatus.RUNNING)
        .first()
    )
    if session is not None and stream.was_key(session.sandbox, session, raw):
        # A viewer of the last stream learns why it stopped working (no new access).
        ended = {"replaced": bool(session.stream_nonce)}
        return _private(render(request, "console/desktop/viewer_gone.html", ended))
    # One answer (the /v1 envelope) for an unknown sandbox and a wrong key.
    if session is None or not stream.key_matches(session.sandbox, session, raw):
        return _private(error_response(request, _gone()))
    # The visitor acts by the stream's key alone, not as a console user it may also be
    # signed in as: its grant names no one, its audit rows only its address.
    visitor = Actor.person(None, client_ip=client_ip(request))
    socket = stream.viewer_socket_url(session.sandbox, actor=visitor)
    response = render(
        request,
        "console/desktop/viewer.html",
        {
            "sandbox": session.sandbox,
            "socket_url": socket,
            "view_only": session.stream_view_only,
        },
    )
    origin = urlsplit(socket)
    response["Content-Security-Policy"] = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"connect-src 'self' {origin.scheme}://{origin.netloc}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            # The console's sandbox page frames it; nobody else may.
            "frame-ancestors 'self'",
        ]
    )
    return _private(response)


# Authorized by the stream's auth key in the query, like a signed URL (the /v1 guard test).
viewer.api_scope = SIGNED_URL  # type: ignore[attr-defined]

# noVNC's modules, at the path the client's own viewer pages use (vendored, docs/desktop.md).
ASSETS = Path(settings.BASE_DIR) / "static" / "vendor" / "novnc"


def viewer_asset(request: HttpRequest, asset: str) -> HttpResponseBase:
    """A file of the vendored noVNC (JavaScript only, never outside its folder)."""
    if not _plain(asset) or not asset.endswith(".js"):
        return error_response(request, DomainError("not_found", "No such viewer asset"))
    root = ASSETS.resolve()
    target = (root / asset).resolve()
    if not asset.endswith(".js") or not target.is_relative_to(root) or not target.is_file():
        return error_response(request, DomainError("not_found", "No such viewer asset"))
    response = FileResponse(open(target, "rb"), content_type="text/javascript")
    response["Cache-Control"] = "public, max-age=3600"
    return response


viewer_asset.api_scope = PUBLIC  # type: ignore[attr-defined]  # open-source JavaScript


def _private(response: HttpResponse) -> HttpResponse:
    # The auth key is in the address: keep it out of caches and Referer headers.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
