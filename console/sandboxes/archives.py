"""Where snapshot archives live on this server, and writing one.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from console.errors import DomainError
from console.models import (
    Sandbox,
    Snapshot,
)
from console.runtime import get_driver
from console.sandboxes.operations import driver_call


def snapshot_root() -> Path:
    root = Path(settings.DATA_DIR) / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    return root


def store_archive(sandbox: Sandbox, snapshot: Snapshot) -> None:
    target = snapshot_root() / f"{snapshot.public_id}.tar"
    size = driver_call(lambda: get_driver().snapshot(sandbox.runtime_id, target))
    snapshot.archive_path = str(target)
    snapshot.size_bytes = int(size)
    snapshot.save()


def archive_of(snapshot: Snapshot) -> Path:
    path = Path(snapshot.archive_path) if snapshot.archive_path else None
    if path is None or not path.exists():
        raise DomainError(
            "snapshot_not_found",
            f"Snapshot {snapshot.public_id} has no archive left to restore",
        )
    return path
