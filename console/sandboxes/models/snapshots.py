from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_snapshot_id


class SnapshotKind(models.TextChoices):
    MANUAL = "manual", "Manual"
    HIBERNATE = "hibernate", "Pause"


class Snapshot(models.Model):
    """An archive of a sandbox's workspace; create-from-snapshot and fork restore it."""

    public_id = models.CharField(max_length=32, unique=True, default=new_snapshot_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    sandbox = models.ForeignKey(
        "console.Sandbox",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="snapshots",
    )
    # Kept as text too: the sandbox row may be gone, the contract still names it.
    sandbox_public_id = models.CharField(max_length=32, db_index=True)
    kind = models.CharField(
        max_length=10, choices=SnapshotKind.choices, default=SnapshotKind.MANUAL
    )
    size_bytes = models.PositiveBigIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    archive_path = models.CharField(max_length=1024, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "created_at", "id"], name="console_snap_proj_time"),
            models.Index(
                fields=["project", "sandbox_public_id", "created_at", "id"],
                name="console_snap_sandbox_time",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id
