"""Safe extraction of an uploaded directory tar into a sandbox, then publication at the target.

Every entry is checked before it touches the disk: no absolute names, no `..`, no
symlink leading out of the tree (or written through), no hard links, devices or
fifos. Extraction goes, through the sandbox's file store, into a hidden directory
beside the target, and only a fully extracted tree is published (merge, replace, or
error when the target exists).
"""

from __future__ import annotations

import posixpath
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from console.runtime.base import FileStore


class UploadFailure(Exception):
    """An upload refused for one of the contract's UploadFailureDetail reasons. The reason
    says what went wrong; the `/v1` status it answers with is chosen by reason in
    console/api/errors.py."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retryable: bool = False,
        part_number: int | None = None,
        path: str | None = None,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.reason, self.message, self.retryable = reason, message, retryable
        self.part_number, self.path, self.details = part_number, path, details


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    name = member.name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return None  # the archive's own root
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise UploadFailure(
            "directory_extract_invalid_path",
            f"archive entry {member.name!r} escapes the target directory",
            path=member.name,
        )
    return path


def _check_symlink(path: PurePosixPath, target: str) -> None:
    """A link must stay inside the extracted tree, judged from where it sits."""
    depth = len(path.parent.parts)
    target = target.replace("\\", "/")
    if not target or target.startswith("/"):
        depth = -1
    for part in PurePosixPath(target).parts if depth >= 0 else ():
        if part == "..":
            depth -= 1
            if depth < 0:
                break
        elif part not in ("", "."):
            depth += 1
    if depth < 0:
        raise UploadFailure(
            "directory_extract_invalid_symlink",
            f"symlink {path} -> {target!r} points outside the upload",
            path=str(path),
        )


def _refuse_link_parents(files: FileStore, stage: str, path: PurePosixPath) -> None:
    """A file is never written through a symlink the archive made earlier."""
    current = stage
    for part in path.parent.parts:
        current = posixpath.join(current, part)
        if files.exists(current) and files.stat(current).type == "symlink":
            raise UploadFailure(
                "directory_extract_invalid_symlink",
                f"archive entry {path} would be written through a symlink",
                path=str(path),
            )


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(1024 * 1024):
        yield chunk


def extract(
    archive: Path, files: FileStore, stage: str, *, limit: int, user: str | None = None
) -> tuple[int, int]:
    """Extract into the empty sandbox directory `stage` through the sandbox's file store;
    return (bytes of files, number of files)."""
    total = files_count = 0
    try:
        tar = tarfile.open(archive, mode="r:")
    except tarfile.TarError as exc:
        raise UploadFailure(
            "directory_extract_unsupported_entry", f"not a readable tar archive: {exc}"
        ) from None
    with tar:
        for member in tar:
            path = _member_path(member)
            if path is None:
                continue
            _refuse_link_parents(files, stage, path)
            dest = posixpath.join(stage, str(path))
            files.makedirs(posixpath.dirname(dest), user=user)
            if files.exists(dest):
                current = files.stat(dest)
                if current.type != "dir" or not member.isdir():
                    files.remove(dest)
            if member.isdir():
                files.makedirs(dest, user=user)
                files.chmod(dest, (member.mode & 0o777) | 0o700)
            elif member.isfile():
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source:
                    files.write(
                        dest,
                        _chunks(source),
                        limit=limit,
                        user=user,
                        mode=(member.mode & 0o777) or 0o644,
                    )
                total += member.size
                files_count += 1
            elif member.issym():
                _check_symlink(path, member.linkname)
                files.symlink(dest, member.linkname, user=user)
            else:
                raise UploadFailure(
                    "directory_extract_unsupported_entry",
                    f"archive entry {member.name!r} is a hard link, device or fifo, which uploads do not accept",
                    path=member.name,
                )
    return total, files_count


def _is_real_dir(files: FileStore, path: str) -> bool:
    return files.exists(path) and files.stat(path).type == "dir"


def _merge_conflicts(files: FileStore, stage: str, target: str) -> list[str]:
    """Places where the upload and the existing tree disagree on file vs directory."""
    conflicts = []
    for src, entry in files.walk(stage):
        rel = posixpath.relpath(src, stage)
        dst = posixpath.join(target, rel)
        if files.exists(dst) and (entry.type == "dir") != _is_real_dir(files, dst):
            conflicts.append(rel)
    return conflicts


def _merge(files: FileStore, stage: str, target: str) -> None:
    for entry in sorted(files.list(stage), key=lambda e: e.name):
        dst = posixpath.join(target, entry.name)
        if entry.type == "dir" and _is_real_dir(files, dst):
            _merge(files, entry.path, dst)
        else:
            files.rename(entry.path, dst)


def extract_and_publish(
    archive: Path,
    files: FileStore,
    target: str,
    conflict: str,
    display_path: str,
    *,
    limit: int,
    user: str | None = None,
) -> tuple[int, int]:
    parent, name = posixpath.split(target.rstrip("/"))
    parent = parent or "/"
    files.makedirs(parent, user=user)
    if conflict == "error" and files.exists(target):
        raise UploadFailure(
            "target_conflict", f"{display_path} already exists (conflict=error)", path=display_path
        )
    stage = posixpath.join(parent, f".{name or 'root'}.{uuid.uuid4().hex[:8]}.upload")
    files.mkdir(stage, user=user)
    trash: str | None = None
    try:
        published = extract(archive, files, stage, limit=limit, user=user)
        files.chmod(stage, 0o755)
        if not files.exists(target):
            files.rename(stage, target)
        elif conflict == "replace":
            trash = posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:8]}.old")
            files.rename(target, trash)
            files.rename(stage, target)
        elif not _is_real_dir(files, target):
            raise UploadFailure(
                "target_conflict",
                f"{display_path} exists and is not a directory",
                path=display_path,
            )
        else:
            conflicts = _merge_conflicts(files, stage, target)
            if conflicts:
                raise UploadFailure(
                    "target_conflict",
                    f"file/directory clash at {conflicts[0]} under {display_path}",
                    path=display_path,
                    details={"conflicts": conflicts[:100]},
                )
            _merge(files, stage, target)
        return published
    finally:
        for leftover in (stage, trash):
            if leftover and files.exists(leftover):
                files.remove(leftover)
