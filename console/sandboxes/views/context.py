"""Template context for the sandbox detail page and each of its fragments.

A fragment view builds only its own part (the 2 s state poll reads two rows and
never calls the runtime); the full page merges them all.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest

from console.access import TeamRequest
from console.models import LifecycleEvent, Role, Sandbox, SandboxStatus, Snapshot
from console.paging import BadCursor, Keyset, Page, paginate
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes import files as sandbox_files
from console.sandboxes.forms import ExecForm, TimeoutForm
from console.ssh.listing import live_accesses

WORKSPACE = sandbox_files.WORKSPACE
# Bigger files are offered as a download instead of being shown in the page.
MAX_VIEW_BYTES = 256 * 1024
EVENTS_SHOWN = 25
SNAPSHOTS_SHOWN = 10
SNAPSHOT_KEYSET = Keyset("snapshot", "created_at")
EVENT_KEYSET = Keyset("event", "seq")


def state_context(request: TeamRequest, sandbox: Sandbox) -> dict[str, Any]:
    return {
        "sandbox": sandbox,
        "can_act": request.membership.has_role(Role.MEMBER),
    }


def process_context(sandbox: Sandbox) -> dict[str, Any]:
    if sandbox.status != SandboxStatus.RUNNING:
        return {"processes": [], "process_note": f"The sandbox is {sandbox.status}."}
    try:
        rows = get_driver().processes(sandbox.runtime_id)
    except RuntimeError_ as exc:
        return {"processes": [], "process_note": str(exc)}
    # Running first, newest first: what a person wants to kill is at the top.
    rows = sorted(rows, key=lambda p: (not p.running, -p.pid))
    return {"processes": rows, "process_note": ""}


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    """(label, path) pairs from /workspace down to `path`."""
    parts = PurePosixPath(path).relative_to(WORKSPACE).parts if path != WORKSPACE else ()
    crumbs = [("workspace", WORKSPACE)]
    current = WORKSPACE
    for part in parts:
        current = f"{current}/{part}"
        crumbs.append((part, current))
    return crumbs


def _normal(path: str | None) -> str:
    """A sandbox path under /workspace from a query value (the driver re-checks escapes)."""
    if not path or path in ("/", "."):
        return WORKSPACE
    pure = PurePosixPath(path if path.startswith("/") else f"{WORKSPACE}/{path}")
    if ".." in pure.parts or not (
        pure == PurePosixPath(WORKSPACE) or WORKSPACE in map(str, pure.parents)
    ):
        return WORKSPACE
    return str(pure)


def file_context(sandbox: Sandbox, path: str | None) -> dict[str, Any]:
    """The directory listing of `path`, or of its parent plus the text of the file."""
    path = _normal(path)
    context: dict[str, Any] = {
        "dir": path,
        "entries": [],
        "file_view": None,
        "file_note": "",
        "max_upload_bytes": settings.MAX_FILE_BYTES,
    }
    if sandbox.status == SandboxStatus.DESTROYED:
        context["file_note"] = "The sandbox is destroyed; its workspace is gone."
        return context
    try:
        info = sandbox_files.info(sandbox.runtime_id, path)
        if not info["is_dir"]:
            context["file_view"] = _file_view(sandbox, info)
            path = str(PurePosixPath(path).parent)
        entries = sandbox_files.listing(sandbox.runtime_id, path)
        for entry in entries:
            entry["modified"] = _parsed_time(entry.get("modified_time"))
        context["entries"] = sorted(entries, key=lambda e: (not e["is_dir"], e["name"].lower()))
    except RuntimeError_ as exc:
        context["file_note"] = str(exc)
    context["dir"] = path
    context["crumbs"] = breadcrumbs(path)
    return context


def _parsed_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _file_view(sandbox: Sandbox, info: dict[str, Any]) -> dict[str, Any]:
    view = {
        "path": info["path"],
        "name": info["name"],
        "size": info["size"],
        "text": None,
        "note": "",
    }
    if info["size"] > MAX_VIEW_BYTES:
        view["note"] = f"Larger than {MAX_VIEW_BYTES // 1024} KiB: download it to read it."
        return view
    try:
        view["text"] = sandbox_files.read_text(sandbox.runtime_id, info["path"])
    except RuntimeError_:
        view["note"] = "Binary content: download it to read it."
    return view


def _side_page(request: TeamRequest, rows, keyset: Keyset, param: str, size: int) -> Page:
    """A page of a side list of the sandbox page; `param` carries its own cursor so the
    snapshot and event lists page independently."""
    try:
        return paginate(rows, keyset, limit=size, after=request.GET.get(param) or None)
    except BadCursor as exc:
        raise BadRequest(f"This page link is not valid ({exc}).") from None


def snapshot_context(request: TeamRequest, sandbox: Sandbox) -> dict[str, Any]:
    rows = Snapshot.objects.filter(project=sandbox.project, sandbox_public_id=sandbox.public_id)
    page = _side_page(request, rows, SNAPSHOT_KEYSET, "snapshots_after", SNAPSHOTS_SHOWN)
    return {"snapshots": page.items, "snapshot_page": page}


def event_context(request: TeamRequest, sandbox: Sandbox) -> dict[str, Any]:
    rows = LifecycleEvent.objects.filter(project=sandbox.project, sandbox_id=sandbox.public_id)
    page = _side_page(request, rows, EVENT_KEYSET, "events_after", EVENTS_SHOWN)
    return {"events": page.items, "event_page": page}


def detail_context(
    request: TeamRequest, sandbox: Sandbox, *, path: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        **state_context(request, sandbox),
        **process_context(sandbox),
        **file_context(sandbox, path),
        **snapshot_context(request, sandbox),
        **event_context(request, sandbox),
        "timeout_form": TimeoutForm(),
        "exec_form": ExecForm(),
        "volume_mounts": list(sandbox.volume_attachments.select_related("volume")),
        "ssh_accesses": live_accesses(sandbox),
        **extra,
    }
