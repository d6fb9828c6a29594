from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_attempt_id, new_delivery_id, new_webhook_id


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    DEAD_LETTER = "dead_letter"


class Webhook(models.Model):
    """A project's subscription to lifecycle events (docs/webhooks.md). The signing
    secret is kept encrypted (console/webhooks/secrets.py) and never shown again."""

    public_id = models.CharField(max_length=32, unique=True, default=new_webhook_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=2048)
    operations = models.JSONField(default=list)
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    # Deliveries that ended in dead_letter since the last success; past a limit the
    # webhook is disabled (and disabled_reason says why).
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_delivery_status = models.CharField(
        max_length=12, choices=DeliveryStatus.choices, blank=True
    )
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return self.public_id


class Delivery(models.Model):
    """One event for one webhook, however many attempts it takes."""

    public_id = models.CharField(max_length=32, unique=True, default=new_delivery_id)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64)
    # The event as it was sent (also for test events, which have no row of their own).
    event = models.JSONField(default=dict)
    operation = models.CharField(max_length=32)
    status = models.CharField(max_length=12)
    is_test = models.BooleanField(default=False)
    delivery_status = models.CharField(
        max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED
    )
    attempt_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["webhook", "-created_at"], name="console_delivery_log")]

    def __str__(self) -> str:
        return self.public_id


class DeliveryAttempt(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_attempt_id)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    attempt_number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # The start of the receiver's answer, for the console (bounded, never parsed).
    response_excerpt = models.CharField(max_length=1024, blank=True)

    class Meta:
        ordering = ["attempt_number"]

    def __str__(self) -> str:
        return self.public_id
