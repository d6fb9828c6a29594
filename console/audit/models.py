from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from console.accounts.models.teams import Team


class AuditEvent(models.Model):
    """Who did what to which resource, when, from where. Never holds a raw secret."""

    team = models.ForeignKey(Team, null=True, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The audit page reads one team's rows newest first, optionally by action or by
        # an actor prefix: each filter has an index that serves it as a range scan.
        indexes = [
            models.Index(fields=["team", "created_at", "id"], name="console_audit_team_time"),
            models.Index(
                fields=["team", "action", "created_at", "id"], name="console_audit_team_action"
            ),
            # varchar_pattern_ops lets PostgreSQL answer LIKE 'prefix%' from the index
            # whatever the database collation (SQLite ignores opclasses).
            models.Index(
                fields=["team", "actor_label"],
                opclasses=["int8_ops", "varchar_pattern_ops"],
                name="console_audit_team_actor",
            ),
        ]
