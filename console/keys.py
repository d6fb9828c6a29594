"""Creating, revoking and rotating project API keys (shared by the console and /v1/keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from console.models import ApiKey, KeyScope, Project
from console.tokens import API_KEY, new_secret


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str = field(repr=False)


def create_api_key(
    project: Project,
    *,
    name: str,
    scope: str = KeyScope.FULL,
    expires_at: datetime | None = None,
    created_by=None,
    rotated_from: ApiKey | None = None,
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


def revoke_api_key(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at", "updated_at"])


@transaction.atomic
def rotate_api_key(
    key: ApiKey, *, created_by=None, name: str | None = None, scope: str | None = None
) -> IssuedKey:
    """A new secret with the same name, scope and expiry (unless given); the old one dies at once."""
    revoke_api_key(key)
    return create_api_key(
        key.project,
        name=name or key.name,
        scope=scope or key.scope,
        expires_at=key.expires_at,
        created_by=created_by,
        rotated_from=key,
    )
