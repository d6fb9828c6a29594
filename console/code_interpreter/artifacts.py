"""Artifacts: what an execution produced, copied out of the sandbox when it ends.

Two kinds: `file` (a file under the context's cwd written during the execution, such
as a figure saved with matplotlib's savefig) and `image` (a PNG or JPEG the code
displayed, such as a plt.show() figure). Copies live under DATA_DIR, so an artifact
downloads the same bytes later even if the sandbox changes the file. Bounded: files
up to MAX_BYTES, MAX_PER_EXECUTION per execution, kept for RETENTION.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import mimetypes
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from console.errors import DomainError
from console.models import CodeArtifact, CodeContext, CodeRun
from console.runtime import get_driver
from console.runtime.base import FileEntry, RuntimeError_
from console.timefmt import iso

log = logging.getLogger(__name__)

MAX_BYTES = 32 * 1024 * 1024
MAX_PER_EXECUTION = 20
SCAN_DEPTH = 4
SCAN_MAX_ENTRIES = 5000
RETENTION = timedelta(days=7)
COPY_CHUNK = 1024 * 1024
# Where Python, Jupyter and tools keep their own files: never an artifact.
SKIPPED_PARTS = {"__pycache__", "node_modules", "site-packages"}
PREVIEW_TEXT_BYTES = 64 * 1024
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp")
TEXT_MIMES = ("application/json", "application/xml", "application/javascript")


def store_dir() -> Path:
    root = Path(settings.DATA_DIR) / "code" / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root


def stored_path(artifact: CodeArtifact) -> Path:
    return store_dir() / artifact.public_id


def to_dict(artifact: CodeArtifact) -> dict[str, Any]:
    base = f"/v1/sandboxes/{artifact.sandbox.public_id}/code/artifacts/{artifact.public_id}"
    return {
        "id": artifact.public_id,
        "context_id": artifact.context_public_id,
        "execution_count": artifact.execution_count,
        "kind": artifact.kind,
        "mime_type": artifact.mime_type,
        "name": artifact.name,
        "size_bytes": int(artifact.size_bytes),
        "sha256": artifact.sha256,
        "created_at": iso(artifact.created_at),
        "expires_at": iso(artifact.expires_at),
        "preview_url": f"{base}/preview",
        "download_url": f"{base}/download",
        "metadata": {"path": artifact.path} if artifact.path else {},
    }


def _new(
    context: CodeContext, run: CodeRun | None, count: int | None, **fields: Any
) -> CodeArtifact:
    return CodeArtifact(
        project=context.project,
        sandbox=context.sandbox,
        context_public_id=context.public_id,
        run=run,
        execution_count=count,
        expires_at=timezone.now() + RETENTION,
        **fields,
    )


def from_display(
    context: CodeContext, run: CodeRun | None, count: int | None, result: dict[str, Any], n: int
) -> CodeArtifact | None:
    """A displayed image (result keys `png`/`jpeg` in base64, `svg` as text) kept as an
    `image` artifact."""
    for key, mime in (("png", "image/png"), ("jpeg", "image/jpeg"), ("svg", "image/svg+xml")):
        value = result.get(key)
        if not isinstance(value, str):
            continue
        try:
            data = value.encode() if key == "svg" else base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            return None
        if not data or len(data) > MAX_BYTES:
            return None
        artifact = _new(
            context,
            run,
            count,
            kind="image",
            mime_type=mime,
            name=f"output-{count or 0}-{n}.{key.replace('jpeg', 'jpg')}",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        artifact.save()
        stored_path(artifact).write_bytes(data)
        return artifact
    return None


def _scan(sandbox_id: str, top: str) -> list[FileEntry]:
    """Files under `top`, breadth first, SCAN_DEPTH levels deep, skipping hidden and tool
    directories without entering them, and looking at SCAN_MAX_ENTRIES entries at most
    (a workspace with a huge dependency tree costs the same as a small one)."""
    files = get_driver().files(sandbox_id)
    found: list[FileEntry] = []
    seen = 0
    level = [top]
    for _depth in range(SCAN_DEPTH):
        below: list[str] = []
        for directory in level:
            try:
                entries = files.list(directory, depth=1)
            except RuntimeError_ as exc:
                log.info("artifact scan skips %s: %s", directory, exc)
                continue
            for entry in entries:
                seen += 1
                if seen > SCAN_MAX_ENTRIES:
                    return found
                if entry.name.startswith(".") or entry.name in SKIPPED_PARTS:
                    continue
                if entry.type == "dir":
                    below.append(entry.path)
                elif entry.type == "file":
                    found.append(entry)
        level = below
    return found


def _modified(entry: FileEntry) -> datetime | None:
    try:
        return datetime.fromisoformat(entry.modified_time.replace("Z", "+00:00"))
    except ValueError:
        return None


def collect_files(
    context: CodeContext, run: CodeRun | None, count: int | None, since: datetime, room: int
) -> list[CodeArtifact]:
    """Files under the context's cwd written since `since` (at most `room` of them)."""
    if room <= 0:
        return []
    found: list[CodeArtifact] = []
    for entry in _scan(context.sandbox.runtime_id, context.cwd):
        modified = _modified(entry)
        if entry.size > MAX_BYTES or modified is None or modified < since:
            continue
        artifact = _copy(context, run, count, entry)
        if artifact is not None:
            found.append(artifact)
        if len(found) >= room:
            break
    return found


def _copy(
    context: CodeContext, run: CodeRun | None, count: int | None, entry: FileEntry
) -> CodeArtifact | None:
    mime = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
    artifact = _new(
        context,
        run,
        count,
        kind="file",
        mime_type=mime,
        name=entry.name[:255],
        path=entry.path,
        size_bytes=0,
        sha256="",
    )
    artifact.save()
    target = stored_path(artifact)
    digest = hashlib.sha256()
    size = 0
    try:
        with get_driver().files(context.sandbox.runtime_id).open_read(entry.path) as src:
            with open(target, "wb") as out:
                while chunk := src.read(COPY_CHUNK):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise OSError("grew past the artifact size limit while copied")
                    digest.update(chunk)
                    out.write(chunk)
    except (OSError, RuntimeError_) as exc:
        log.info("artifact %s not kept: %s", entry.path, exc)
        target.unlink(missing_ok=True)
        artifact.delete()
        return None
    sha = digest.hexdigest()
    # The same bytes at the same path as before (a file the run did not change): not new.
    if (
        CodeArtifact.objects.filter(
            sandbox=context.sandbox, path=entry.path, sha256=sha, kind="file"
        )
        .exclude(pk=artifact.pk)
        .exists()
    ):
        target.unlink(missing_ok=True)
        artifact.delete()
        return None
    artifact.size_bytes = size
    artifact.sha256 = sha
    artifact.save(update_fields=["size_bytes", "sha256"])
    return artifact


def get(sandbox_pk: int, public_id: str) -> CodeArtifact:
    artifact = (
        CodeArtifact.objects.select_related("sandbox")
        .filter(sandbox_id=sandbox_pk, public_id=public_id, expires_at__gt=timezone.now())
        .first()
    )
    if artifact is None or not stored_path(artifact).exists():
        raise DomainError("artifact_not_found", f"Artifact {public_id} not found")
    return artifact


def delete(artifact: CodeArtifact) -> None:
    stored_path(artifact).unlink(missing_ok=True)
    artifact.delete()


def preview(artifact: CodeArtifact) -> tuple[bytes, str]:
    """What a preview shows: an image as it is, the start of a text file; else refused."""
    mime = artifact.mime_type
    path = stored_path(artifact)
    if mime in IMAGE_MIMES:
        return path.read_bytes(), mime
    if mime.startswith("text/") or mime in TEXT_MIMES:
        with open(path, "rb") as fh:
            return fh.read(PREVIEW_TEXT_BYTES), f"{mime}; charset=utf-8"
    raise DomainError(
        "preview_unavailable",
        f"No preview for {mime} artifacts; download it instead",
        suggested_action=f"nullspace sandbox code artifact download SB {artifact.public_id} -o FILE",
    )


def remove_expired() -> int:
    gone = 0
    for artifact in CodeArtifact.objects.filter(expires_at__lte=timezone.now())[:1000]:
        delete(artifact)
        gone += 1
    return gone
