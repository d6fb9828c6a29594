from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"


class Job(models.Model):
    """One unit of background work (docs/jobs.md). A finished one-shot job is deleted;
    a periodic job keeps one row (its `unique_key`) that goes back to `queued`."""

    kind = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=JobStatus.choices, default=JobStatus.QUEUED)
    run_after = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    last_error = models.CharField(max_length=500, blank=True)
    # Who holds a running job, and when it last said it was alive.
    worker = models.CharField(max_length=96, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    unique_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["status", "run_after"], name="console_job_due")]

    def __str__(self) -> str:
        return f"{self.kind}#{self.pk}"
