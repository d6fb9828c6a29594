from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.teams import Team
from console.ids import new_project_id


class ProjectQuerySet(models.QuerySet["Project"]):
    def for_user(self, user) -> ProjectQuerySet:
        return self.filter(team__memberships__user=user)


class Project(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_project_id)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60)
    # Quotas; null means the deployment-wide default from settings.
    max_running_sandboxes = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="console_project_unique_slug")
        ]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.slug}"

    @property
    def running_sandbox_limit(self) -> int:
        from django.conf import settings

        return self.max_running_sandboxes or settings.MAX_RUNNING_SANDBOXES
