"""Worker jobs for agent deployments: work orphaned by a stopped server, service health,
and service sandbox lifetimes (registered with console.worker)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from console import sandboxes
from console.agents import logs, services
from console.models import ActorKind, AgentRun, AgentService, AgentVersion, Sandbox
from console.models.agents import (
    RUN_TERMINAL,
    ArtifactStatus,
    RunStatus,
    ServiceStatus,
    VersionStatus,
)
from console.worker import job, on_startup

log = logging.getLogger(__name__)

RENEW_BELOW = timedelta(hours=12)


@on_startup("agent_orphans")
def fail_orphans() -> None:
    """Runs, starts and builds that a stopped server was executing cannot resume: env values
    were only in that process's memory. Mark them failed, saying why."""
    message = (
        "the server restarted during this step; env values are never stored, so it cannot resume"
    )
    for run in AgentRun.objects.exclude(status__in=RUN_TERMINAL).select_related("version"):
        AgentRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED,
            failure_reason=message,
            failure_phase="runtime",
            completed_at=timezone.now(),
        )
        logs.record(
            run, "runtime_failed", message, level="error", metadata={"failure_phase": "runtime"}
        )
    for service in AgentService.objects.filter(status=ServiceStatus.STARTING).select_related(
        "version"
    ):
        AgentService.objects.filter(pk=service.pk).update(
            status=ServiceStatus.FAILED, failure_reason=message, failure_phase="runtime"
        )
        logs.record(
            service, "service_failed", message, level="error", metadata={"failure_phase": "runtime"}
        )
    for version in AgentVersion.objects.filter(status=VersionStatus.BUILDING).select_related(
        "artifact"
    ):
        if version.artifact_id:
            version.artifact.__class__.objects.filter(pk=version.artifact_id).update(
                status=ArtifactStatus.FAILED, failure_reason=message
            )
        AgentVersion.objects.filter(pk=version.pk).update(
            status=VersionStatus.READY, cache_status="failed", cache_reason=message[:200]
        )


@job("agent_service_health", every=5.0)
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
        sandboxes.set_timeout(
            sandbox, services.SERVICE_LIFETIME_SECONDS * 1000, actor_kind=ActorKind.SYSTEM
        )
