"""The live stream: x11vnc serves the screen on the sandbox's loopback only (view-only when
asked: the VNC server itself drops input then), websockify bridges it to a WebSocket on
BRIDGE_PORT, and the preview gateway carries that WebSocket to a browser under a preview
grant of the sandbox (BRIDGE_PORT is in the reserved VNC range, so no ordinary preview
link can open it). The viewer page (noVNC) is served by the console.

The stream's auth key is an HMAC of a nonce kept per stream: shown again on request,
never stored, and dead once the stream stops (the nonce is cleared).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from console import tokens
from console.actor import Actor
from console.desktop import session as desktop
from console.errors import DomainError
from console.models import DesktopSession, PreviewGrant, Sandbox
from console.previews import service as previews

VNC_PORT = 5900
BRIDGE_PORT = 5901
VIEWER_GRANT_SECONDS = 3600  # a viewer opened now can watch this long
AUTH_PREFIX = "dsk_"
READY_SECONDS = 15


def _key(sandbox: Sandbox, nonce: str) -> str:
    message = f"desktop-stream:{sandbox.public_id}:{nonce}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return AUTH_PREFIX + digest[:40]


def auth_key(sandbox: Sandbox, session: DesktopSession) -> str:
    if not session.stream_nonce:
        raise _not_started(sandbox)
    return _key(sandbox, session.stream_nonce)


def key_matches(sandbox: Sandbox, session: DesktopSession, raw: str) -> bool:
    if not session.stream_nonce or not raw:
        return False
    return hmac.compare_digest(_key(sandbox, session.stream_nonce), raw)


def was_key(sandbox: Sandbox, session: DesktopSession, raw: str) -> bool:
    """The key of the stream before this one (replaced, or stopped)."""
    if not session.stream_previous_nonce or not raw:
        return False
    return hmac.compare_digest(_key(sandbox, session.stream_previous_nonce), raw)


def _not_started(sandbox: Sandbox) -> DomainError:
    return DomainError(
        "stream_not_started",
        f"No desktop stream is running for sandbox {sandbox.public_id}",
        suggested_action=f"Start one: nullspace sandbox desktop stream start {sandbox.public_id}",
    )


def start(
    sandbox: Sandbox, session: DesktopSession, view_only: Any, *, actor: Actor
) -> DesktopSession:
    """(Re)start the VNC server and its bridge in the asked mode; a new auth key. The
    actor is who revoked the last stream's viewer grants, in their audit rows."""
    if not isinstance(view_only, bool):
        raise DomainError("invalid_request", "view_only must be true or false")
    _stop_processes(sandbox, session)
    # The last stream's viewers must not reach this one (a view-only link, say).
    _revoke_viewers(sandbox, actor)
    vnc = [
        "x11vnc",
        "-display",
        f":{session.display}",
        "-rfbport",
        str(VNC_PORT),
        "-localhost",
        "-nopw",
        "-forever",
        "-shared",
        "-quiet",
    ]
    pids = {"vnc": desktop.background(sandbox, session, vnc + (["-viewonly"] if view_only else []))}
    _wait_port(sandbox, session, VNC_PORT, "the VNC server")
    pids["bridge"] = desktop.background(
        sandbox,
        session,
        ["python3", "-m", "websockify", f"0.0.0.0:{BRIDGE_PORT}", f"127.0.0.1:{VNC_PORT}"],
    )
    _wait_port(sandbox, session, BRIDGE_PORT, "the WebSocket bridge")
    session.pids = {**session.pids, **pids}
    session.stream_previous_nonce = session.stream_nonce or session.stream_previous_nonce
    session.stream_nonce = secrets.token_hex(16)
    session.stream_view_only = view_only
    session.stream_started_at = timezone.now()
    session.save()
    return session


def _wait_port(sandbox: Sandbox, session: DesktopSession, port: int, what: str) -> None:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).close()"
    deadline = time.monotonic() + READY_SECONDS
    delay = 0.05
    while True:
        result = desktop.run(session, sandbox, ["python3", "-c", probe], check=False, timeout=5)
        if result.exit_code == 0:
            return
        if time.monotonic() > deadline:
            raise DomainError("desktop_unavailable", f"{what} did not come up", retryable=True)
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _stop_processes(sandbox: Sandbox, session: DesktopSession) -> None:
    for role in ("bridge", "vnc"):
        desktop.stop(sandbox, session, role)


def stop(sandbox: Sandbox, session: DesktopSession, *, actor: Actor) -> None:
    """End the stream: the processes, every viewer grant (open viewers close), the key."""
    _stop_processes(sandbox, session)
    _revoke_viewers(sandbox, actor)
    session.stream_previous_nonce = session.stream_nonce or session.stream_previous_nonce
    session.stream_nonce = ""
    session.stream_started_at = None
    session.save(update_fields=["stream_nonce", "stream_previous_nonce", "stream_started_at"])


def _revoke_viewers(sandbox: Sandbox, actor: Actor) -> None:
    for grant in _viewer_grants(sandbox):
        previews.revoke_grant(grant, actor=actor)


def _viewer_grants(sandbox: Sandbox):
    return PreviewGrant.objects.filter(
        sandbox=sandbox, port=BRIDGE_PORT, revoked_at__isnull=True, expires_at__gt=timezone.now()
    )


def viewer_socket_url(sandbox: Sandbox, *, actor: Actor) -> str:
    """A WebSocket URL (with its edge token) that the gateway lets through to the bridge,
    from a live viewer grant with at least half its time left, or a new one made by the
    actor (the viewer page's visitor, who holds the stream's key but no API key)."""
    half = timezone.now() + timedelta(seconds=VIEWER_GRANT_SECONDS / 2)
    grant = _viewer_grants(sandbox).filter(expires_at__gt=half).order_by("-expires_at").first()
    if grant is None:
        grant, _ = previews.create_grant(
            sandbox,
            BRIDGE_PORT,
            token_kinds=[previews.WEBSOCKET_PORT],
            expires_in_seconds=VIEWER_GRANT_SECONDS,
            actor=actor,
            allow_reserved=True,
        )
    token = tokens.sign_preview_token(grant.public_id, tokens.DIRECT_WS)
    return f"{_socket_base(sandbox)}?edge_token={token}"


def _socket_base(sandbox: Sandbox) -> str:
    scheme = "wss" if settings.PREVIEW_SCHEME == "https" else "ws"
    return f"{scheme}://{previews.preview_host(sandbox, BRIDGE_PORT)}/websockify"


def viewer_url(sandbox: Sandbox, key: str) -> str:
    return f"{settings.SITE_URL}/v1/sandboxes/{sandbox.public_id}/desktop/viewer?auth={key}"


def raw_vnc_refused(sandbox: Sandbox) -> DomainError:
    """`GET stream` is the raw VNC endpoint of the contract; we serve no raw VNC port (the
    screen is reachable only through the managed viewer), as capabilities say."""
    return DomainError(
        "desktop_raw_vnc_disabled",
        "Raw VNC access is disabled on this server; the desktop streams through the viewer",
        suggested_action=f"nullspace sandbox desktop stream start {sandbox.public_id}",
    )


def managed_info(sandbox: Sandbox, session: DesktopSession) -> dict[str, Any]:
    """ManagedDesktopStreamInfo: the viewer and its key (no raw VNC host, port or URL)."""
    key = auth_key(sandbox, session)
    return {
        "protocol": "vnc",
        "host": None,
        "port": None,
        "url": None,
        "vnc_url": None,
        "viewer_url": viewer_url(sandbox, key),
        "auth_key": key,
        "view_only": session.stream_view_only,
        "expires_at": None,
    }
