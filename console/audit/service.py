"""Writing audit rows. Callers pass ids and labels, never raw secrets."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from console.client_ip import client_ip
from console.models import AuditEvent, Team

__all__ = ["ACTIONS", "client_ip", "record"]

# Every action the console records. The audit page offers these as its action filter
# (reading the distinct values of a 100,000-row table on every request would not do),
# and record() refuses anything else so the list cannot fall behind.
ACTIONS = (
    "signup",
    "signin",
    "signin.locked",
    "team.create",
    "team.rename",
    "team.delete",
    "project.create",
    "project.rename",
    "project.delete",
    "member.role_change",
    "member.remove",
    "member.leave",
    "invitation.create",
    "invitation.revoke",
    "invitation.accept",
    "apikey.create",
    "apikey.revoke",
    "apikey.rotate",
    "preview_grant.created",
    "preview_grant.revoked",
    "preview_grant.first_use",
    "preview_grant.expired",
    "ssh_access.created",
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "webhook.auto_disabled",
    "warm_pool.created",
    "warm_pool.updated",
    "warm_pool.enabled",
    "warm_pool.disabled",
    "warm_pool.drain_requested",
    "warm_pool.deleted",
    "warm_pool.rolled_out",
)


def record(
    action: str,
    *,
    team: Team | None,
    request: HttpRequest | None = None,
    actor=None,
    actor_label: str = "",
    target_type: str = "",
    target_id: str = "",
    ip: str | None = None,
    **metadata: Any,
) -> AuditEvent:
    """One audit row; `ip` overrides the request's (for work done off the request)."""
    if action not in ACTIONS:
        raise ValueError(
            f"unknown audit action {action!r}: add it to console.audit.service.ACTIONS"
        )
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        if request.user.is_authenticated:
            actor = request.user
    api_key = getattr(request, "api_key", None) if request is not None else None
    if not actor_label:
        if actor is not None:
            actor_label = actor.get_username()
        elif api_key is not None:
            actor_label = f"api key {api_key.prefix}…"
    return AuditEvent.objects.create(
        team=team,
        actor=actor,
        actor_label=actor_label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=ip or client_ip(request),
        metadata=metadata,
    )
