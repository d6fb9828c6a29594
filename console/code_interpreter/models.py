"""The code interpreter (docs/code-interpreter.md): contexts, runs and artifacts.

A context is a Jupyter kernel in a sandbox; its row keeps the runtime's handle of the
kernel process and where its connection file lies inside the sandbox. The kernel's
signing key is never stored here: it stays in that file, inside the sandbox, and is
read when a client connects. A run is one execution of code in a context, whether
streamed (`code/execute`) or started in the background (`code/runs`). An artifact is a
file (or a displayed image) an execution produced, copied out of the sandbox.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_code_artifact_id, new_code_context_id, new_code_run_id
from console.sandboxes.models.sandboxes import Sandbox


class CodeContext(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_code_context_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="code_contexts")
    language = models.CharField(max_length=32, default="python")
    cwd = models.CharField(max_length=1024)
    # The context runs without --context use; one per sandbox.
    is_default = models.BooleanField(default=False)
    # The runtime's handle of the kernel process (0: not started yet, or gone).
    kernel_pid = models.BigIntegerField(default=0)
    connection_file = models.CharField(max_length=1024, blank=True)
    kernel_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sandbox"],
                condition=models.Q(is_default=True),
                name="console_codecontext_one_default",
            )
        ]

    def __str__(self) -> str:
        return self.public_id


class CodeRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


CODE_RUN_TERMINAL = (CodeRunStatus.SUCCEEDED, CodeRunStatus.FAILED, CodeRunStatus.CANCELLED)


class CodeRun(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_code_run_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="code_runs")
    context_public_id = models.CharField(max_length=32)
    status = models.CharField(
        max_length=12, choices=CodeRunStatus.choices, default=CodeRunStatus.QUEUED
    )
    code = models.TextField()
    # Env values may be secrets: kept only until the run starts.
    pending_envs = models.JSONField(default=dict, blank=True)
    timeout_secs = models.PositiveIntegerField()
    background = models.BooleanField(default=False)
    execution = models.JSONField(null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.public_id


class CodeArtifact(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_code_artifact_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="code_artifacts")
    context_public_id = models.CharField(max_length=32)
    run = models.ForeignKey(
        CodeRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts"
    )
    execution_count = models.IntegerField(null=True, blank=True)
    kind = models.CharField(max_length=16)  # file | image
    mime_type = models.CharField(max_length=200)
    name = models.CharField(max_length=255)
    path = models.CharField(max_length=4096, blank=True)  # the sandbox path of a file
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.public_id
