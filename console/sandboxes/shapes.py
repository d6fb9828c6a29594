"""The contract's JSON shapes of sandboxes, snapshots, metrics and processes.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from django.conf import settings

from console.models import (
    Sandbox,
    SandboxStatus,
    Snapshot,
)
from console.runtime import get_driver, netpolicy
from console.sandboxes.operations import driver_call
from console.timefmt import iso
from console.volumes import service as volume_domain

SANDBOX_FIELDS = (
    "id",
    "status",
    "config",
    "template",
    "metadata",
    "created_at",
    "started_at",
    "timeout_ms",
    "timeout_at",
    "expires_at",
    "timeout_action",
    "cwd",
    "snapshot_id",
    "internet_access",
    "network",
)


METADATA_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def sandbox_to_dict(sandbox: Sandbox, *, traffic_access_token: str | None = None) -> dict[str, Any]:
    """SandboxInfo (contract 2.3). `traffic_access_token` only in the create answer."""
    config: dict[str, Any] = {"vcpus": sandbox.vcpus, "memory_mb": sandbox.memory_mb}
    if sandbox.disk_mb:
        config["disk_mb"] = sandbox.disk_mb
    timeout_at = iso(sandbox.timeout_at)
    body: dict[str, Any] = {
        "id": sandbox.public_id,
        "status": sandbox.status,
        "config": config,
        "template": sandbox.template,
        "metadata": _metadata_with_volumes(sandbox),
        "created_at": iso(sandbox.created_at),
        "started_at": iso(sandbox.started_at),
        "timeout_ms": sandbox.timeout_ms,
        "timeout_at": timeout_at,
        "expires_at": timeout_at,
        "timeout_action": sandbox.timeout_action,
        "cwd": sandbox.cwd,
        "snapshot_id": None,
        # What the sandbox may reach (shown by `sandbox get --fields network,internet_access`).
        "internet_access": sandbox.internet_access,
        "network": network_view(sandbox),
    }
    if sandbox.status == SandboxStatus.PAUSED:
        # The client auto-resumes with this id; a paused sandbox without one is unusable.
        snapshot = sandbox.pause_snapshot
        body["snapshot_id"] = snapshot.public_id if snapshot else sandbox.public_id
    if traffic_access_token is not None:
        body["traffic_access_token"] = traffic_access_token
    return body


def network_view(sandbox: Sandbox) -> dict[str, Any]:
    """The sandbox's network settings with its effective egress policy spelled out."""
    policy = netpolicy.parse(sandbox.internet_access, sandbox.network)
    return {**(sandbox.network or {}), "egress_policy": netpolicy.as_dict(policy)}


def _metadata_with_volumes(sandbox: Sandbox) -> dict[str, Any]:
    """The client reads a sandbox's mounts from `metadata.volume_attachments`."""
    metadata = dict(sandbox.metadata or {})
    attachments = volume_domain.sandbox_attachments(sandbox)
    if attachments:
        metadata["volume_attachments"] = attachments
    return metadata


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """SnapshotInfo: STRICT, exactly these keys (the client builds it with Cls(**json))."""
    return {
        "id": snapshot.public_id,
        "sandbox_id": snapshot.sandbox_public_id,
        "size_bytes": int(snapshot.size_bytes),
        "created_at": iso(snapshot.created_at),
        "metadata": snapshot.metadata or {},
    }


def truncation_fields(truncated: bool) -> dict[str, Any]:
    """What an answer adds when output was cut: the flag and the caps that cut it."""
    if not truncated:
        return {}
    return {
        "truncated": True,
        "output_limit_bytes": settings.EXEC_OUTPUT_MAX_BYTES,
        "response_limit_bytes": settings.EXEC_RESPONSE_MAX_BYTES,
    }


def metrics_to_dict(sandbox: Sandbox) -> dict[str, Any]:
    """One SandboxMetrics (STRICT keys; the optional network counters only when known)."""
    return sample_to_dict(driver_call(lambda: get_driver().metrics(sandbox.runtime_id)))


def sample_to_dict(sample: Any) -> dict[str, Any]:
    """A driver's metrics sample as SandboxMetrics (network counters only when known)."""
    return {
        k: v for k, v in asdict(sample).items() if v is not None or not k.startswith("network_")
    }


def process_to_dict(process: Any) -> dict[str, Any]:
    """ProcessInfo, as the process list and the monitor stream send it."""
    return {"pid": process.pid, "command": process.command, "running": process.running}
