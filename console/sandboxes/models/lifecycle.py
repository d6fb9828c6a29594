from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project


class Operation(models.TextChoices):
    CREATE = "create"
    DESTROY = "destroy"
    TIMEOUT_UPDATED = "timeout_updated"
    TIMEOUT_EXPIRED = "timeout_expired"
    HIBERNATE = "hibernate"
    SNAPSHOT_CREATED = "snapshot_created"
    RESUME_FROM_SNAPSHOT = "resume_from_snapshot"
    FORK = "fork"
    RECONCILE = "reconcile"


class EventStatus(models.TextChoices):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ActorKind(models.TextChoices):
    USER = "user"
    SYSTEM = "system"
    RECONCILE = "reconcile"


class LifecycleEvent(models.Model):
    """One state change of a sandbox or snapshot, as the contract's section 7.2 shapes it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    seq = models.BigIntegerField(default=0, db_index=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="lifecycle_events")
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    audience = models.CharField(max_length=10, default="customer")
    operation = models.CharField(max_length=32, choices=Operation.choices)
    status = models.CharField(max_length=12, choices=EventStatus.choices)
    actor_kind = models.CharField(max_length=12, choices=ActorKind.choices, default=ActorKind.USER)
    sandbox_id = models.CharField(max_length=32, blank=True, db_index=True)
    snapshot_id = models.CharField(max_length=32, blank=True)
    source_sandbox_id = models.CharField(max_length=32, blank=True)
    target_sandbox_id = models.CharField(max_length=32, blank=True)
    user_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["project", "seq", "id"], name="console_event_proj_seq"),
            models.Index(
                fields=["project", "sandbox_id", "seq", "id"], name="console_event_sandbox_seq"
            ),
            # A sandbox's own list also matches it as a fork's source or target.
            models.Index(
                fields=["project", "source_sandbox_id", "seq"], name="console_event_source_seq"
            ),
            models.Index(
                fields=["project", "target_sandbox_id", "seq"], name="console_event_target_seq"
            ),
        ]
