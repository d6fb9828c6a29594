"""Custom sandbox templates (docs/templates.md): a team's named template, its builds,
tags that point at builds, aliases (old names after a rename) and name claims.

A build records its request without secret values (those travel encrypted in
`secrets_sealed` until the build ends, then are dropped), its layer stack (ids in the
runtime's layer store, bottom first) and its log entries, numbered from 0.
The builtin templates (`nullspace/base` and the other builtin images) have no rows.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.accounts.models.teams import Team
from console.ids import new_public_id


def new_template_id() -> str:
    return new_public_id("tmpl_")


def new_template_build_id() -> str:
    return new_public_id("tb_")


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    PUBLIC = "public", "Public"


class BuildStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    ERROR = "error", "Error"
    CANCELLED = "cancelled", "Cancelled"


BUILD_TERMINAL = (BuildStatus.READY, BuildStatus.ERROR, BuildStatus.CANCELLED)


class Template(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_template_id)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="sandbox_templates")
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True, default="")
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    default_tag = models.CharField(max_length=100, default="default")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="template_name_per_team")
        ]


class TemplateBuild(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_template_build_id)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="builds")
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True)
    tags = models.JSONField(default=list)
    status = models.CharField(
        max_length=12, choices=BuildStatus.choices, default=BuildStatus.WAITING
    )
    source_type = models.CharField(max_length=20, default="declarative")
    build_backend = models.CharField(max_length=20, default="native")
    request = models.JSONField(default=dict)  # secret values removed
    secrets_sealed = models.TextField(blank=True, default="")  # Fernet, until the build ends
    source_digest = models.CharField(max_length=80, blank=True, default="")
    context_digest = models.CharField(max_length=80, blank=True, default="")
    dockerfile_digest = models.CharField(max_length=80, blank=True, default="")
    # Resolved at build time: the builtin image, its suite, and the layer stack (bottom first).
    base_image = models.CharField(max_length=40, default="base")
    image_suite = models.CharField(max_length=20, default="bookworm")
    layers = models.JSONField(default=list)
    cache_key = models.CharField(max_length=64, blank=True, default="")  # the last step's key
    runtime_defaults = models.JSONField(default=dict)
    oci_metadata = models.JSONField(null=True, blank=True)
    build_config = models.JSONField(default=dict)
    cache_summary = models.JSONField(default=dict)
    error = models.TextField(blank=True, default="")
    error_detail = models.JSONField(null=True, blank=True)
    failure_phase = models.CharField(max_length=20, blank=True, default="")
    triggered_by = models.CharField(max_length=80, blank=True, default="")
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.CharField(max_length=80, blank=True, default="")
    cancellation_reason = models.CharField(max_length=200, blank=True, default="")
    sandbox_id = models.CharField(max_length=60, blank=True, default="")  # the running step's
    steps_total = models.IntegerField(default=0)
    cache_hits = models.IntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["template", "-id"], name="tmpl_build_recent")]


class TemplateTag(models.Model):
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="tag_rows")
    tag = models.CharField(max_length=100)
    build = models.ForeignKey(TemplateBuild, on_delete=models.CASCADE, related_name="tag_rows")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["template", "tag"], name="template_tag_unique")
        ]


class TemplateAlias(models.Model):
    """An older name of a template (kept by rename); resolves like the name did."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="template_aliases")
    alias = models.CharField(max_length=100)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="aliases")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "alias"], name="template_alias_unique")
        ]


class TemplateClaim(models.Model):
    """A reserved template name; the token is shown once and kept only as a digest."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="template_claims")
    name = models.CharField(max_length=100)
    token_digest = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)


class TemplateBuildLog(models.Model):
    build = models.ForeignKey(TemplateBuild, on_delete=models.CASCADE, related_name="log_rows")
    offset = models.IntegerField()
    timestamp = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=12)
    level = models.CharField(max_length=8)
    message = models.TextField()
    phase = models.CharField(max_length=40, blank=True, default="")
    step_index = models.IntegerField(null=True, blank=True)
    extra = models.JSONField(default=dict)  # cache_*, error_detail, result

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["build", "offset"], name="template_log_offset")
        ]
