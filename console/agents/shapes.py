"""The contract's JSON shapes for deployments, versions, runs, services (api-contract 6.4).

`cache_summary` and `build_summary` are STRICT on the client (built with Cls(**json)),
so they carry exactly the keys it knows.
"""

from __future__ import annotations

from typing import Any

from console.agents import config as agent_config
from console.models import AgentDeployment, AgentRun, AgentService, AgentVersion
from console.timefmt import iso


def deployment_to_dict(deployment: AgentDeployment) -> dict[str, Any]:
    active = deployment.active_version
    return {
        "id": deployment.public_id,
        "name": deployment.name,
        "mode": deployment.mode,
        "status": deployment.status,
        "description": deployment.description or None,
        "metadata": deployment.metadata or {},
        "active_version_id": active.public_id if active else None,
        "created_at": iso(deployment.created_at),
        "updated_at": iso(deployment.updated_at),
        "deleted_at": iso(deployment.deleted_at),
    }


def cache_summary(version: AgentVersion) -> dict[str, Any]:
    artifact = version.artifact
    ready = bool(artifact and artifact.status == "ready")
    return {
        "enabled": version.cache_status not in ("disabled", "bypassed"),
        "policy": version.cache_policy,
        "status": version.cache_status,
        "artifact_ready": ready,
        "reason": version.cache_reason or None,
        "build_id": artifact.build_id if artifact else None,
        "cache_key_digest": version.cache_key or None,
        "artifact_id": artifact.public_id if artifact else None,
        "updated_at": iso(version.updated_at),
    }


def build_summary(version: AgentVersion) -> dict[str, Any] | None:
    artifact = version.artifact
    if artifact is None:
        return None
    return {
        "build_id": artifact.build_id,
        "status": artifact.status,
        "artifact_ready": artifact.status == "ready",
        "artifact_id": artifact.public_id,
        "size_bytes": artifact.size_bytes,
        "failure_reason": artifact.failure_reason or None,
        "started_at": iso(artifact.started_at),
        "completed_at": iso(artifact.completed_at),
    }


def version_to_dict(version: AgentVersion) -> dict[str, Any]:
    config = version.config
    service = config.get("service") or {}
    is_service = version.deployment.mode == "service"
    return {
        "id": version.public_id,
        "deployment_id": version.deployment.public_id,
        "version_number": version.number,
        "status": version.status,
        "bundle_digest": version.bundle_digest,
        "bundle_manifest": version.manifest,
        "config": config,
        "template": config.get("template", "base"),
        "workdir": config.get("workdir", "/workspace/project"),
        "install_command": config.get("install"),
        "entrypoint_command": config.get("entrypoint"),
        "service_port": service.get("port") if is_service else None,
        "readiness_config": agent_config.readiness(config) if is_service else None,
        "env_spec": agent_config.env_spec(config),
        "resource_config": config.get("resources") or {},
        "debug_config": config.get("debug") or {},
        "cache_policy": version.cache_policy,
        "cache_summary": cache_summary(version),
        "build_summary": build_summary(version),
        "failure_reason": version.failure_reason or None,
        "created_at": iso(version.created_at),
        "ready_at": iso(version.ready_at),
    }


def run_to_dict(run: AgentRun) -> dict[str, Any]:
    return {
        "id": run.public_id,
        "deployment_id": run.deployment.public_id,
        "version_id": run.version.public_id,
        "mode": "job",
        "status": run.status,
        "input": run.input or {},
        "sandbox_id": run.sandbox_public_id or None,
        "process_id": run.process_id,
        "exit_code": run.exit_code,
        "failure_reason": run.failure_reason or None,
        "output_manifest": output_manifest(run),
        "started_at": iso(run.started_at),
        "completed_at": iso(run.completed_at),
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "idempotency_key": run.idempotency_key or None,
    }


def output_manifest(run: AgentRun) -> dict[str, Any] | None:
    if not run.is_terminal:
        return None
    return {
        "sandbox_id": run.sandbox_public_id or None,
        "configured_paths": agent_config.output_paths(run.version.config),
        "count": len(run.outputs or []),
        "retained_until": iso(run.retained_until),
    }


def service_to_dict(service: AgentService, public_url: str | None) -> dict[str, Any]:
    return {
        "id": service.public_id,
        "deployment_id": service.deployment.public_id,
        "version_id": service.version.public_id,
        "status": service.status,
        "port": service.port,
        "sandbox_id": service.sandbox_public_id or None,
        "process_id": service.process_id,
        "public_url": public_url,
        "readiness_status": service.readiness_status,
        "failure_reason": service.failure_reason or None,
        "started_at": iso(service.started_at),
        "stopped_at": iso(service.stopped_at),
        "created_at": iso(service.created_at),
        "updated_at": iso(service.updated_at),
        "idempotency_key": service.idempotency_key or None,
    }
