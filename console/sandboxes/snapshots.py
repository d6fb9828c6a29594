"""Snapshots and forks: taking, storing, deleting a snapshot; forking a sandbox.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import time
from pathlib import Path

from console.actor import Actor
from console.errors import DomainError
from console.models import (
    Operation,
    Sandbox,
    SandboxStatus,
    Snapshot,
    SnapshotKind,
)
from console.runtime import get_driver
from console.sandboxes.archives import archive_of, snapshot_root, store_archive
from console.sandboxes.create import provision
from console.sandboxes.lookup import require_running
from console.sandboxes.operations import OperationEvents, driver_call
from console.volumes import service as volume_domain


def fork_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
) -> tuple[Sandbox, str]:
    """A new running sandbox with a copy of this one's workspace and settings."""
    sandbox.refresh_from_db()
    if sandbox.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED):
        require_running(sandbox)
    fields = {
        "template": sandbox.template,
        "envs": dict(sandbox.envs),
        "metadata": dict(sandbox.metadata),
        "cwd": sandbox.cwd,
        "timeout_ms": sandbox.timeout_ms,
        "timeout_action": sandbox.timeout_action,
        "auto_resume": sandbox.auto_resume,
        "network": dict(sandbox.network),
        "internet_access": sandbox.internet_access,
        "vcpus": sandbox.vcpus,
        "memory_mb": sandbox.memory_mb,
        "disk_mb": sandbox.disk_mb,
        "forked_from_public_id": sandbox.public_id,
    }
    if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
        archive = archive_of(Snapshot.objects.get(pk=sandbox.pause_snapshot_id))
        temporary = None
    else:
        temporary = snapshot_root() / f"fork-{sandbox.public_id}-{time.time_ns()}.tar"
        driver_call(lambda: get_driver().snapshot(sandbox.runtime_id, temporary))
        archive = temporary
    event = OperationEvents(
        Operation.FORK,
        actor,
        reason=actor.reason,
        metadata={"timeout_action": sandbox.timeout_action},
        source_sandbox_id=sandbox.public_id,
    )
    try:
        child, token = provision(
            sandbox.project,
            fields,
            restore_from=archive,
            event=event,
            mounts=volume_domain.mounts_of(sandbox),
        )
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return child, token


def snapshot_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
) -> Snapshot:
    """Archive the workspace as a reusable snapshot (create-from-snapshot restores it)."""
    sandbox.refresh_from_db()
    if sandbox.status != SandboxStatus.PAUSED:
        require_running(sandbox)
    event = OperationEvents(
        Operation.SNAPSHOT_CREATED, actor, reason=actor.reason, metadata={"created_via": "api"}
    )
    event.requested(sandbox)
    snapshot = Snapshot(
        project=sandbox.project,
        sandbox=sandbox,
        sandbox_public_id=sandbox.public_id,
        kind=SnapshotKind.MANUAL,
        metadata=dict(sandbox.metadata or {}),
    )
    try:
        _write_snapshot(sandbox, snapshot)
    except DomainError as error:
        event.failed(sandbox, error)
        raise
    event.succeeded(sandbox, snapshot_id=snapshot.public_id)
    return snapshot


def _write_snapshot(sandbox: Sandbox, snapshot: Snapshot) -> None:
    if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
        # A paused workspace is the pause archive: copy it rather than touch the runtime.
        import shutil

        source = archive_of(Snapshot.objects.get(pk=sandbox.pause_snapshot_id))
        target = snapshot_root() / f"{snapshot.public_id}.tar"
        shutil.copyfile(source, target)
        snapshot.archive_path = str(target)
        snapshot.size_bytes = target.stat().st_size
        snapshot.save()
    else:
        store_archive(sandbox, snapshot)


def delete_snapshot(snapshot: Snapshot) -> None:
    if Sandbox.objects.filter(pause_snapshot=snapshot, status=SandboxStatus.PAUSED).exists():
        raise DomainError(
            "snapshot_in_use",
            f"Snapshot {snapshot.public_id} holds a paused sandbox's state",
            suggested_action="Resume or kill the paused sandbox first.",
        )
    if snapshot.archive_path:
        Path(snapshot.archive_path).unlink(missing_ok=True)
    snapshot.delete()
