"""Creating a sandbox: quota, the row, the runtime, the events; the create spec the
driver gets; the traffic token.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from console.actor import SYSTEM, Actor
from console.errors import DomainError
from console.models import (
    Operation,
    Project,
    Sandbox,
    SandboxStatus,
    Snapshot,
    Volume,
    WarmPool,
)
from console.runtime import get_driver, netpolicy
from console.runtime.base import CreateSpec, RuntimeError_
from console.sandbox_templates import defaults as template_defaults
from console.sandboxes.archives import archive_of
from console.sandboxes.destroy import destroy_sandbox
from console.sandboxes.operations import ACTIVE, OperationEvents, domain_error, quietly
from console.sandboxes.owner import this_instance, this_process
from console.sandboxes.validation import WORKSPACE, validated_fields
from console.tokens import TRAFFIC, new_secret
from console.volumes import service as volume_domain

log = logging.getLogger(__name__)


def create_sandbox(
    project: Project,
    *,
    actor: Actor,
    template: str | None = "base",
    envs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    cwd: str | None = None,
    timeout_ms: int | None = None,
    timeout_action: str | None = None,
    auto_resume: bool = False,
    network: dict[str, Any] | None = None,
    internet_access: bool = True,
    vcpus: int | None = None,
    memory_mb: int | None = None,
    disk_mb: int | None = None,
    snapshot: Snapshot | None = None,
    volumes: list[dict[str, Any]] | None = None,
    desktop: dict[str, Any] | None = None,
    warm_pool: WarmPool | None = None,
) -> tuple[Sandbox, str]:
    """Make a running sandbox (cold, or from `snapshot`); returns it and its raw traffic token.

    `volumes` is the request's list of mounts; a sandbox made from a snapshot without one
    mounts what the snapshot's sandbox mounted (the data stayed in the volumes).
    `desktop` (resolution, dpi, display) is for the desktop template, whose X screen is up
    before this returns (console/desktop/).
    `warm_pool`: made as that pool's inventory, hidden until checked out, with no
    timeout running (docs/warm-pools.md)."""
    from console.desktop import config as desktop_config

    screen = desktop_config.parse(template, desktop)
    if screen is not None:
        envs = {"DISPLAY": screen.display_name, **(envs or {})}
    fields = validated_fields(
        project,
        template=template,
        envs=envs,
        metadata=metadata,
        cwd=cwd,
        timeout_ms=timeout_ms,
        timeout_action=timeout_action,
        auto_resume=auto_resume,
        network=network,
        internet_access=internet_access,
        vcpus=vcpus,
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        snapshot=snapshot,
    )
    mounts = volume_domain.parse_mounts(project, volumes)
    if not volumes and snapshot is not None and snapshot.sandbox is not None:
        mounts = volume_domain.mounts_of(snapshot.sandbox)
    restore_from = archive_of(snapshot) if snapshot else None
    if snapshot is not None:
        fields["source_snapshot_public_id"] = snapshot.public_id
        event = OperationEvents(
            Operation.RESUME_FROM_SNAPSHOT,
            actor,
            reason=actor.reason,
            snapshot_id=snapshot.public_id,
            source_sandbox_id=snapshot.sandbox_public_id,
        )
    else:
        event = OperationEvents(Operation.CREATE, actor, reason=actor.reason)
    event.metadata = {"timeout_action": fields["timeout_action"], "template": fields["template"]}
    start = fields.pop("_template_defaults", {})
    if warm_pool is not None:
        fields["warm_pool"] = warm_pool
        fields["warm_pool_generation"] = warm_pool.generation
        event.reason = "warm_pool_fill"
        event.metadata["warm_pool_id"] = warm_pool.public_id
    sandbox, token = provision(
        project, fields, restore_from=restore_from, event=event, mounts=mounts
    )
    if screen is not None:
        _start_desktop(sandbox, screen)
    if snapshot is None and start:
        try:
            template_defaults.start(sandbox, start)
        except DomainError:
            destroy_sandbox(sandbox, actor=SYSTEM)
            raise
    return sandbox, token


def _start_desktop(sandbox: Sandbox, screen: Any) -> None:
    """The desktop comes up before create answers; a desktop that cannot start takes its
    sandbox with it (a desktop sandbox without a screen is no use to the caller)."""
    from console.desktop import session as desktop_session

    try:
        desktop_session.create_session(sandbox, screen)
    except Exception as exc:
        log.warning("desktop of %s did not start: %s", sandbox.public_id, exc)
        quietly(lambda: destroy_sandbox(sandbox, actor=SYSTEM))
        if isinstance(exc, DomainError):
            raise
        raise DomainError("desktop_unavailable", f"The desktop did not start: {exc}") from exc


def check_quota(project: Project, *, exclude_pk: int | None = None) -> None:
    limit = project.running_sandbox_limit
    active = Sandbox.objects.filter(project=project, status__in=ACTIVE)
    if exclude_pk is not None:
        active = active.exclude(pk=exclude_pk)
    if active.count() >= limit:
        # Warm pools' sandboxes run, so they count (docs/warm-pools.md): say so.
        pooled = active.filter(warm_pool__isnull=False).count()
        held = f" ({pooled} of them ready in warm pools)" if pooled else ""
        raise DomainError(
            "quota_exceeded",
            f"This project already runs {limit} sandboxes, its limit{held}",
            suggested_action="Kill or pause a sandbox, or ask an owner to raise the limit."
            + (" Check out from a warm pool (--warm-pool) or scale one down." if pooled else ""),
            details={"running_sandbox_limit": limit, "warm_pool_sandboxes": pooled},
        )


def provision(
    project: Project,
    fields: dict[str, Any],
    *,
    restore_from: Path | None,
    event: OperationEvents,
    mounts: list[dict[str, Any]] | None = None,
) -> tuple[Sandbox, str]:
    """Insert the row (`creating`, owned by this instance and process), start it in the
    runtime, and record `event` as requested, then succeeded or failed."""
    token = new_secret(TRAFFIC)
    with transaction.atomic():
        # Lock the project row so concurrent creates count each other (PostgreSQL);
        # on SQLite the insert below holds the write lock until commit.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        check_quota(project)
        # Lock the volumes too: a concurrent delete either sees this mount or wins first.
        mounts = mounts or []
        wanted = {m["volume"].pk for m in mounts}
        if len(Volume.objects.select_for_update().filter(pk__in=wanted)) < len(wanted):
            raise DomainError("not_found", "A volume to mount was deleted meanwhile")
        sandbox = Sandbox.objects.create(
            project=project,
            status=SandboxStatus.CREATING,
            traffic_token_prefix=token.prefix,
            traffic_token_digest=token.digest,
            created_by_key=event.actor.api_key,
            owner=this_instance(),
            create_process=this_process(),
            **fields,
        )
        volume_domain.attach(sandbox, mounts)
    target = {"target_sandbox_id": sandbox.public_id} if "source_sandbox_id" in event.ids else {}
    event.requested(sandbox, **target)
    try:
        with volume_domain.runtime_mounts(mounts) as bound:
            runtime_state = get_driver().create(create_spec(sandbox, restore_from), mounts=bound)
        # The client expects its `cwd` to exist from the start (relative paths use it).
        get_driver().files(sandbox.runtime_id).mkdir(sandbox.cwd)
    except Exception as exc:
        message = str(exc)[:500] or exc.__class__.__name__
        Sandbox.objects.filter(pk=sandbox.pk).update(
            status=SandboxStatus.ERROR, error_message=message, create_process=""
        )
        error = DomainError("runtime_error", f"Could not start the sandbox: {message}")
        if isinstance(exc, DomainError):
            error = exc  # a volume's subpath refused
        elif isinstance(exc, RuntimeError_) and exc.code in (
            "runtime_unavailable",
            "invalid_request",
        ):
            error = domain_error(exc)  # the machine cannot isolate, or a bad volume
        event.failed(sandbox, error, **target)
        quietly(lambda: get_driver().destroy(sandbox.runtime_id))
        raise error from exc
    now = timezone.now()
    Sandbox.objects.filter(pk=sandbox.pk, status=SandboxStatus.CREATING).update(
        status=SandboxStatus.RUNNING,
        runtime_state=runtime_state or {},
        create_process="",
        started_at=now,
        # A warm pool's sandbox has no timeout until a create checks it out.
        timeout_at=None
        if sandbox.warm_pool_id
        else now + timedelta(milliseconds=sandbox.timeout_ms),
    )
    sandbox.refresh_from_db()
    event.succeeded(sandbox, **target)
    return sandbox, token.raw


def create_spec(sandbox: Sandbox, restore_from: Path | None) -> CreateSpec:
    """What the runtime needs to make (or remake) the sandbox of this row."""
    on_template = {"template": sandbox.template} | template_defaults.spec_fields(
        sandbox.template_build
    )
    return CreateSpec(
        sandbox_id=sandbox.public_id,
        envs=sandbox.envs,
        memory_mb=sandbox.memory_mb,
        vcpus=sandbox.vcpus,
        disk_mb=sandbox.disk_mb,
        egress=netpolicy.parse(sandbox.internet_access, sandbox.network),
        hostname=sandbox.public_id.replace("_", "-").lower(),
        cwd=sandbox.cwd or WORKSPACE,
        restore_from=restore_from,
        **on_template,
    )


def reissue_traffic_token(sandbox: Sandbox) -> str:
    """A new traffic token (the old one stops working); used when a create is replayed,
    because raw tokens are never stored."""
    token = new_secret(TRAFFIC)
    Sandbox.objects.filter(pk=sandbox.pk).update(
        traffic_token_prefix=token.prefix, traffic_token_digest=token.digest
    )
    return token.raw
