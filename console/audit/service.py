"""Writing audit rows. Callers pass ids and labels, never raw secrets.

Who acted and from which address come from the Actor (console/actor.py), never from
a request: the faces build the Actor, this module knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Any

from console.actor import Actor
from console.models import ApiKey, AuditEvent, Team

__all__ = ["ACTIONS", "record"]

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
    actor: Actor | None = None,
    actor_label: str = "",
    target_type: str = "",
    target_id: str = "",
    ip: str | None = None,
    **metadata: Any,
) -> AuditEvent:
    """One audit row. The actor's user (else its key's prefix) is the label unless one is
    given; `ip` is for work done off a request (the actor's address otherwise)."""
    if action not in ACTIONS:
        raise ValueError(
            f"unknown audit action {action!r}: add it to console.audit.service.ACTIONS"
        )
    user = actor.user if actor is not None else None
    if not actor_label:
        if user is not None:
            actor_label = user.get_username()
        elif actor is not None and actor.api_key is not None:
            actor_label = _key_label(actor.api_key)
    return AuditEvent.objects.create(
        team=team,
        actor=user,
        actor_label=actor_label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=ip or (actor.client_ip if actor is not None else None),
        metadata=metadata,
    )


def _key_label(api_key: ApiKey) -> str:
    """How an audit row names an API key that acted (never the secret: its prefix)."""
    return f"api key {api_key.prefix}…"
