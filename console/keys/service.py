"""Creating, revoking and rotating project API keys (shared by the console and /v1/keys).

Who acts is an Actor (console/actor.py): its user is recorded as the key's creator, and
the audit row reads who and from where from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.actor import Actor
from console.audit.service import record
from console.errors import DomainError
from console.models import ApiKey, KeyScope, Project
from console.tokens import API_KEY, new_secret


class KeyLimitReached(DomainError):
    """The project already has MAX_KEYS_PER_PROJECT active keys (a 429 on /v1)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            "quota_exceeded",
            f"This project already has {limit} active API keys; revoke one first",
            details={"limit": limit},
        )


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str = field(repr=False)


def _insert_key(
    project: Project, *, name, scope, expires_at, created_by, rotated_from
) -> IssuedKey:
    secret = new_secret(API_KEY)
    key = ApiKey.objects.create(
        project=project,
        name=name,
        scope=scope,
        expires_at=expires_at,
        prefix=secret.prefix,
        digest=secret.digest,
        created_by=created_by,
        rotated_from=rotated_from,
    )
    return IssuedKey(key=key, raw=secret.raw)


def _check_key_cap(project: Project) -> None:
    # The project row lock makes concurrent creates count one after another.
    Project.objects.select_for_update().filter(pk=project.pk).exists()
    now = timezone.now()
    active = (
        ApiKey.objects.filter(project=project, revoked_at__isnull=True)
        .exclude(expires_at__lte=now)
        .count()
    )
    limit = settings.MAX_KEYS_PER_PROJECT
    if active >= limit:
        raise KeyLimitReached(limit)


def _mark_revoked(key: ApiKey) -> bool:
    if key.revoked_at is not None:
        return False
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at", "updated_at"])
    return True


def _audit(action: str, key: ApiKey, *, actor: Actor | None, **metadata) -> None:
    # One audit row per change, whichever face (console, /v1/keys, bootstrap) made it.
    record(
        action,
        team=key.project.team,
        actor=actor,
        target_type="api_key",
        target_id=key.public_id,
        name=key.name,
        project=key.project.slug,
        **metadata,
    )


def create_api_key(
    project: Project,
    *,
    name: str,
    scope: str = KeyScope.FULL,
    expires_at: datetime | None = None,
    actor: Actor | None = None,
    via: str = "console",
) -> IssuedKey:
    with transaction.atomic():
        _check_key_cap(project)
        issued = _insert_key(
            project,
            name=name,
            scope=scope,
            expires_at=expires_at,
            created_by=_person(actor),
            rotated_from=None,
        )
    _audit("apikey.create", issued.key, actor=actor, scope=scope, via=via)
    return issued


def revoke_api_key(key: ApiKey, *, actor: Actor | None = None, via: str = "console") -> bool:
    """Revoke at once; True when this call revoked it (False: it already was)."""
    revoked = _mark_revoked(key)
    if revoked:
        _audit("apikey.revoke", key, actor=actor, via=via)
    return revoked


@transaction.atomic
def rotate_api_key(
    key: ApiKey,
    *,
    actor: Actor | None = None,
    name: str | None = None,
    scope: str | None = None,
    via: str = "console",
) -> IssuedKey:
    """A new secret with the same name, scope and expiry (unless given); the old one dies at once."""
    _mark_revoked(key)
    issued = _insert_key(
        key.project,
        name=name or key.name,
        scope=scope or key.scope,
        expires_at=key.expires_at,
        created_by=_person(actor),
        rotated_from=key,
    )
    _audit("apikey.rotate", issued.key, actor=actor, rotated_from=key.public_id, via=via)
    return issued


def _person(actor: Actor | None):
    # A key made through /v1 has no person behind it; one made in the console has.
    return actor.user if actor is not None else None
