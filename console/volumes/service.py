"""The volume domain: create, find, describe, delete, and mount volumes into sandboxes.

Used by /v1/volumes, the console pages and sandbox create/fork/resume. Functions
raise DomainError with the contract's codes. A volume's files are a runtime FileStore
(console/volumes/files.py) over the directory its store gives (console/volumes/store.py),
so console/sandboxes/files.py serves them like a sandbox's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from console.actor import Actor
from console.errors import DomainError
from console.models import (
    LIVE_STATUSES,
    Project,
    Sandbox,
    Volume,
    VolumeAttachment,
)
from console.runtime.base import RuntimeError_, VolumeMount
from console.timefmt import iso
from console.volumes.files import VolumeFileStore
from console.volumes.store import VolumeStore, VolumeStoreError, get_store, store_named

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
VOLUME_FIELDS = (
    "id",
    "name",
    "created_at",
    "used_bytes",
    "inode_count",
    "mount_count",
    "max_size_bytes",
    "max_file_count",
    "max_mounts",
    "last_reconciled_at",
    "status",
    "host_id",
)
MAX_MOUNTS_PER_SANDBOX = 8
# Where a volume may not be mounted: the system's own directories (and / itself).
RESERVED_MOUNT_PATHS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)
WORKSPACE = "/workspace"


# --- lookups ---------------------------------------------------------------------------


def _missing(ref: str) -> DomainError:
    # Exactly `not_found`: the client falls back between id and name lookups only on it.
    return DomainError("not_found", f"Volume {ref} not found")


def get_volume(project: Project, public_id: str) -> Volume:
    volume = Volume.objects.filter(project=project, public_id=public_id).first()
    if volume is None:
        raise _missing(public_id)
    return volume


def get_volume_by_name(project: Project, name: str) -> Volume:
    volume = Volume.objects.filter(project=project, name=name).first()
    if volume is None:
        raise _missing(name)
    return volume


def resolve_ref(project: Project, ref: Any) -> Volume:
    """A volume by `vol_` id or by name, as the CLI's --volume ref=... means it."""
    if not isinstance(ref, str) or not ref.strip():
        raise DomainError("invalid_request", "volume `ref` must be a volume name or id")
    ref = ref.strip()
    volume = Volume.objects.filter(project=project, public_id=ref).first()
    return volume or get_volume_by_name(project, ref)


def store_of(volume: Volume) -> VolumeStore:
    return store_named(volume.backend)


def files(volume: Volume) -> VolumeFileStore:
    """The volume's files; every write is held to the volume's size quota."""
    store = store_of(volume)
    try:
        root = store.path(volume.public_id)
    except VolumeStoreError as exc:
        raise DomainError(
            "volume_error", f"Volume {volume.public_id} is unavailable: {exc}"
        ) from exc
    return VolumeFileStore(
        str(root),
        id_base=settings.RUNTIME_ID_BASE,
        space_left=store.space_left(volume.public_id, volume.max_size_bytes),
    )


# --- shapes ----------------------------------------------------------------------------


def live_attachments(volume: Volume) -> list[VolumeAttachment]:
    return list(
        volume.attachments.filter(sandbox__status__in=LIVE_STATUSES).select_related("sandbox")
    )


def volume_to_dict(volume: Volume, *, mount_count: int | None = None) -> dict[str, Any]:
    """VolumeInfo (lenient): usage read from the store, mounts from live sandboxes."""
    if mount_count is None:
        mount_count = len(live_attachments(volume))
    status = "attached" if mount_count else "available"
    try:
        usage = store_of(volume).usage(volume.public_id, volume.max_size_bytes)
        used, inodes, capacity = usage.used_bytes, usage.inode_count, usage.capacity_bytes
    except (VolumeStoreError, OSError):
        used = inodes = 0
        capacity, status = volume.max_size_bytes, "error"
    return {
        "id": volume.public_id,
        "name": volume.name,
        "created_at": iso(volume.created_at),
        "used_bytes": used,
        "inode_count": inodes,
        "mount_count": mount_count,
        "max_size_bytes": capacity,
        "max_file_count": None,
        "max_mounts": None,
        "last_reconciled_at": None,
        "status": status,
        "host_id": None,
    }


def attachment_to_dict(attachment: VolumeAttachment) -> dict[str, Any]:
    """VolumeAttachment (lenient)."""
    return {
        "id": attachment.public_id,
        "volume_id": attachment.volume.public_id,
        "sandbox_id": attachment.sandbox.public_id,
        "mount_path": attachment.mount_path,
        "read_only": attachment.read_only,
        "state": "mounted" if attachment.sandbox.status in LIVE_STATUSES else "released",
        "subpath": attachment.subpath or None,
        "created_at": iso(attachment.created_at),
        "updated_at": iso(attachment.updated_at),
    }


# --- create and delete -----------------------------------------------------------------


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise DomainError(
            "invalid_request",
            "A volume name is 1-63 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
        )
    return name


def create_volume(project: Project, name: Any, *, actor: Actor) -> Volume:
    name = validate_name(name)
    store = get_store()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        if Volume.objects.filter(project=project).count() >= settings.MAX_VOLUMES_PER_PROJECT:
            raise DomainError(
                "volume_limit_exceeded",
                f"This project already has {settings.MAX_VOLUMES_PER_PROJECT} volumes, its limit",
                suggested_action="Delete a volume you no longer need.",
            )
        if Volume.objects.filter(project=project, name=name).exists():
            raise DomainError("volume_conflict", f"A volume named {name} already exists")
        try:
            volume = Volume.objects.create(
                project=project,
                name=name,
                backend=store.name,
                max_size_bytes=settings.VOLUME_MAX_BYTES,
                created_by_key=actor.api_key,
            )
        except IntegrityError:
            raise DomainError("volume_conflict", f"A volume named {name} already exists") from None
        try:
            store.create(volume.public_id, volume.max_size_bytes)
            files(volume).own_root()
        except (VolumeStoreError, OSError) as exc:
            raise DomainError(
                "volume_error", f"Could not make the volume's storage: {exc}"
            ) from exc
    return volume


def delete_volume(volume: Volume, *, force: bool = False) -> None:
    """Delete a volume and its files. A volume mounted by a live sandbox is refused
    (`volume_busy`) unless forced; forced, the sandboxes lose the mount for new processes
    and the ones already running keep their view until they exit."""
    with transaction.atomic():
        Volume.objects.select_for_update().filter(pk=volume.pk).first()
        users = sorted({a.sandbox.public_id for a in live_attachments(volume)})
        if users and not force:
            raise DomainError(
                "volume_busy",
                f"Volume {volume.name} is in use: mounted by {', '.join(users)}",
                suggested_action="Kill those sandboxes first, or delete with force=true.",
                details={"reason": "volume_in_use", "sandbox_ids": users},
            )
        volume.delete()  # its files go on commit (console/volumes/cleanup.py)


# --- mounts ----------------------------------------------------------------------------


def _mount_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise DomainError("invalid_request", "volume `mount_path` must be an absolute path")
    if "\x00" in value or ".." in value.split("/") or len(value) > 1024:
        raise DomainError("invalid_request", f"volume mount_path {value!r} is not a plain path")
    path = str(PurePosixPath(value))
    reserved = [r for r in ("/", WORKSPACE, *RESERVED_MOUNT_PATHS) if r == path]
    reserved += [r for r in RESERVED_MOUNT_PATHS if path.startswith(r + "/")]
    if reserved:
        raise DomainError(
            "invalid_request",
            f"volume mount_path {path} is a system directory; mount it elsewhere, e.g. /data",
            details={"reason": "volume_invalid_mount_path"},
        )
    return path


def _subpath(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or "\x00" in value or ".." in value.split("/"):
        raise DomainError("invalid_request", "volume `subpath` must be a path inside the volume")
    return str(PurePosixPath("/", value)).lstrip("/")


def parse_mounts(project: Project, raw: Any) -> list[dict[str, Any]]:
    """The `volumes` of a sandbox create, checked: [{volume, mount_path, subpath, read_only}]."""
    if raw in (None, []):
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise DomainError(
            "invalid_request", "volumes must be a list of {ref, mount_path, read_only}"
        )
    if len(raw) > MAX_MOUNTS_PER_SANDBOX:
        raise DomainError(
            "invalid_request", f"at most {MAX_MOUNTS_PER_SANDBOX} volumes per sandbox"
        )
    mounts: list[dict[str, Any]] = []
    for item in raw:
        read_only = item.get("read_only", False)
        if not isinstance(read_only, bool):
            raise DomainError("invalid_request", "volume `read_only` must be true or false")
        volume = resolve_ref(project, item.get("ref"))
        if not read_only and not store_of(volume).enforces_mount_quota:
            raise DomainError(
                "invalid_request",
                f"Volume {volume.name} lives on a file system that cannot hold a read-write "
                "mount to its quota; mount it with ro=true (see docs/volumes.md)",
            )
        mounts.append(
            {
                "volume": volume,
                "mount_path": _mount_path(item.get("mount_path")),
                "subpath": _subpath(item.get("subpath")),
                "read_only": read_only,
            }
        )
    targets = sorted(m["mount_path"] for m in mounts)
    for first, second in zip(targets, targets[1:], strict=False):
        if second == first or second.startswith(first.rstrip("/") + "/"):
            raise DomainError(
                "invalid_request",
                f"volume mounts {first} and {second} overlap",
                details={"reason": "volume_overlapping_mounts"},
            )
    return mounts


def attach(sandbox: Sandbox, mounts: list[dict[str, Any]]) -> None:
    """Record the mounts of a new sandbox (before its runtime starts)."""
    for mount in mounts:
        VolumeAttachment.objects.create(
            volume=mount["volume"],
            sandbox=sandbox,
            mount_path=mount["mount_path"],
            subpath=mount["subpath"],
            read_only=mount["read_only"],
        )


def mounts_of(sandbox: Sandbox) -> list[dict[str, Any]]:
    """A sandbox's mounts in parse_mounts' shape, for a fork or a restore to inherit."""
    return [
        {
            "volume": a.volume,
            "mount_path": a.mount_path,
            "subpath": a.subpath,
            "read_only": a.read_only,
        }
        for a in sandbox.volume_attachments.select_related("volume")
    ]


@contextmanager
def runtime_mounts(mounts: list[dict[str, Any]]) -> Iterator[list[VolumeMount]]:
    """What the driver binds, valid inside the `with`: each volume's root, or its subpath
    (made if missing) opened inside the volume and named by its descriptor
    (/proc/<pid>/fd/<n>), so a sandbox that swaps a directory of a shared volume for a
    symlink meanwhile cannot make the bind land anywhere else."""
    result: list[VolumeMount] = []
    opened: list[int] = []
    try:
        for mount in mounts:
            volume: Volume = mount["volume"]
            store = files(volume)
            source = store.root
            if mount["subpath"]:
                try:
                    spath = store.path("/" + mount["subpath"])
                    if not store.exists(spath):
                        store.makedirs(spath)
                    fd = store.open_fd(spath, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                except RuntimeError_ as exc:
                    raise DomainError(
                        "invalid_request",
                        f"subpath {mount['subpath']} of volume {volume.name}: {exc}",
                    ) from None
                except NotADirectoryError:
                    raise DomainError(
                        "invalid_request",
                        f"subpath {mount['subpath']} of volume {volume.name} is not a directory",
                    ) from None
                opened.append(fd)
                source = f"/proc/{os.getpid()}/fd/{fd}"
            result.append(
                VolumeMount(
                    source=Path(source), target=mount["mount_path"], read_only=mount["read_only"]
                )
            )
        yield result
    finally:
        for fd in opened:
            os.close(fd)


def sandbox_attachments(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The `metadata.volume_attachments` the client reads from SandboxInfo."""
    rows = sandbox.volume_attachments.all()  # prefetched by list views
    return [attachment_to_dict(row) for row in rows]
