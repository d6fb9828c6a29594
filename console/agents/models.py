"""Agent deployments: a named project deployed as versions, run as jobs or started as services.

A version keeps the bundle's manifest and config (env var *names* only, never values);
the uploaded tar itself lives in the artifact store under DATA_DIR. An artifact is a
snapshot of a sandbox after the version's install step, reusable by any version with the
same cache key. Runs and services record the sandbox that backs them by public id, so
the row outlives the sandbox.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import (
    new_agent_artifact_id,
    new_agent_build_id,
    new_agent_run_id,
    new_agent_service_id,
    new_agent_version_id,
    new_deployment_id,
)


class DeploymentMode(models.TextChoices):
    JOB = "job", "Job"
    SERVICE = "service", "Service"


class DeploymentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    DELETED = "deleted", "Deleted"


class VersionStatus(models.TextChoices):
    CREATED = "created", "Created"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    SUPERSEDED = "superseded", "Superseded"


class CachePolicy(models.TextChoices):
    AUTO = "auto", "Auto"
    NO_CACHE = "no_cache", "No cache"
    REBUILD = "rebuild", "Rebuild"


class ArtifactStatus(models.TextChoices):
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    STARTING = "starting", "Starting"
    INSTALLING = "installing", "Installing"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


RUN_TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT)


class ServiceStatus(models.TextChoices):
    STARTING = "starting", "Starting"
    READY = "ready", "Ready"
    UNHEALTHY = "unhealthy", "Unhealthy"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


SERVICE_ACTIVE = (ServiceStatus.STARTING, ServiceStatus.READY, ServiceStatus.UNHEALTHY)


class AgentDeployment(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_deployment_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agent_deployments")
    name = models.CharField(max_length=200)
    mode = models.CharField(max_length=8, choices=DeploymentMode.choices)
    status = models.CharField(
        max_length=8, choices=DeploymentStatus.choices, default=DeploymentStatus.ACTIVE
    )
    description = models.CharField(max_length=2000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    active_version = models.ForeignKey(
        "console.AgentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One live deployment per name in a project; deleted ones free their name.
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=~models.Q(status="deleted"),
                name="console_agent_deployment_live_name",
            )
        ]

    def __str__(self) -> str:
        return self.public_id


class AgentArtifact(models.Model):
    """A sandbox snapshot taken after the install step: what `cache_hit` runs start from."""

    public_id = models.CharField(max_length=32, unique=True, default=new_agent_artifact_id)
    build_id = models.CharField(max_length=32, unique=True, default=new_agent_build_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agent_artifacts")
    cache_key = models.CharField(max_length=64, db_index=True)
    status = models.CharField(
        max_length=8, choices=ArtifactStatus.choices, default=ArtifactStatus.BUILDING
    )
    snapshot = models.ForeignKey(
        "console.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The bundle paths the snapshot holds, so a run of another version removes the stale ones.
    bundle_paths = models.JSONField(default=list, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    # "<host>:<pid>" of the server process executing it: start-up fails only rows whose
    # process is gone (env values lived in its memory), never another live process's work.
    runner = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]


class AgentVersion(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_agent_version_id)
    deployment = models.ForeignKey(
        AgentDeployment, on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=VersionStatus.choices, default=VersionStatus.CREATED
    )
    bundle_digest = models.CharField(max_length=64)
    manifest = models.JSONField(default=dict)
    config = models.JSONField(default=dict)
    cache_policy = models.CharField(
        max_length=8, choices=CachePolicy.choices, default=CachePolicy.AUTO
    )
    cache_key = models.CharField(max_length=64, blank=True)
    cache_status = models.CharField(max_length=12, default="cache_miss")
    cache_reason = models.CharField(max_length=200, blank=True)
    artifact = models.ForeignKey(
        AgentArtifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions"
    )
    bundle_path = models.CharField(max_length=1024, blank=True)
    bundle_size = models.PositiveBigIntegerField(null=True, blank=True)
    file_count = models.PositiveIntegerField(default=0)
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "number"], name="console_agent_version_number"
            )
        ]

    def __str__(self) -> str:
        return self.public_id


class AgentRun(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_agent_run_id)
    deployment = models.ForeignKey(AgentDeployment, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(AgentVersion, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    input = models.JSONField(default=dict, blank=True)
    sandbox_public_id = models.CharField(max_length=32, blank=True)
    process_id = models.IntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    failure_phase = models.CharField(max_length=16, blank=True)
    used_artifact = models.BooleanField(default=False)
    outputs = models.JSONField(default=list, blank=True)
    retain_on_failure = models.BooleanField(default=False)
    retention_seconds = models.PositiveIntegerField(null=True, blank=True)
    retained_until = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # "<host>:<pid>" of the server process executing it: start-up fails only rows whose
    # process is gone (env values lived in its memory), never another live process's work.
    runner = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in RUN_TERMINAL


class AgentService(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_agent_service_id)
    deployment = models.ForeignKey(
        AgentDeployment, on_delete=models.CASCADE, related_name="services"
    )
    version = models.ForeignKey(AgentVersion, on_delete=models.CASCADE, related_name="services")
    status = models.CharField(
        max_length=10, choices=ServiceStatus.choices, default=ServiceStatus.STARTING
    )
    port = models.PositiveIntegerField()
    sandbox_public_id = models.CharField(max_length=32, blank=True)
    process_id = models.IntegerField(null=True, blank=True)
    # The preview grant behind public_url; its tokens are signed on demand, never stored.
    grant = models.ForeignKey(
        "console.PreviewGrant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    readiness_status = models.JSONField(null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    failure_phase = models.CharField(max_length=16, blank=True)
    # Bumped by every start/restart: a superseded start thread stops touching the row.
    generation = models.PositiveIntegerField(default=0)
    # "<host>:<pid>" of the server process executing it: start-up fails only rows whose
    # process is gone (env values lived in its memory), never another live process's work.
    runner = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.public_id


class LogLevel(models.TextChoices):
    TRACE = "trace", "Trace"
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARN = "warn", "Warn"
    ERROR = "error", "Error"


class AgentLogEvent(models.Model):
    """One line of a run's or service's life: a platform step or a line of stdout/stderr."""

    deployment = models.ForeignKey(
        AgentDeployment, on_delete=models.CASCADE, related_name="log_events"
    )
    run = models.ForeignKey(
        AgentRun, null=True, blank=True, on_delete=models.CASCADE, related_name="log_events"
    )
    service = models.ForeignKey(
        AgentService, null=True, blank=True, on_delete=models.CASCADE, related_name="log_events"
    )
    version_public_id = models.CharField(max_length=32, blank=True)
    level = models.CharField(max_length=5, choices=LogLevel.choices, default=LogLevel.INFO)
    event_type = models.CharField(max_length=40)
    source = models.CharField(max_length=16, blank=True)  # platform | stdout | stderr
    message = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    sandbox_public_id = models.CharField(max_length=32, blank=True)
    process_id = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["run", "id"], name="console_agentlog_run"),
            models.Index(fields=["service", "id"], name="console_agentlog_service"),
        ]
