"""Preview grants: create, revoke, describe, and the check the gateway runs on every request.

A grant lets one port of one sandbox be reached until it expires or is revoked.
Its tokens are HMAC-signed values naming the grant (console/tokens.py), so no
token is stored; a revocation is the grant row's `revoked_at` plus a fan-out over
the channel layer so every gateway process drops its cached state at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console import live, tokens
from console.actor import Actor
from console.audit import service as audit
from console.errors import DomainError
from console.jobs import periodic
from console.models import AuthMode, PreviewGrant, Sandbox
from console.previews.models import grant_status
from console.timefmt import iso
from gateway.hosts import sandbox_host

log = logging.getLogger(__name__)

HTTP_PORT = "http_port"
WEBSOCKET_PORT = "websocket_port"
ALL_TOKEN_KINDS = (HTTP_PORT, WEBSOCKET_PORT)
# Token kind of a grant -> the transport it opens ("http" or "websocket").
TRANSPORT_OF = {HTTP_PORT: "http", WEBSOCKET_PORT: "websocket"}
_SIGNING_KIND = {
    (AuthMode.DIRECT, HTTP_PORT): tokens.DIRECT_HTTP,
    (AuthMode.DIRECT, WEBSOCKET_PORT): tokens.DIRECT_WS,
    (AuthMode.PROXY, HTTP_PORT): tokens.PROXY_HTTP,
    (AuthMode.PROXY, WEBSOCKET_PORT): tokens.PROXY_WS,
}

MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 24 * 3600
RESERVED_PORTS = frozenset({22, *range(5900, 6000)})

REVOCATION_GROUP = "preview.revocations"
REVOCATION_MESSAGE = "preview.revoked"
TRANSPORT_MARKER = "__ns_preview_transport"


class PreviewRefused(DomainError):
    """A grant request we will not honour (`invalid_request`)."""

    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(code, message)


class GrantLimitReached(PreviewRefused):
    """The sandbox already has MAX_GRANTS_PER_SANDBOX live grants (`quota_exceeded`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="quota_exceeded")


def check_port(port: Any, *, allow_reserved: bool = False) -> int:
    if isinstance(port, bool) or not isinstance(port, int) and not str(port).isdigit():
        raise PreviewRefused(f"port must be an integer, got {port!r}")
    port = int(port)
    if not 1 <= port <= 65535:
        raise PreviewRefused(f"port {port} is out of range (1-65535)")
    if port in RESERVED_PORTS and not allow_reserved:
        raise PreviewRefused(
            f"port {port} is reserved (22 is SSH, 5900-5999 are desktop/VNC) and cannot be previewed"
        )
    return port


def clamp_ttl(expires_in_seconds: Any) -> int:
    if expires_in_seconds is None:
        return max(MIN_TTL_SECONDS, min(MAX_TTL_SECONDS, settings.PREVIEW_DEFAULT_TTL_SECONDS))
    if isinstance(expires_in_seconds, bool):
        raise PreviewRefused("expires_in_seconds must be a number of seconds")
    try:
        seconds = int(expires_in_seconds)
    except (TypeError, ValueError):
        raise PreviewRefused("expires_in_seconds must be a number of seconds") from None
    return max(MIN_TTL_SECONDS, min(MAX_TTL_SECONDS, seconds))


def create_grant(
    sandbox: Sandbox,
    port: int,
    *,
    auth_mode: str = AuthMode.DIRECT,
    token_kinds: list[str] | tuple[str, ...] = ALL_TOKEN_KINDS,
    expires_in_seconds: int | None = None,
    actor: Actor,
    allow_reserved: bool = False,
) -> tuple[PreviewGrant, dict[str, str]]:
    """Make a grant and its raw tokens ({"http_port": ..., "websocket_port": ...}), shown once.

    The grant records who made it: the actor's key (a /v1 client) or person (the
    console); background work (an agent service's URL) passes SYSTEM and records neither.
    `allow_reserved`: only the desktop's own viewer grants open a reserved (VNC) port."""
    port = check_port(port, allow_reserved=allow_reserved)
    if auth_mode not in AuthMode.values:
        raise PreviewRefused(f"auth_mode must be one of {', '.join(AuthMode.values)}")
    kinds = [kind for kind in ALL_TOKEN_KINDS if kind in set(token_kinds or ())]
    if not kinds or len(kinds) != len(set(token_kinds)):
        raise PreviewRefused("token_kinds must be a non-empty subset of http_port, websocket_port")
    now = timezone.now()
    with transaction.atomic():
        # The sandbox row lock makes concurrent creates count one after another.
        Sandbox.objects.select_for_update().filter(pk=sandbox.pk).exists()
        live = PreviewGrant.objects.filter(
            sandbox=sandbox, revoked_at__isnull=True, expires_at__gt=now
        ).count()
        if live >= settings.MAX_GRANTS_PER_SANDBOX:
            raise GrantLimitReached(
                f"Sandbox {sandbox.public_id} already has {live} live preview grants; "
                "revoke some first"
            )
        grant = PreviewGrant.objects.create(
            project_id=sandbox.project_id,
            sandbox=sandbox,
            port=port,
            auth_mode=auth_mode,
            token_kinds=kinds,
            created_by=actor.user,
            created_by_key=actor.api_key,
            issued_at=now,
            expires_at=now + timedelta(seconds=clamp_ttl(expires_in_seconds)),
        )
    raw = {
        kind: tokens.sign_preview_token(grant.public_id, _SIGNING_KIND[(AuthMode(auth_mode), kind)])
        for kind in kinds
    }
    audit.record(
        "preview_grant.created",
        team=sandbox.project.team,
        actor=actor,
        target_type="preview_grant",
        target_id=grant.public_id,
        sandbox_id=sandbox.public_id,
        port=port,
        auth_mode=auth_mode,
    )
    _tell_pages(sandbox.project.public_id, sandbox.public_id)
    return grant, raw


def revoke_grant(grant: PreviewGrant, *, actor: Actor) -> PreviewGrant:
    """Revoke (idempotent) and tell every gateway process, which closes its WebSockets too.

    The audit row names the actor (callers need not audit).
    """
    if grant.revoked_at is None:
        grant.revoked_at = timezone.now()
        grant.save(update_fields=["revoked_at", "updated_at"])
        audit.record(
            "preview_grant.revoked",
            team=grant.sandbox.project.team,
            actor=actor,
            target_type="preview_grant",
            target_id=grant.public_id,
            sandbox_id=grant.sandbox.public_id,
            port=grant.port,
        )
        _tell_pages(grant.sandbox.project.public_id, grant.sandbox.public_id)
    announce_revocation(grant.public_id)
    return grant


@periodic("preview-grant-expiry", every=15)
def audit_expired_grants() -> int:
    """An audit row for each grant that ran out (not revoked), once: the conditional
    UPDATE on expiry_audited_at elects one writer among all workers."""
    now = timezone.now()
    due = PreviewGrant.objects.filter(
        expires_at__lte=now, expiry_audited_at__isnull=True, revoked_at__isnull=True
    ).select_related("project__team", "sandbox")
    count = 0
    for grant in list(due[:500]):
        with transaction.atomic():
            won = PreviewGrant.objects.filter(pk=grant.pk, expiry_audited_at__isnull=True).update(
                expiry_audited_at=now
            )
            if not won:
                continue
            audit.record(
                "preview_grant.expired",
                team=grant.project.team,
                actor_label="system",
                target_type="preview_grant",
                target_id=grant.public_id,
                sandbox_id=grant.sandbox.public_id,
                port=grant.port,
                expired_at=grant.expires_at.isoformat(),
            )
            count += 1
    return count


def _tell_pages(project_public_id: str, sandbox_public_id: str) -> None:
    """Open grant tables refresh once the change is committed (console/live.py)."""
    transaction.on_commit(lambda: live.grants_changed(project_public_id, [sandbox_public_id]))


def announce_revocation(grant_id: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # The message itself is the definitive answer ("revoked"), so a gateway never has to
    # race the database commit; a lost message is caught by the gateway's short cache TTL.
    try:
        async_to_sync(layer.group_send)(
            REVOCATION_GROUP, {"type": REVOCATION_MESSAGE, "grant_id": grant_id}
        )
    except Exception:
        log.exception("could not fan out the revocation of %s", grant_id)


def grant_to_dict(grant: PreviewGrant) -> dict[str, Any]:
    """PreviewGrantInfo, exactly the contract's keys (3.2); never a raw token."""
    if grant.created_by_key is not None:
        principal_id = grant.created_by_key.public_id
    elif grant.created_by is not None:
        principal_id = grant.created_by.get_username()
    else:
        principal_id = None
    return {
        "id": grant.public_id,
        "sandbox_id": grant.sandbox.public_id,
        "port": grant.port,
        "auth_mode": grant.auth_mode,
        "bootstrap_transport": "header" if grant.auth_mode == AuthMode.PROXY else "query",
        "status": grant.status,
        "token_kinds": list(grant.token_kinds),
        "principal_kind": "user",
        "principal_id": principal_id,
        "issued_at": iso(grant.issued_at),
        "expires_at": iso(grant.expires_at),
        "revoked_at": iso(grant.revoked_at),
        "first_used_at": iso(grant.first_used_at),
        "last_used_at": iso(grant.last_used_at),
        "use_count": grant.use_count,
        "http_request_count": grant.http_request_count,
        "websocket_connection_count": grant.websocket_connection_count,
        "bytes_in_count": grant.bytes_in_count,
        "bytes_out_count": grant.bytes_out_count,
        "last_error_code": grant.last_error_code or None,
        "last_error_at": iso(grant.last_error_at),
        "disabled_at": iso(grant.disabled_at),
        "created_at": iso(grant.created_at),
        "updated_at": iso(grant.updated_at),
    }


# What `grant_rows_to_dicts` reads: the grant's own columns and its creator's name.
GRANT_ROW_COLUMNS = (
    "public_id",
    "port",
    "auth_mode",
    "token_kinds",
    "issued_at",
    "expires_at",
    "revoked_at",
    "disabled_at",
    "first_used_at",
    "last_used_at",
    "use_count",
    "http_request_count",
    "websocket_connection_count",
    "bytes_in_count",
    "bytes_out_count",
    "last_error_code",
    "last_error_at",
    "created_at",
    "updated_at",
    "created_by_key__public_id",
    "created_by__username",
)


def grant_rows_to_dicts(rows: Iterable[tuple], sandbox_public_id: str) -> list[dict[str, Any]]:
    """`grant_to_dict` for rows read with `values_list(*GRANT_ROW_COLUMNS)` of one sandbox:
    the same keys and values, without a model instance (and its related rows) per grant.
    The whole-list answer of a busy sandbox is thousands of grants (bench/README.md)."""
    now = timezone.now()
    shaped = []
    for (
        public_id, port, auth_mode, token_kinds, issued_at, expires_at, revoked_at,
        disabled_at, first_used_at, last_used_at, use_count, http_requests, websocket_count,
        bytes_in, bytes_out, last_error_code, last_error_at, created_at, updated_at,
        key_public_id, username,
    ) in rows:  # fmt: skip
        shaped.append(
            {
                "id": public_id,
                "sandbox_id": sandbox_public_id,
                "port": port,
                "auth_mode": auth_mode,
                "bootstrap_transport": "header" if auth_mode == AuthMode.PROXY else "query",
                "status": grant_status(revoked_at, disabled_at, expires_at, now),
                "token_kinds": list(token_kinds),
                "principal_kind": "user",
                "principal_id": key_public_id if key_public_id is not None else username,
                "issued_at": iso(issued_at),
                "expires_at": iso(expires_at),
                "revoked_at": iso(revoked_at),
                "first_used_at": iso(first_used_at),
                "last_used_at": iso(last_used_at),
                "use_count": use_count,
                "http_request_count": http_requests,
                "websocket_connection_count": websocket_count,
                "bytes_in_count": bytes_in,
                "bytes_out_count": bytes_out,
                "last_error_code": last_error_code or None,
                "last_error_at": iso(last_error_at),
                "disabled_at": iso(disabled_at),
                "created_at": iso(created_at),
                "updated_at": iso(updated_at),
            }
        )
    return shaped


def flush_accounting() -> None:
    """Write this process's pending gateway counters now, so a grant list shows current numbers."""
    from gateway import accounting  # the gateway imports this module; import it lazily

    accounting.flush()


# --- URLs -----------------------------------------------------------------------------


def preview_host(sandbox: Sandbox, port: int) -> str:
    """`<port>-<label>.<PREVIEW_DOMAIN>[:PREVIEW_PORT]` (port left out when it is the default)."""
    default = 443 if settings.PREVIEW_SCHEME == "https" else 80
    suffix = f":{settings.PREVIEW_PORT}" if settings.PREVIEW_PORT not in (0, default) else ""
    return sandbox_host(port, sandbox.public_id, settings.PREVIEW_DOMAIN, suffix)


def preview_urls(
    sandbox: Sandbox, port: int, tokens: dict[str, str], *, auth_mode: str = AuthMode.DIRECT
) -> tuple[str, str]:
    """(http url, websocket url). Direct: `?edge_token=<kind token>`; proxy: the header marker."""
    host = preview_host(sandbox, port)
    scheme = settings.PREVIEW_SCHEME
    ws_scheme = "wss" if scheme == "https" else "ws"

    def query(kind: str) -> str:
        if auth_mode == AuthMode.PROXY:
            return f"?{TRANSPORT_MARKER}=header"
        return f"?edge_token={tokens[kind]}" if tokens.get(kind) else ""

    return f"{scheme}://{host}/{query(HTTP_PORT)}", f"{ws_scheme}://{host}/{query(WEBSOCKET_PORT)}"


# --- The gateway's check ----------------------------------------------------------------

# Why a grant does not admit a request; the gateway maps these to edge_* / proxy_* codes.
REVOKED = "revoked"
DISABLED = "disabled"
EXPIRED = "expired"
SCOPE = "scope_mismatch"


@dataclass(frozen=True)
class GrantState:
    """What the gateway caches about a grant: enough to decide, nothing secret."""

    grant_id: str
    sandbox_id: str
    port: int
    auth_mode: str
    token_kinds: tuple[str, ...]
    expires_at: datetime
    revoked: bool
    disabled: bool

    def refusal(
        self, *, sandbox_id: str, port: int, transport: str, now: datetime | None = None
    ) -> str | None:
        """None when the grant admits this request, else REVOKED/DISABLED/EXPIRED/SCOPE."""
        if self.revoked:
            return REVOKED
        if self.disabled:
            return DISABLED
        if self.expires_at <= (now or timezone.now()):
            return EXPIRED
        if self.sandbox_id != sandbox_id or self.port != port:
            return SCOPE
        if transport not in {TRANSPORT_OF[kind] for kind in self.token_kinds}:
            return SCOPE
        return None

    def remaining_seconds(self, now: datetime | None = None) -> int:
        return max(0, int((self.expires_at - (now or timezone.now())).total_seconds()))


def load_grant_state(grant_id: str) -> GrantState | None:
    """The grant's state from the database, or None when no such grant exists.

    Database errors propagate: the gateway answers 503 and caches nothing.
    """
    row = (
        PreviewGrant.objects.filter(public_id=grant_id)
        .values_list(
            "sandbox__public_id",
            "port",
            "auth_mode",
            "token_kinds",
            "expires_at",
            "revoked_at",
            "disabled_at",
        )
        .first()
    )
    if row is None:
        return None
    sandbox_id, port, auth_mode, kinds, expires_at, revoked_at, disabled_at = row
    return GrantState(
        grant_id=grant_id,
        sandbox_id=sandbox_id,
        port=port,
        auth_mode=auth_mode,
        token_kinds=tuple(kinds or ()),
        expires_at=expires_at,
        revoked=revoked_at is not None,
        disabled=disabled_at is not None,
    )
