from __future__ import annotations

from typing import TypedDict

from django.conf import settings
from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_key_id
from console.timefmt import iso


class KeyScope(models.TextChoices):
    FULL = "full", "Full access"
    READ = "read", "Read only"


class ApiKeyDict(TypedDict):
    """An item of GET /v1/keys (docs/api.md §8, 1.0.3 shape)."""

    id: str
    prefix: str
    is_active: bool
    name: str
    scope: str
    created_at: str | None
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None
    rotation_parent_key_id: str | None


class ApiKey(models.Model):
    """A project API key. Stored as a lookup prefix plus an HMAC digest; never raw."""

    public_id = models.CharField(max_length=32, unique=True, default=new_key_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=24, unique=True)
    digest = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=KeyScope.choices, default=KeyScope.FULL)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotations"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "created_at", "id"], name="console_key_proj_time"),
            # The overview's "active keys" count reads only unrevoked keys.
            models.Index(
                fields=["project", "expires_at"],
                condition=models.Q(revoked_at__isnull=True),
                name="console_key_proj_open",
            ),
        ]

    def __repr__(self) -> str:
        return f"<ApiKey {self.public_id} {self.prefix}…>"

    __str__ = __repr__

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def to_dict(self) -> ApiKeyDict:
        return {
            "id": self.public_id,
            "prefix": self.prefix,
            "is_active": self.is_active,
            "name": self.name,
            "scope": self.scope,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "rotation_parent_key_id": self.rotated_from.public_id if self.rotated_from else None,
        }
