"""Worker jobs for agent deployments: work orphaned by a stopped server, service health,
and service sandbox lifetimes (registered with console.jobs, run by every worker process)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from console.actor import SYSTEM
from console.agents import executor, logs, services
from console.agents.models import (
    RUN_TERMINAL,
    ArtifactStatus,
    RunStatus,
    ServiceStatus,
    VersionStatus,
)
from console.jobs import every_process, on_startup
from console.models import AgentArtifact, AgentRun, AgentService, AgentVersion, Sandbox
from console.sandboxes import service as sandboxes

log = logging.getLogger(__name__)

RENEW_BELOW = timedelta(hours=12)


@on_startup("agent_orphans")
def fail_orphans() -> None:
    """Runs, starts and builds whose server process is gone cannot resume: env values were
    only in that process's memory. Mark them failed, saying why."""
    message = (
        "the server process running this stopped; env values are never stored, so it cannot resume"
    )
    for run in AgentRun.objects.exclude(status__in=RUN_TERMINAL).select_related("version"):
        if not executor.is_orphan(run.runner):
            continue
        AgentRun.objects.filter(pk=run.pk).exclude(status__in=RUN_TERMINAL).update(
            status=RunStatus.FAILED,
            failure_reason=message,
            failure_phase="runtime",
            completed_at=timezone.now(),
        )
        logs.record(
            run, "runtime_failed", message, level="error", metadata={"failure_phase": "runtime"}
        )
    starting = AgentService.objects.filter(status=ServiceStatus.STARTING).select_related("version")
    for service in starting:
        if not executor.is_orphan(service.runner):
            continue
        AgentService.objects.filter(pk=service.pk, generation=service.generation).update(
            status=ServiceStatus.FAILED, failure_reason=message, failure_phase="runtime"
        )
        logs.record(
            service, "service_failed", message, level="error", metadata={"failure_phase": "runtime"}
        )
    building = AgentArtifact.objects.filter(status=ArtifactStatus.BUILDING)
    for artifact in building:
        if not executor.is_orphan(artifact.runner):
            continue
        AgentArtifact.objects.filter(pk=artifact.pk).update(
            status=ArtifactStatus.FAILED, failure_reason=message, completed_at=timezone.now()
        )
        AgentVersion.objects.filter(artifact=artifact, status=VersionStatus.BUILDING).update(
            status=VersionStatus.READY, cache_status="failed", cache_reason=message[:200]
        )


@every_process("agent_service_health", every=5.0)
def watch_services() -> None:
    live = AgentService.objects.filter(
        status__in=(ServiceStatus.READY, ServiceStatus.UNHEALTHY)
    ).select_related("version__deployment", "deployment", "grant")
    for service in list(live[:200]):
        try:
            services.check_health(service)
            _renew_lifetime(service)
        except Exception as exc:
            log.warning("health check of %s failed: %s", service.public_id, exc)


def _renew_lifetime(service: AgentService) -> None:
    sandbox = Sandbox.objects.filter(public_id=service.sandbox_public_id).first()
    if sandbox is None or sandbox.timeout_at is None:
        return
    if sandbox.timeout_at - timezone.now() < RENEW_BELOW:
        sandboxes.set_timeout(sandbox, services.SERVICE_LIFETIME_SECONDS * 1000, actor=SYSTEM)
