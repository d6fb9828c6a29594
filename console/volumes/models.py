from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_attachment_id, new_volume_id
from console.keys.models import ApiKey


class Volume(models.Model):
    """Durable storage of a project: a directory tree in the volume store (console/volumes/store.py)."""

    public_id = models.CharField(max_length=32, unique=True, default=new_volume_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(max_length=63)
    # Which store holds it (image | directory) and its size quota when it was made.
    backend = models.CharField(max_length=12)
    max_size_bytes = models.PositiveBigIntegerField()
    created_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="console_volume_unique_name")
        ]

    def __str__(self) -> str:
        return self.public_id


class VolumeAttachment(models.Model):
    """A volume mounted into a sandbox at `mount_path` (its `subpath`, maybe read-only).

    Kept while the sandbox lives (running or paused): every process the sandbox starts
    gets the mount, so a resumed sandbox has it again; a fork copies the rows.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_attachment_id)
    volume = models.ForeignKey(Volume, on_delete=models.CASCADE, related_name="attachments")
    sandbox = models.ForeignKey(
        "console.Sandbox", on_delete=models.CASCADE, related_name="volume_attachments"
    )
    mount_path = models.CharField(max_length=1024)
    subpath = models.CharField(max_length=1024, blank=True)
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sandbox", "mount_path"], name="console_volumeattachment_unique_path"
            )
        ]

    def __str__(self) -> str:
        return self.public_id
