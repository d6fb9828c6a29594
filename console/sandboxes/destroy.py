"""Killing a sandbox for good, with its hibernate snapshot.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.utils import timezone

from console.actor import Actor
from console.models import (
    Operation,
    Sandbox,
    SandboxStatus,
    Snapshot,
    SnapshotKind,
)
from console.runtime import get_driver
from console.sandboxes.operations import ACTIVE, REASON_MANUAL, OperationEvents

log = logging.getLogger(__name__)


def destroy_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
    reason: str = REASON_MANUAL,
    metadata: dict[str, Any] | None = None,
) -> Sandbox:
    """Kill every process and free everything, for good: a paused sandbox's hibernate
    snapshot goes with it. Destroying a destroyed sandbox does nothing."""
    now = timezone.now()
    changed = Sandbox.objects.filter(
        pk=sandbox.pk, status__in=(*ACTIVE, SandboxStatus.PAUSED, SandboxStatus.ERROR)
    ).update(status=SandboxStatus.DESTROYED, transition="", destroyed_at=now, timeout_at=None)
    sandbox.refresh_from_db()
    if not changed:
        return sandbox
    event = OperationEvents(Operation.DESTROY, actor, reason=reason, metadata=metadata)
    event.requested(sandbox)
    try:
        get_driver().destroy(sandbox.runtime_id)
    except Exception as exc:
        # The row is terminal already; start-up reconciliation removes what is left.
        log.warning("driver destroy of %s failed: %s", sandbox.public_id, exc)
    _drop_hibernate_snapshot(sandbox)
    event.succeeded(sandbox)
    return sandbox


def hibernate_snapshot_of(sandbox: Sandbox) -> Snapshot | None:
    """The hibernate snapshot a paused sandbox resumes from, if it has one."""
    if sandbox.pause_snapshot_id is None:
        return None
    return Snapshot.objects.filter(pk=sandbox.pause_snapshot_id).first()


def _drop_hibernate_snapshot(sandbox: Sandbox) -> None:
    """A killed paused sandbox cannot be resumed: its pause archive is removed."""
    snapshot = hibernate_snapshot_of(sandbox)
    if snapshot is None or snapshot.kind != SnapshotKind.HIBERNATE:
        return
    if snapshot.archive_path:
        Path(snapshot.archive_path).unlink(missing_ok=True)
    snapshot.delete()
