"""Issuing SSH access to a sandbox (docs/ssh.md): check the request, make sure sshd runs
in the sandbox, open the relay's port, sign a short-lived certificate, audit it.

Raises DomainError with the contract's codes; knows nothing of HTTP.
"""

from __future__ import annotations

import re
import shlex
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from console.actor import Actor
from console.audit import service as audit
from console.errors import DomainError
from console.models import Sandbox, SshAccess
from console.runtime.image import DEFAULT_USER
from console.sandboxes import service as sandboxes
from console.ssh import ca, sshd
from console.ssh.relay import relay
from console.timefmt import iso

# A POSIX login name as Debian's adduser accepts it.
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ALLOWED_KEYS = {"public_key", "expires_in_minutes", "user"}
MAX_LIVE_PER_SANDBOX = 100


def issue(sandbox: Sandbox, body: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
    """SshAccess for `sandbox` (the contract's shape) for the public key in `body`; the
    row records the actor's API key, the audit row the actor."""
    unknown = sorted(set(body) - ALLOWED_KEYS)
    if unknown:
        raise DomainError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    presented = ca.parse_public_key(body.get("public_key"))
    minutes = _minutes(body.get("expires_in_minutes"))
    user = _user(body.get("user"))
    if settings.RUNTIME_ISOLATION == "none":
        # Without isolation a sandbox's port 22 is the host's own sshd.
        raise DomainError(
            "not_implemented", "SSH access needs isolated sandboxes (RUNTIME_ISOLATION=full)"
        )
    sandboxes.require_running(sandbox)
    _bound_rows(sandbox)

    host = settings.SSH_RELAY_HOST
    ready = sshd.ensure_sshd(sandbox, user, relay_host=host)
    port = relay().open(sandbox.public_id)

    now = timezone.now()
    expires_at = now + timedelta(minutes=minutes)
    access = SshAccess(
        project=sandbox.project,
        sandbox=sandbox,
        user=user,
        principal=sshd.principal(sandbox, user),
        serial=ca.new_serial(),
        key_type=presented.type_name,
        key_fingerprint=presented.fingerprint,
        created_by_key=actor.api_key,
        created_at=now,
        expires_at=expires_at,
        port=port,
    )
    certificate = ca.sign_user_certificate(
        presented.key,
        principals=[access.principal],
        key_id=f"{access.public_id} {sandbox.public_id} {user}",
        valid_after=now - timedelta(seconds=ca.CLOCK_SKEW_SECONDS),
        valid_before=expires_at,
        serial=access.serial,
    )
    access.save()
    audit.record(
        "ssh_access.created",
        team=sandbox.project.team,
        actor=actor,
        target_type="ssh_access",
        target_id=access.public_id,
        sandbox_id=sandbox.public_id,
        user=user,
        key_fingerprint=presented.fingerprint,
        serial=str(access.serial),
        expires_at=iso(expires_at),
    )
    return {
        "access_id": access.public_id,
        "host": host,
        "port": port,
        "user": user,
        "certificate": certificate,
        "expires_at": iso(expires_at),
        "host_key": ready.host_key,
        "host_ca": ca.ca_public_line(),
        # For a client that has no identity file to name (it saves the certificate
        # next to its key itself): where to connect.
        "command": shlex.join(["ssh", "-p", str(port), f"{user}@{host}"]),
    }


def _bound_rows(sandbox: Sandbox) -> None:
    """Expired rows are dropped (the audit log keeps the history); live ones are capped."""
    now = timezone.now()
    SshAccess.objects.filter(sandbox=sandbox, expires_at__lte=now).delete()
    if SshAccess.objects.filter(sandbox=sandbox).count() >= MAX_LIVE_PER_SANDBOX:
        raise DomainError(
            "quota_exceeded",
            f"Sandbox {sandbox.public_id} already has {MAX_LIVE_PER_SANDBOX} unexpired "
            "SSH certificates",
            suggested_action="Reuse one, or ask again when one has expired.",
        )


def _minutes(value: Any) -> int:
    if value is None:
        return settings.SSH_ACCESS_DEFAULT_MINUTES
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("invalid_request", "expires_in_minutes must be a whole number of minutes")
    if not 1 <= value <= settings.SSH_ACCESS_MAX_MINUTES:
        raise DomainError(
            "invalid_request",
            f"expires_in_minutes must be between 1 and {settings.SSH_ACCESS_MAX_MINUTES}",
        )
    return value


def _user(value: Any) -> str:
    if value is None:
        return DEFAULT_USER
    if not isinstance(value, str) or not _USER_NAME.match(value):
        raise DomainError("invalid_request", "user must be a login name of the sandbox")
    return value
