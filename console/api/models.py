from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.keys.models import ApiKey


class IdempotencyRecord(models.Model):
    """The first answer to a request carrying an Idempotency-Key, replayed on retries."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    route = models.CharField(max_length=300)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "key", "route"], name="console_idempotency_unique"
            )
        ]
