"""Service instances: start, readiness, a public URL, health, stop and restart.

The URL is a preview grant (a signed link) for the service sandbox's port: whoever holds
the URL may open it until the grant expires (24 h at most; `agent url` issues a fresh
one), is revoked, or the service stops. A restart keeps the sandbox, so the URL stays
the same: the old process is killed, the new version's bundle replaces the workdir,
install runs, and the entrypoint starts again (docs/agents.md).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from console import tokens
from console.actor import SYSTEM
from console.agents import config as agent_config
from console.agents import executor, logs, steps
from console.agents.models import SERVICE_ACTIVE
from console.models import (
    AgentService,
    AgentVersion,
    PreviewGrant,
    Sandbox,
    SandboxStatus,
    ServiceStatus,
)
from console.previews import service as previews
from console.previews.api import _probe, _route
from console.sandboxes import service as sandboxes

# Service sandboxes live as long as the service; the health job renews this lifetime.
SERVICE_LIFETIME_SECONDS = 24 * 3600
INSTALL_TIMEOUT_SECONDS = 1800
PROBE_INTERVAL = 0.5
FAILED_RETENTION_SECONDS = 3600


def _current(service: AgentService, generation: int) -> bool:
    return AgentService.objects.filter(pk=service.pk, generation=generation).exists()


def _update(service: AgentService, generation: int, **fields: Any) -> bool:
    changed = AgentService.objects.filter(pk=service.pk, generation=generation).update(
        updated_at=timezone.now(), **fields
    )
    service.refresh_from_db()
    return bool(changed)


def launch(service_pk: int, generation: int, envs: dict[str, str]) -> None:
    """Bring generation `generation` of the service up: in its existing sandbox when it still
    runs (restart), else in a new one. A newer generation makes this one give up."""
    service = AgentService.objects.select_related("deployment__project", "version__deployment").get(
        pk=service_pk
    )
    version: AgentVersion = service.version
    config = version.config
    workdir = config.get("workdir", "/workspace/project")
    sandbox = _live_sandbox(service.sandbox_public_id)
    phase = "sandbox"
    try:
        if sandbox is not None:
            if service.process_id:
                steps.kill(sandbox, service.process_id)
            logs.record(service, "service_restarting", f"restarting in sandbox {sandbox.public_id}")
            steps.unpack_bundle(sandbox, version)
            artifact = None
        else:
            sandbox, artifact = steps.create_sandbox_for(
                version,
                lifetime_seconds=SERVICE_LIFETIME_SECONDS,
                metadata={
                    "agent_deployment": service.deployment.public_id,
                    "agent_service": service.public_id,
                },
                note=lambda message: logs.record(
                    service, "artifact_unusable", message, level="warn"
                ),
            )
            if not _update(service, generation, sandbox_public_id=sandbox.public_id, grant=None):
                steps.destroy(sandbox.public_id, "service start superseded")
                return
            logs.record(
                service,
                "sandbox_created",
                f"sandbox {sandbox.public_id} created"
                + (f" from artifact {artifact.public_id} (cache hit)" if artifact else ""),
            )
            phase = "bundle"
            steps.unpack_bundle(
                sandbox, version, stale_paths=artifact.bundle_paths if artifact else None
            )
        process_env = {
            **envs,
            "PORT": str(service.port),
            "NULLSPACE_SERVICE_ID": service.public_id,
            "NULLSPACE_DEPLOYMENT_ID": service.deployment.public_id,
            "NULLSPACE_VERSION_ID": version.public_id,
        }
        secrets = list(envs.values())
        install = config.get("install")
        if install and artifact is None:
            phase = "install"
            logs.record(service, "install_started", f"install: {install}")
            pid = steps.start(sandbox, install, cwd=workdir, envs=process_env)
            result = steps.follow(
                sandbox,
                pid,
                logs.LineSink(service, secrets, pid),
                deadline=time.monotonic() + INSTALL_TIMEOUT_SECONDS,
                should_stop=lambda: not _current(service, generation),
            )
            if result.stopped:
                return
            if result.exit_code != 0:
                why = (
                    "timed out"
                    if result.exit_code is None
                    else f"exited with code {result.exit_code}"
                )
                raise steps.StepFailed("install", f"install {why}")
        phase = "runtime"
        pid = steps.start(sandbox, config["entrypoint"], cwd=workdir, envs=process_env)
        if not _update(service, generation, process_id=pid):
            steps.kill(sandbox, pid)
            return
        logs.record(
            service, "entrypoint_started", f"entrypoint: {config['entrypoint']}", process_id=pid
        )
        _follow_in_background(service, generation, sandbox, pid, secrets)
        phase = "readiness"
        _await_readiness(service, generation, sandbox)
    except steps.StepFailed as failure:
        _failed(service, generation, failure.phase, failure.message)
    except Exception as exc:
        _failed(service, generation, phase, f"internal error: {exc}")
        raise


def _live_sandbox(public_id: str) -> Sandbox | None:
    if not public_id:
        return None
    return (
        Sandbox.objects.select_related("project")
        .filter(public_id=public_id, status=SandboxStatus.RUNNING)
        .first()
    )


def _await_readiness(service: AgentService, generation: int, sandbox: Sandbox) -> None:
    spec = agent_config.readiness(service.version.config)
    deadline = time.monotonic() + spec["timeout_seconds"]
    reason: str | None = "not probed yet"
    while time.monotonic() < deadline:
        if not _current(service, generation):
            return
        service.refresh_from_db(fields=["status"])
        if service.status not in SERVICE_ACTIVE:
            return  # the process exited (the follower marked it failed) or it was stopped
        reason = probe(sandbox, service.port, spec)
        if reason is None:
            grant = ensure_grant(service)
            _update(
                service,
                generation,
                status=ServiceStatus.READY,
                readiness_status=_readiness_status(spec, True, None),
                failure_reason="",
                failure_phase="",
                grant=grant,
            )
            logs.record(service, "service_ready", f"ready on port {service.port}")
            return
        time.sleep(PROBE_INTERVAL)
    _failed(
        service,
        generation,
        "readiness",
        f"readiness ({spec['type']}) did not pass within {spec['timeout_seconds']} s: {reason}. "
        "Bind the server to 0.0.0.0 on the configured port.",
    )


def probe(sandbox: Sandbox, port: int, spec: dict[str, Any]) -> str | None:
    address, why = _route(sandbox, port)
    if address is None:
        return why
    return _probe(address, spec["type"], spec.get("path"), port)


def _readiness_status(spec: dict[str, Any], ready: bool, reason: str | None) -> dict[str, Any]:
    return {
        "type": spec["type"],
        "path": spec.get("path"),
        "ready": ready,
        "reason": reason,
        "checked_at": timezone.now().isoformat(),
    }


def _follow_in_background(
    service: AgentService, generation: int, sandbox: Sandbox, pid: int, secrets: list[str]
) -> None:
    """The entrypoint's output as log events for as long as it runs (its own thread: a
    service holds no slot of the bounded run pool). Its exit fails the service."""

    def follow() -> None:
        close_old_connections()
        try:
            result = steps.follow(
                sandbox,
                pid,
                logs.LineSink(service, secrets, pid),
                deadline=time.monotonic() + 10 * 365 * 24 * 3600,
                should_stop=lambda: False,
            )
            service.refresh_from_db()
            if service.generation == generation and service.status in SERVICE_ACTIVE:
                _failed(
                    service,
                    generation,
                    "runtime",
                    f"the service process exited with code {result.exit_code}",
                )
        finally:
            close_old_connections()

    threading.Thread(target=follow, daemon=True, name=f"agent-service-{service.public_id}").start()


def _failed(service: AgentService, generation: int, phase: str, message: str) -> None:
    if not _update(
        service,
        generation,
        status=ServiceStatus.FAILED,
        failure_reason=message[:500],
        failure_phase=phase,
        stopped_at=timezone.now(),
    ):
        return
    event = (
        "service_start_failed"
        if phase in ("sandbox", "bundle", "install", "readiness")
        else "service_failed"
    )
    logs.record(service, event, message, level="error", metadata={"failure_phase": phase})
    _keep_for_debugging(service)


def _keep_for_debugging(service: AgentService) -> None:
    """A failed service's sandbox stays for `agent shell --service` a while, then goes
    (it would otherwise hold a quota slot for its whole 24 h lifetime)."""
    sandbox = _live_sandbox(service.sandbox_public_id)
    if sandbox is None:
        return
    if service.process_id:
        steps.kill(sandbox, service.process_id)
    sandboxes.set_timeout(sandbox, FAILED_RETENTION_SECONDS * 1000, "destroy", actor=SYSTEM)
    logs.record(
        service,
        "sandbox_retained",
        f"sandbox {sandbox.public_id} kept for debugging for {FAILED_RETENTION_SECONDS} s",
    )


# --- the URL ----------------------------------------------------------------------------------


def ensure_grant(service: AgentService) -> PreviewGrant | None:
    """The service's live grant, a new one when it has none (or it expired or was revoked)."""
    permissions = service.version.config.get("permissions") or {}
    if permissions.get("public_url") is False:
        return None
    grant = service.grant
    if (
        grant is not None
        and grant.status == "active"
        and grant.sandbox.public_id == service.sandbox_public_id
    ):
        return grant
    sandbox = _live_sandbox(service.sandbox_public_id)
    if sandbox is None:
        return None
    # The service's own link, kept by background work: it names no person or key.
    grant, _raw = previews.create_grant(
        sandbox, service.port, expires_in_seconds=previews.MAX_TTL_SECONDS, actor=SYSTEM
    )
    AgentService.objects.filter(pk=service.pk).update(grant=grant)
    service.grant = grant
    return grant


def public_url(service: AgentService, *, issue: bool = False) -> str | None:
    """The signed link (tokens are re-signed from the grant id, never stored)."""
    if service.status not in SERVICE_ACTIVE:
        return None
    grant = ensure_grant(service) if issue else service.grant
    if grant is None or grant.status != "active":
        return None
    raw = {
        kind: tokens.sign_preview_token(grant.public_id, kind_sign) for kind, kind_sign in _KINDS
    }
    url, _ws = previews.preview_urls(grant.sandbox, grant.port, raw)
    return url


_KINDS = ((previews.HTTP_PORT, tokens.DIRECT_HTTP), (previews.WEBSOCKET_PORT, tokens.DIRECT_WS))


# --- stop, restart, health ----------------------------------------------------------------------


def stop(service: AgentService, *, reason: str | None, retain_sandbox: bool) -> AgentService:
    if service.status in (ServiceStatus.STOPPED,):
        return service
    generation = service.generation + 1
    AgentService.objects.filter(pk=service.pk).update(
        generation=generation, status=ServiceStatus.STOPPING, updated_at=timezone.now()
    )
    service.refresh_from_db()
    if service.grant is not None:
        previews.revoke_grant(service.grant, actor=SYSTEM)
    if service.process_id and service.sandbox_public_id:
        steps.kill(service.sandbox_public_id, service.process_id)
    if service.sandbox_public_id and not retain_sandbox:
        steps.destroy(service.sandbox_public_id, "agent service stopped")
    AgentService.objects.filter(pk=service.pk, generation=generation).update(
        status=ServiceStatus.STOPPED, stopped_at=timezone.now(), updated_at=timezone.now()
    )
    service.refresh_from_db()
    kept = f"; sandbox {service.sandbox_public_id} kept" if retain_sandbox else ""
    logs.record(service, "service_stopped", f"stopped{': ' + reason if reason else ''}{kept}")
    return service


def restart(
    service: AgentService, version: AgentVersion, envs: dict[str, str], reason: str | None
) -> int:
    """Point the service at `version` and bump its generation; returns the generation to launch."""
    generation = service.generation + 1
    AgentService.objects.filter(pk=service.pk).update(
        generation=generation,
        version=version,
        runner=executor.runner_id(),
        status=ServiceStatus.STARTING,
        failure_reason="",
        failure_phase="",
        readiness_status=None,
        stopped_at=None,
        started_at=timezone.now(),
        updated_at=timezone.now(),
    )
    service.refresh_from_db()
    logs.record(
        service,
        "service_restart_requested",
        f"restart with version {version.number}{': ' + reason if reason else ''}",
    )
    return generation


def check_health(service: AgentService) -> None:
    """One health probe of a ready or unhealthy service (the worker job calls it)."""
    sandbox = _live_sandbox(service.sandbox_public_id)
    generation = service.generation
    if sandbox is None:
        _failed(service, generation, "runtime", "the service sandbox is gone")
        return
    spec = agent_config.readiness(service.version.config)
    reason = probe(sandbox, service.port, spec)
    healthy = reason is None
    status = ServiceStatus.READY if healthy else ServiceStatus.UNHEALTHY
    if status != service.status:
        changed = AgentService.objects.filter(
            pk=service.pk, generation=generation, status=service.status
        ).update(status=status, readiness_status=_readiness_status(spec, healthy, reason))
        if changed:
            service.refresh_from_db()
            logs.record(
                service,
                "service_healthy" if healthy else "service_unhealthy",
                "health check passed" if healthy else f"health check failed: {reason}",
                level="info" if healthy else "warn",
            )
