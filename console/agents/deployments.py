"""Deployments and versions: create or reuse by name, record versions, accept bundles,
create runs and services, delete. The /v1 views and the console call these."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from console.agents import artifacts, bundles, executor, outputs, runs, services, steps
from console.agents import config as agent_config
from console.agents.models import (
    RUN_TERMINAL,
    SERVICE_ACTIVE,
    DeploymentStatus,
    ServiceStatus,
    VersionStatus,
)
from console.errors import DomainError
from console.models import (
    AgentArtifact,
    AgentDeployment,
    AgentRun,
    AgentService,
    AgentVersion,
    Project,
)

MAX_NAME = 200
MAX_INPUT_BYTES = 1024 * 1024
MAX_ENVS = 200
MAX_ENV_VALUE = 32 * 1024
MAX_RETENTION_SECONDS = 7 * 24 * 3600


def get_deployment(project: Project, public_id: str) -> AgentDeployment:
    deployment = (
        AgentDeployment.objects.select_related("active_version")
        .filter(project=project, public_id=public_id)
        .exclude(status=DeploymentStatus.DELETED)
        .first()
    )
    if deployment is None:
        raise DomainError("not_found", f"Agent deployment {public_id} not found")
    return deployment


def create_deployment(
    project: Project, *, name: Any, mode: Any, description: Any, metadata: Any
) -> AgentDeployment:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise DomainError(
            "invalid_request", f"name must be a non-empty string of at most {MAX_NAME} characters"
        )
    mode = agent_config.check_mode(mode)
    if description is not None and (not isinstance(description, str) or len(description) > 2000):
        raise DomainError(
            "invalid_request", "description must be a string of at most 2000 characters"
        )
    if metadata is not None and not isinstance(metadata, dict):
        raise DomainError("invalid_request", "metadata must be a JSON object")
    try:
        with transaction.atomic():
            return AgentDeployment.objects.create(
                project=project,
                name=name,
                mode=mode,
                description=description or "",
                metadata=metadata or {},
            )
    except IntegrityError:
        raise DomainError(
            "conflict",
            f"an agent deployment named {name!r} already exists in this project",
            suggested_action="Deploy to it (nullspace agent deploy reuses it by name) or pick another name.",
        ) from None


def create_version(
    deployment: AgentDeployment,
    *,
    bundle_digest: Any,
    manifest: Any,
    config: Any,
    cache_policy: Any,
) -> AgentVersion:
    if not isinstance(bundle_digest, str) or len(bundle_digest) != 64:
        raise DomainError("invalid_request", "bundle_digest must be a sha256 hex digest")
    if not isinstance(manifest, dict) or manifest.get("bundle_digest") != bundle_digest:
        raise DomainError(
            "invalid_request", "bundle_manifest must be an object whose bundle_digest matches"
        )
    if not isinstance(manifest.get("entries"), list):
        raise DomainError("invalid_request", "bundle_manifest.entries must be a list")
    policy = cache_policy or "auto"
    if policy not in ("auto", "no_cache", "rebuild"):
        raise DomainError("invalid_request", "cache_policy must be auto, no_cache or rebuild")
    checked = agent_config.checked_config(config, deployment_mode=deployment.mode)
    canonical = agent_config.canonical(checked, manifest)
    if bundles.config_digest(canonical) != manifest.get("config_digest"):
        raise DomainError(
            "invalid_request",
            "bundle_manifest.config_digest does not match the config sent with it",
        )
    install = checked.get("install")
    key = artifacts.cache_key(checked, manifest) if install else ""
    if not install:
        status, reason = "disabled", "no_install_command"
    elif policy == "no_cache":
        status, reason = "bypassed", "cache_policy_no_cache"
    else:
        status, reason = "cache_miss", ""
    with transaction.atomic():
        AgentDeployment.objects.select_for_update().filter(pk=deployment.pk).first()
        number = (deployment.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        return AgentVersion.objects.create(
            deployment=deployment,
            number=number,
            bundle_digest=bundle_digest,
            manifest=manifest,
            config=checked,
            cache_policy=policy,
            cache_key=key,
            cache_status=status,
            cache_reason=reason,
            file_count=int(manifest.get("file_count") or 0),
        )


def get_version(deployment: AgentDeployment, public_id: str) -> AgentVersion:
    version = (
        AgentVersion.objects.select_related("deployment", "artifact")
        .filter(deployment=deployment, public_id=public_id)
        .first()
    )
    if version is None:
        raise DomainError("not_found", f"Version {public_id} not found in {deployment.public_id}")
    return version


def accept_bundle(
    version: AgentVersion, stream: bundles.Readable, *, length: int | None, header_digest: str
) -> AgentVersion:
    """Keep the uploaded tar when its recomputed digest matches; then resolve the cache."""
    if header_digest and header_digest != version.bundle_digest:
        raise DomainError(
            "bundle_digest_mismatch",
            "X-Nullspace-Bundle-Digest differs from the version's bundle_digest",
        )
    if version.bundle_path:
        return version  # a retry of a finished upload: the stored bundle already matched
    canonical = agent_config.canonical(version.config, version.manifest)
    stored = bundles.receive(
        stream,
        length=length,
        version_public_id=version.public_id,
        expected_digest=version.bundle_digest,
        cfg_digest=bundles.config_digest(canonical),
    )
    fields: dict[str, Any] = {
        "bundle_path": str(stored.path),
        "bundle_size": stored.size,
        "file_count": stored.file_count,
    }
    build: AgentArtifact | None = None
    if version.cache_status == "cache_miss":
        ready = artifacts.ready_artifact(version)
        if version.cache_policy == "rebuild":
            build = AgentArtifact.objects.create(
                project_id=version.deployment.project_id,
                cache_key=version.cache_key,
                runner=executor.runner_id(),
            )
            fields.update(cache_status="building", cache_reason="", artifact=build)
        elif ready is not None:
            fields.update(cache_status="cache_hit", artifact=ready)
        else:
            fields.update(cache_reason="no_ready_artifact")
    fields["status"] = VersionStatus.BUILDING if build else VersionStatus.READY
    if not build:
        fields["ready_at"] = timezone.now()
    with transaction.atomic():
        AgentVersion.objects.filter(pk=version.pk).update(**fields)
        deployment = version.deployment
        deployment.versions.filter(status=VersionStatus.READY).exclude(pk=version.pk).update(
            status=VersionStatus.SUPERSEDED
        )
        AgentDeployment.objects.filter(pk=deployment.pk).update(
            active_version=version, updated_at=timezone.now()
        )
        if build is not None:
            executor.submit(artifacts.build, version.pk)
    version.refresh_from_db()
    return version


def _runnable_version(deployment: AgentDeployment, version_id: Any) -> AgentVersion:
    if version_id:
        version = get_version(deployment, str(version_id))
    elif deployment.active_version_id:
        version = AgentVersion.objects.select_related("deployment").get(
            pk=deployment.active_version_id
        )
    else:
        raise DomainError(
            "invalid_request",
            f"{deployment.name} has no deployed version yet",
            suggested_action="Run `nullspace agent deploy` first.",
        )
    if not version.bundle_path:
        raise DomainError("invalid_request", f"version {version.public_id} has no uploaded bundle")
    return version


def checked_envs(envs: Any, version: AgentVersion) -> dict[str, str]:
    if envs is None:
        envs = {}
    if not isinstance(envs, dict) or len(envs) > MAX_ENVS:
        raise DomainError("invalid_request", f"envs must be an object of at most {MAX_ENVS} names")
    out = {}
    for name, value in envs.items():
        if not agent_config._ENV_NAME.match(str(name)):
            raise DomainError("invalid_request", f"env name {name!r} is not a valid variable name")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE:
            raise DomainError(
                "invalid_request",
                f"env {name} must be a string of at most {MAX_ENV_VALUE} characters",
            )
        out[str(name)] = value
    missing = [n for n in agent_config.env_spec(version.config)["required"] if n not in out]
    if missing:
        raise DomainError(
            "invalid_request",
            f"missing required env vars: {', '.join(missing)}",
            suggested_action="Pass them with --env NAME=value or --env-file.",
            details={"missing": missing},
        )
    return out


def create_run(deployment: AgentDeployment, body: dict[str, Any], idempotency_key: str) -> AgentRun:
    if deployment.mode != "job":
        raise DomainError(
            "invalid_request",
            f"{deployment.name} is a service; start it with `nullspace agent url` or restart",
        )
    payload = body.get("input")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise DomainError("invalid_request", "input must be a JSON object")
    import json

    if len(json.dumps(payload)) > MAX_INPUT_BYTES:
        raise DomainError("payload_too_large", f"input is over {MAX_INPUT_BYTES} bytes")
    version = _runnable_version(deployment, body.get("version_id"))
    envs = checked_envs(body.get("envs"), version)
    debug = version.config.get("debug") or {}
    retain = body.get("retain_on_failure")
    if retain is None:
        retain = bool(debug.get("retain_on_failure"))
    if not isinstance(retain, bool):
        raise DomainError("invalid_request", "retain_on_failure must be true or false")
    retention = body.get("retention_seconds")
    if retention is None:
        retention = debug.get("retain_seconds")
    if retention is not None and (
        isinstance(retention, bool)
        or not isinstance(retention, int)
        or not 1 <= retention <= MAX_RETENTION_SECONDS
    ):
        raise DomainError(
            "invalid_request", f"retention_seconds must be from 1 to {MAX_RETENTION_SECONDS}"
        )
    with transaction.atomic():
        run = AgentRun.objects.create(
            deployment=deployment,
            version=version,
            input=payload,
            retain_on_failure=retain,
            retention_seconds=retention,
            idempotency_key=idempotency_key,
            runner=executor.runner_id(),
        )
        executor.submit(runs.execute, run.pk, envs)
    return run


def create_service(
    deployment: AgentDeployment, body: dict[str, Any], idempotency_key: str
) -> AgentService:
    if deployment.mode != "service":
        raise DomainError(
            "invalid_request", f"{deployment.name} is a job; run it with `nullspace agent run`"
        )
    version = _runnable_version(deployment, body.get("version_id"))
    envs = checked_envs(body.get("envs"), version)
    with transaction.atomic():
        service = AgentService.objects.create(
            deployment=deployment,
            version=version,
            port=int(version.config["service"]["port"]),
            started_at=timezone.now(),
            generation=1,
            idempotency_key=idempotency_key,
            runner=executor.runner_id(),
        )
        executor.submit(services.launch, service.pk, 1, envs)
    return service


def restart_service(service: AgentService, body: dict[str, Any]) -> AgentService:
    deployment = service.deployment
    version = _runnable_version(deployment, None)
    envs = checked_envs(body.get("envs"), version)
    reason = body.get("reason")
    with transaction.atomic():
        generation = services.restart(
            service, version, envs, reason if isinstance(reason, str) else None
        )
        executor.submit(services.launch, service.pk, generation, envs)
    return service


def delete_deployment(deployment: AgentDeployment) -> None:
    """Cancel live runs, stop services and destroy every backing sandbox (retained ones too),
    drop bundles and outputs; the row stays as `deleted`, its name free again."""
    for run in deployment.runs.exclude(status__in=RUN_TERMINAL):
        runs.cancel(run, "deployment deleted")
    for service in deployment.services.select_related("grant", "version", "deployment").all():
        if service.status in (*SERVICE_ACTIVE, ServiceStatus.STOPPING):
            services.stop(service, reason="deployment deleted", retain_sandbox=False)
        if service.sandbox_public_id:
            steps.destroy(service.sandbox_public_id, "agent deployment deleted")
    for run in deployment.runs.all():
        if run.sandbox_public_id:
            steps.destroy(run.sandbox_public_id, "agent deployment deleted")
        outputs.remove(run)
    for version in deployment.versions.all():
        bundles.remove(version.bundle_path)
    AgentDeployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.DELETED, deleted_at=timezone.now(), updated_at=timezone.now()
    )
