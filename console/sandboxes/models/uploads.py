from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_upload_id
from console.keys.models import ApiKey


class UploadKind(models.TextChoices):
    FILE = "file", "File"
    DIRECTORY_TAR = "directory_tar", "Directory (tar)"


class UploadStatus(models.TextChoices):
    # created/uploading/staged are shown from the parts on disk; the row stores "open".
    OPEN = "open", "Open"
    COMPLETING = "completing", "Completing"
    COMPLETED = "completed", "Completed"
    ABORTED = "aborted", "Aborted"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"


class ConflictPolicy(models.TextChoices):
    MERGE = "merge", "Merge"
    REPLACE = "replace", "Replace"
    ERROR = "error", "Error"


class UploadSession(models.Model):
    """A resumable upload into a sandbox or a volume (one of the two is set): parts are
    staged on disk, then published at once."""

    public_id = models.CharField(max_length=32, unique=True, default=new_upload_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="upload_sessions")
    sandbox = models.ForeignKey(
        "console.Sandbox",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="upload_sessions",
    )
    volume = models.ForeignKey(
        "console.Volume",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="upload_sessions",
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=UploadKind.choices)
    source_kind = models.CharField(max_length=24)
    target_path = models.CharField(max_length=4096)
    content_length = models.PositiveBigIntegerField()
    part_size = models.PositiveBigIntegerField()
    part_count = models.PositiveIntegerField()
    conflict = models.CharField(
        max_length=8, choices=ConflictPolicy.choices, default=ConflictPolicy.MERGE
    )
    archive_format = models.CharField(max_length=8, blank=True)
    whole_checksum_sha256 = models.CharField(max_length=64, blank=True)
    user = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=12, choices=UploadStatus.choices, default=UploadStatus.OPEN
    )
    failure_reason = models.CharField(max_length=48, blank=True)
    published_bytes = models.PositiveBigIntegerField(default=0)
    published_file_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sandbox", "api_key", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="console_uploadsession_idempotency",
            ),
            models.UniqueConstraint(
                fields=["volume", "api_key", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="console_uploadsession_volume_idempotency",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id
