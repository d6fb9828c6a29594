"""Finding a project's sandboxes and snapshots (another project's are not found) and
the checks every caller makes before acting on one.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

from typing import Any

from console.errors import DomainError
from console.models import (
    Project,
    Sandbox,
    SandboxStatus,
    Snapshot,
)
from console.sandbox_templates import defaults as template_defaults
from console.sandboxes.shapes import METADATA_KEY


def get_sandbox(project: Project, public_id: str, *, include_gone: bool = False) -> Sandbox:
    """The project's sandbox; any other project's (or none) is `sandbox_not_found`.

    A destroyed sandbox (killed, timed out, or resumed under a new id) is gone: not found,
    unless `include_gone` (its lifecycle history stays readable)."""
    sandbox = (
        Sandbox.objects.select_related("pause_snapshot", "project")
        .filter(project=project, public_id=public_id)
        .visible()
        .first()
    )
    if sandbox is None or (sandbox.status == SandboxStatus.DESTROYED and not include_gone):
        raise DomainError("sandbox_not_found", f"Sandbox {public_id} not found")
    return sandbox


def get_snapshot(project: Project, public_id: str) -> Snapshot:
    snapshot = Snapshot.objects.filter(project=project, public_id=public_id).first()
    if snapshot is None:
        raise DomainError("snapshot_not_found", f"Snapshot {public_id} not found")
    return snapshot


def require_running(sandbox: Sandbox) -> None:
    """Refuse work on a sandbox that cannot run it, saying what to do instead."""
    sandbox.refresh_from_db(fields=["status", "transition", "pause_snapshot"])
    if sandbox.status == SandboxStatus.RUNNING:
        return
    if sandbox.status == SandboxStatus.PAUSED:
        snap = sandbox.pause_snapshot.public_id if sandbox.pause_snapshot else sandbox.public_id
        raise DomainError(
            "sandbox_not_ready",
            f"Sandbox {sandbox.public_id} is paused",
            suggested_action=f"Resume it first: nullspace sandbox resume {snap}",
        )
    if sandbox.status in (SandboxStatus.DESTROYED, SandboxStatus.ERROR):
        raise DomainError(
            "sandbox_not_found",
            f"Sandbox {sandbox.public_id} is {sandbox.status}",
            suggested_action="Create a new sandbox.",
        )
    raise DomainError(
        "sandbox_not_ready",
        f"Sandbox {sandbox.public_id} is {sandbox.status}",
        retryable=True,
        suggested_action="Retry in a moment.",
    )


def template_exists(project: Project, name: str) -> bool:
    # Builtin templates are the runtime's builtin images; custom ones need a ready build.
    try:
        template_defaults.choose(project, name)
    except DomainError:
        return False
    return True


def metadata_filter(raw: str | None) -> dict[str, Any]:
    """A `metadata` query parameter (JSON object) validated for key lookups."""
    import json

    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise DomainError("invalid_request", "metadata must be a JSON-encoded object") from None
    if not isinstance(value, dict):
        raise DomainError("invalid_request", "metadata must be a JSON-encoded object")
    for key in value:
        if not METADATA_KEY.match(key) or "__" in key:
            raise DomainError("invalid_request", f"metadata filter key {key!r} is not supported")
    return value
