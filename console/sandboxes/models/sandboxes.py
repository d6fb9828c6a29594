from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_sandbox_id
from console.keys.models import ApiKey


class SandboxStatus(models.TextChoices):
    CREATING = "creating", "Creating"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    DESTROYED = "destroyed", "Destroyed"
    ERROR = "error", "Error"


class TimeoutAction(models.TextChoices):
    DESTROY = "destroy", "Destroy"
    HIBERNATE = "hibernate", "Pause (hibernate)"


LIVE_STATUSES = (SandboxStatus.CREATING, SandboxStatus.RUNNING, SandboxStatus.PAUSED)


class SandboxQuerySet(models.QuerySet["Sandbox"]):
    def live(self) -> SandboxQuerySet:
        return self.filter(status__in=LIVE_STATUSES)

    def visible(self) -> SandboxQuerySet:
        """Not waiting in a warm pool: those are hidden until checked out (docs/warm-pools.md)."""
        return self.filter(warm_pool__isnull=True)


class Sandbox(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_sandbox_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sandboxes")
    template = models.CharField(max_length=200, default="base")
    # A custom template's build this sandbox runs on (None: a builtin template).
    template_build = models.ForeignKey(
        "console.TemplateBuild",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sandboxes",
    )
    status = models.CharField(
        max_length=12, choices=SandboxStatus.choices, default=SandboxStatus.CREATING, db_index=True
    )
    vcpus = models.PositiveIntegerField(default=2)
    memory_mb = models.PositiveIntegerField(default=512)
    disk_mb = models.PositiveIntegerField(null=True, blank=True)
    envs = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    cwd = models.CharField(max_length=1024, default="/workspace")
    network = models.JSONField(default=dict, blank=True)
    internet_access = models.BooleanField(default=True)
    timeout_ms = models.PositiveBigIntegerField(default=300_000)
    timeout_at = models.DateTimeField(null=True, blank=True, db_index=True)
    timeout_action = models.CharField(
        max_length=10, choices=TimeoutAction.choices, default=TimeoutAction.DESTROY
    )
    auto_resume = models.BooleanField(default=False)
    # A pause/resume/fork in flight ("" when idle). Claimed with a conditional UPDATE so
    # two concurrent transitions of one sandbox never both run.
    transition = models.CharField(max_length=12, blank=True, default="")
    transition_started_at = models.DateTimeField(null=True, blank=True)
    # Traffic access token for private previews: shown on create, stored hashed.
    traffic_token_prefix = models.CharField(max_length=24, blank=True)
    traffic_token_digest = models.CharField(max_length=64, blank=True)
    # The snapshot a paused sandbox resumes from (contract: required while paused).
    pause_snapshot = models.ForeignKey(
        "console.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_snapshot_public_id = models.CharField(max_length=32, blank=True)
    forked_from_public_id = models.CharField(max_length=32, blank=True)
    # Whatever the runtime driver needs to find the sandbox again (netns, address...).
    runtime_state = models.JSONField(default=dict, blank=True)
    # The driver's name for the sandbox ("" = public_id). A sandbox resumed from a
    # hibernated one gets a new public id but keeps running in its predecessor's runtime.
    runtime_name = models.CharField(max_length=32, blank=True)
    # The runtime instance (server) that owns the sandbox: only it reconciles it and acts
    # on its timeouts ("" = made before owners were recorded).
    owner = models.CharField(max_length=100, blank=True, db_index=True)
    # The process making it while `creating` ("<pid>:<start time>"), so that its owner can
    # tell an interrupted create from one still under way.
    create_process = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # The warm pool holding this sandbox while it waits for a checkout (docs/warm-pools.md);
    # such a sandbox is hidden from every list and lookup until a create checks it out.
    warm_pool = models.ForeignKey(
        "console.WarmPool",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inventory",
    )
    # The pool's generation it was made for (its template and size then).
    warm_pool_generation = models.PositiveIntegerField(null=True, blank=True)
    created_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    objects = SandboxQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "status"], name="console_sandbox_proj_status"),
            models.Index(fields=["project", "created_at", "id"], name="console_sandbox_proj_time"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def runtime_id(self) -> str:
        """The id every runtime driver call takes."""
        return self.runtime_name or self.public_id

    @property
    def host_label(self) -> str:
        """The id made DNS-safe for preview hosts (`sb_ab12` -> `sb-ab12`)."""
        return self.public_id.replace("_", "-")

    @property
    def allow_public_traffic(self) -> bool:
        return bool((self.network or {}).get("allow_public_traffic", True))

    @property
    def mask_request_host(self) -> str:
        return str((self.network or {}).get("mask_request_host") or "")

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES
