"""State changes of an existing sandbox: kill, pause (hibernate), resume, wake on
traffic, and its timeout.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from console.actor import SYSTEM, Actor
from console.errors import DomainError
from console.models import (
    CodeContext,
    Operation,
    Project,
    Sandbox,
    SandboxStatus,
    Snapshot,
    SnapshotKind,
)
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes.archives import archive_of, store_archive
from console.sandboxes.create import check_quota, create_sandbox, create_spec
from console.sandboxes.destroy import hibernate_snapshot_of
from console.sandboxes.lookup import require_running
from console.sandboxes.operations import (
    ACTIVE,
    OperationEvents,
    claim,
    domain_error,
    driver_call,
    quietly,
    release,
    wait_idle,
)
from console.sandboxes.owner import this_instance, this_process
from console.sandboxes.validation import validated_action, validated_timeout
from console.volumes import service as volume_domain

log = logging.getLogger(__name__)


def pause_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Snapshot:
    """Hibernate: stop every process, archive the workspace, keep the archive as the
    pause snapshot. Pausing a paused sandbox returns its pause snapshot."""
    while not claim(sandbox, (SandboxStatus.RUNNING,), "pausing"):
        sandbox.refresh_from_db()
        if sandbox.transition:
            wait_idle(sandbox)
            continue
        if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
            return Snapshot.objects.get(pk=sandbox.pause_snapshot_id)
        require_running(sandbox)
    event = OperationEvents(
        Operation.HIBERNATE, actor, reason=reason or actor.reason, metadata=metadata
    )
    event.requested(sandbox)
    driver = get_driver()
    snapshot = Snapshot(
        project=sandbox.project,
        sandbox=sandbox,
        sandbox_public_id=sandbox.public_id,
        kind=SnapshotKind.HIBERNATE,
        metadata=sandbox.metadata or {},
    )
    try:
        driver_call(lambda: driver.pause(sandbox.runtime_id))
        store_archive(sandbox, snapshot)
        changed = Sandbox.objects.filter(
            pk=sandbox.pk, status=SandboxStatus.RUNNING, transition="pausing"
        ).update(
            status=SandboxStatus.PAUSED,
            transition="",
            pause_snapshot=snapshot,
            paused_at=timezone.now(),
            timeout_at=None,
        )
        if not changed:
            raise DomainError("sandbox_not_found", f"Sandbox {sandbox.public_id} was destroyed")
    except DomainError as error:
        release(sandbox, "pausing")
        sandbox.refresh_from_db()
        if sandbox.status == SandboxStatus.RUNNING:
            quietly(lambda: driver.resume(sandbox.runtime_id))
        event.failed(sandbox, error)
        raise
    sandbox.refresh_from_db()
    event.succeeded(sandbox, snapshot_id=snapshot.public_id)
    OperationEvents(
        Operation.SNAPSHOT_CREATED,
        actor,
        reason=event.reason,
        metadata={**event.metadata, "created_via": "hibernate"},
    ).succeeded(sandbox, snapshot_id=snapshot.public_id)
    return snapshot


def resume_sandbox(
    project: Project,
    ref: str,
    *,
    actor: Actor,
) -> Sandbox:
    """Resume by paused sandbox id or by snapshot id; the answer is a running sandbox with
    a new id, as the client expects (docs/api.md, "Pause, hibernate and resume").

    A paused sandbox hands its runtime over, processes and all, and its old id is gone.
    Any other snapshot (a manual one, or a hibernate snapshot whose sandbox runs again)
    is restored into a fresh sandbox. Resuming a running sandbox by its id returns it."""
    snapshot = (
        Snapshot.objects.filter(project=project, public_id=ref).select_related("sandbox").first()
    )
    if snapshot is None:
        sandbox = (
            Sandbox.objects.filter(project=project, public_id=ref)
            .exclude(status=SandboxStatus.DESTROYED)
            .first()
        )
        if sandbox is None:
            # A killed paused sandbox took its hibernate snapshot with it.
            raise DomainError(
                "sandbox_not_found",
                f"No paused sandbox or snapshot {ref} to resume",
                suggested_action="List what can be resumed: nullspace sandbox list --state paused",
            )
        return _hand_over(sandbox, actor)
    source = snapshot.sandbox
    if (
        snapshot.kind == SnapshotKind.HIBERNATE
        and source is not None
        and source.status in (SandboxStatus.PAUSED, SandboxStatus.CREATING)
        and source.pause_snapshot_id == snapshot.pk
    ):
        return _hand_over(source, actor)
    sandbox, _token = create_sandbox(
        project,
        actor=actor,
        template=None,
        envs=None,
        metadata=dict(source.metadata) if source else dict(snapshot.metadata),
        timeout_ms=source.timeout_ms if source else None,
        timeout_action=source.timeout_action if source else None,
        auto_resume=source.auto_resume if source else False,
        network=dict(source.network) if source else None,
        internet_access=source.internet_access if source else True,
        snapshot=snapshot,
    )
    return sandbox


# Settings a resumed sandbox carries over from the paused one it replaces.
_CARRIED_OVER = (
    "project",
    "template",
    "vcpus",
    "memory_mb",
    "disk_mb",
    "envs",
    "metadata",
    "cwd",
    "network",
    "internet_access",
    "timeout_ms",
    "timeout_action",
    "auto_resume",
    "traffic_token_prefix",
    "traffic_token_digest",
    "runtime_state",
    "forked_from_public_id",
)


def _hand_over(paused: Sandbox, actor: Actor) -> Sandbox:
    """Wake a paused sandbox's runtime under a new sandbox id; the old id is gone."""
    while not claim(paused, (SandboxStatus.PAUSED,), "resuming"):
        paused.refresh_from_db()
        if paused.transition:
            wait_idle(paused)
            continue
        if paused.status == SandboxStatus.RUNNING:
            return paused  # running already (woken in place by preview traffic)
        require_running(paused)
    snapshot = hibernate_snapshot_of(paused)
    snapshot_id = snapshot.public_id if snapshot else ""
    event = OperationEvents(
        Operation.RESUME_FROM_SNAPSHOT,
        actor,
        reason=actor.reason,
        metadata={"timeout_action": paused.timeout_action},
        snapshot_id=snapshot_id,
        source_sandbox_id=paused.public_id,
    )
    event.requested(paused)
    successor: Sandbox | None = None
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=paused.project_id).first()
            check_quota(paused.project)
            successor = Sandbox.objects.create(
                **{name: getattr(paused, name) for name in _CARRIED_OVER},
                status=SandboxStatus.CREATING,
                runtime_name=paused.runtime_id,
                owner=paused.owner or this_instance(),
                create_process=this_process(),
                source_snapshot_public_id=snapshot_id,
                created_by_key=actor.api_key,
            )
            # The successor mounts what the paused sandbox mounted (the runtime kept them).
            volume_domain.attach(successor, volume_domain.mounts_of(paused))
        runtime_name = _wake(paused, snapshot, restore_as=successor.public_id)
        now = timezone.now()
        gone = Sandbox.objects.filter(
            pk=paused.pk, status=SandboxStatus.PAUSED, transition="resuming"
        ).update(status=SandboxStatus.DESTROYED, transition="", destroyed_at=now)
        if not gone:
            raise DomainError("sandbox_not_found", f"Sandbox {paused.public_id} was destroyed")
        Sandbox.objects.filter(pk=successor.pk).update(
            status=SandboxStatus.RUNNING,
            runtime_name="" if runtime_name == successor.public_id else runtime_name,
            create_process="",
            started_at=now,
            timeout_at=now + timedelta(milliseconds=paused.timeout_ms),
        )
        # Code interpreter contexts go with the runtime: their kernels run on in it
        # (docs/code-interpreter.md).
        CodeContext.objects.filter(sandbox=paused).update(sandbox=successor)
    except (DomainError, RuntimeError_) as exc:
        release(paused, "resuming")
        if successor is not None:
            successor.delete()  # it never ran; the paused sandbox stays as it was
        error = exc if isinstance(exc, DomainError) else domain_error(exc)
        event.failed(paused, error)
        raise error from exc
    successor.refresh_from_db()
    event.succeeded(successor, target_sandbox_id=successor.public_id)
    return successor


def _wake(sandbox: Sandbox, snapshot: Snapshot | None, *, restore_as: str) -> str:
    """Thaw a paused sandbox's processes; when the runtime lost them (a restart), restore
    the pause archive into a runtime named `restore_as`. Returns the runtime's name."""
    driver = get_driver()
    try:
        driver.resume(sandbox.runtime_id)
        return sandbox.runtime_id
    except RuntimeError_ as exc:
        if snapshot is None or driver.exists(sandbox.runtime_id):
            raise
        log.info("runtime lost paused %s (%s); restoring its archive", sandbox.public_id, exc)
    with volume_domain.runtime_mounts(volume_domain.mounts_of(sandbox)) as bound:
        driver.create(
            dataclasses.replace(create_spec(sandbox, archive_of(snapshot)), sandbox_id=restore_as),
            mounts=bound,
        )
    return restore_as


def resume_existing(sandbox: Sandbox, *, actor: Actor, reason: str | None = None) -> Sandbox:
    """Continue a paused sandbox's processes under its own id: the gateway's wake on
    traffic (a preview host names the sandbox id) and the console's resume button (its
    page is the sandbox's). A running one is returned as it is."""
    while not claim(sandbox, (SandboxStatus.PAUSED,), "resuming"):
        sandbox.refresh_from_db()
        if sandbox.transition:
            wait_idle(sandbox)
            continue
        if sandbox.status == SandboxStatus.RUNNING:
            return sandbox
        require_running(sandbox)
    snapshot = hibernate_snapshot_of(sandbox)
    event = OperationEvents(
        Operation.RESUME_FROM_SNAPSHOT,
        actor,
        reason=reason or actor.reason,
        snapshot_id=snapshot.public_id if snapshot else "",
        source_sandbox_id=sandbox.public_id,
        target_sandbox_id=sandbox.public_id,
    )
    event.requested(sandbox)
    try:
        check_quota(sandbox.project, exclude_pk=sandbox.pk)
        runtime_name = _wake(sandbox, snapshot, restore_as=sandbox.runtime_id)
        now = timezone.now()
        changed = Sandbox.objects.filter(
            pk=sandbox.pk, status=SandboxStatus.PAUSED, transition="resuming"
        ).update(
            status=SandboxStatus.RUNNING,
            transition="",
            pause_snapshot=None,
            paused_at=None,
            runtime_name="" if runtime_name == sandbox.public_id else runtime_name,
            timeout_at=now + timedelta(milliseconds=sandbox.timeout_ms),
        )
        if not changed:
            raise DomainError("sandbox_not_found", f"Sandbox {sandbox.public_id} was destroyed")
    except (DomainError, RuntimeError_) as exc:
        release(sandbox, "resuming")
        error = exc if isinstance(exc, DomainError) else domain_error(exc)
        event.failed(sandbox, error)
        raise error from exc
    sandbox.refresh_from_db()
    event.succeeded(sandbox)
    return sandbox


def ensure_running(sandbox: Sandbox, wait_seconds: float = 30) -> Sandbox:
    """For the gateway's wake-on-traffic: a running sandbox, resuming a paused one when
    it was created with auto_resume. Raises sandbox_not_ready / sandbox_not_found."""
    wait_idle(sandbox, wait_seconds)
    if sandbox.status == SandboxStatus.PAUSED and sandbox.auto_resume:
        return resume_existing(sandbox, actor=SYSTEM, reason="traffic")
    require_running(sandbox)
    return sandbox


def set_timeout(
    sandbox: Sandbox,
    timeout_ms: Any,
    timeout_action: str | None = None,
    *,
    actor: Actor,
) -> Sandbox:
    """Counted from now; the worker acts on `timeout_at`."""
    sandbox.refresh_from_db()
    if sandbox.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED, SandboxStatus.CREATING):
        require_running(sandbox)
    timeout_ms = validated_timeout(timeout_ms, default=sandbox.timeout_ms)
    updates: dict[str, Any] = {"timeout_ms": timeout_ms}
    if timeout_action is not None:
        updates["timeout_action"] = validated_action(timeout_action)
    event = OperationEvents(
        Operation.TIMEOUT_UPDATED,
        actor,
        reason=actor.reason,
        metadata={
            "timeout_ms": timeout_ms,
            "timeout_action": updates.get("timeout_action", sandbox.timeout_action),
        },
    )
    event.requested(sandbox)
    if sandbox.status != SandboxStatus.PAUSED:
        updates["timeout_at"] = timezone.now() + timedelta(milliseconds=timeout_ms)
    changed = Sandbox.objects.filter(
        pk=sandbox.pk, status__in=(*ACTIVE, SandboxStatus.PAUSED)
    ).update(**updates)
    if not changed:
        error = DomainError("sandbox_not_found", f"Sandbox {sandbox.public_id} was destroyed")
        event.failed(sandbox, error)
        raise error
    sandbox.refresh_from_db()
    event.succeeded(sandbox)
    return sandbox
