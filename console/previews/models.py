from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_grant_id
from console.sandboxes.models.sandboxes import Sandbox


class AuthMode(models.TextChoices):
    DIRECT = "direct", "Signed link"
    PROXY = "proxy", "Proxy token"


class PreviewGrant(models.Model):
    """Permission to reach one port of one sandbox until it expires or is revoked.

    Tokens are HMAC-signed values that name the grant and a token kind (see
    console/tokens.py); they are never stored. Counters are flushed in batches by
    the gateway's accounting, not written per request.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_grant_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="preview_grants")
    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="preview_grants")
    port = models.PositiveIntegerField()
    auth_mode = models.CharField(max_length=8, choices=AuthMode.choices, default=AuthMode.DIRECT)
    # Subset of ["http_port", "websocket_port"].
    token_kinds = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_key = models.ForeignKey(
        "console.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    first_used_at = models.DateTimeField(null=True, blank=True)
    # When the audit log got this grant's first use and its expiry (each written once).
    first_use_audited_at = models.DateTimeField(null=True, blank=True)
    expiry_audited_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveBigIntegerField(default=0)
    http_request_count = models.PositiveBigIntegerField(default=0)
    websocket_connection_count = models.PositiveBigIntegerField(default=0)
    bytes_in_count = models.PositiveBigIntegerField(default=0)
    bytes_out_count = models.PositiveBigIntegerField(default=0)
    last_error_code = models.CharField(max_length=64, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["sandbox", "port"], name="console_grant_sandbox_port"),
            models.Index(fields=["project", "created_at", "id"], name="console_grant_proj_time"),
            models.Index(fields=["sandbox", "created_at", "id"], name="console_grant_sandbox_time"),
            # "N active" counts read only the grants that can still be active.
            models.Index(
                fields=["project", "expires_at"],
                condition=models.Q(revoked_at__isnull=True, disabled_at__isnull=True),
                name="console_grant_proj_open",
            ),
            models.Index(
                fields=["sandbox", "expires_at"],
                condition=models.Q(revoked_at__isnull=True, disabled_at__isnull=True),
                name="console_grant_sandbox_open",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def status(self) -> str:
        return grant_status(self.revoked_at, self.disabled_at, self.expires_at, timezone.now())


def grant_status(revoked_at, disabled_at, expires_at, now) -> str:
    """A grant's status from its dates (also for rows read as values, without a model)."""
    if revoked_at:
        return "revoked"
    if disabled_at:
        return "disabled"
    if expires_at <= now:
        return "expired"
    return "active"
