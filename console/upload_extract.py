"""Safe extraction of an uploaded directory tar into a sandbox, then publication at the target.

Every entry is checked before it touches the disk: no absolute names, no `..`, no
symlink leading out of the tree (or written through), no hard links, devices or
fifos. Extraction goes into a hidden directory beside the target, and only a fully
extracted tree is published (merge, replace, or error when the target exists).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath


class UploadFailure(Exception):
    """An upload refused for one of the contract's UploadFailureDetail reasons."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retryable: bool = False,
        status: int = 400,
        part_number: int | None = None,
        path: str | None = None,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.reason, self.message, self.retryable, self.status = reason, message, retryable, status
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


def _safe_parent(stage: Path, path: PurePosixPath) -> Path:
    """Create the parents of `path` under `stage`, refusing to pass through a symlink."""
    current = stage
    for part in path.parent.parts:
        current = current / part
        if current.is_symlink():
            raise UploadFailure(
                "directory_extract_invalid_symlink",
                f"archive entry {path} would be written through a symlink",
                path=str(path),
            )
        if not current.exists():
            current.mkdir(mode=0o755)
        elif not current.is_dir():
            raise UploadFailure(
                "directory_extract_invalid_path",
                f"{current.name} is both a file and a directory",
                path=str(path),
            )
    return stage / path


def extract(archive: Path, stage: Path) -> tuple[int, int]:
    """Extract into the empty directory `stage`; return (bytes of files, number of files)."""
    total = files = 0
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
            dest = _safe_parent(stage, path)
            if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
                dest.unlink()
            if member.isdir():
                dest.mkdir(mode=0o755, exist_ok=True)
                dest.chmod((member.mode & 0o777) | 0o700)
            elif member.isfile():
                if dest.is_dir():
                    shutil.rmtree(dest)
                source = tar.extractfile(member)
                fd = os.open(
                    dest,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                    (member.mode & 0o777) or 0o644,
                )
                with os.fdopen(fd, "wb") as out, source:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                total += member.size
                files += 1
            elif member.issym():
                _check_symlink(path, member.linkname)
                if dest.is_dir():
                    shutil.rmtree(dest)
                os.symlink(member.linkname, dest)
            else:
                raise UploadFailure(
                    "directory_extract_unsupported_entry",
                    f"archive entry {member.name!r} is a hard link, device or fifo, which uploads do not accept",
                    path=member.name,
                )
    return total, files


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _merge_conflicts(stage: Path, target: Path) -> list[str]:
    """Places where the upload and the existing tree disagree on file vs directory."""
    conflicts = []
    for dirpath, dirnames, filenames in os.walk(stage):
        for name in dirnames + filenames:
            src = Path(dirpath, name)
            dst = target / src.relative_to(stage)
            if os.path.lexists(dst) and _is_real_dir(src) != _is_real_dir(dst):
                conflicts.append(str(src.relative_to(stage)))
    return conflicts


def _merge(stage: Path, target: Path) -> None:
    for entry in sorted(stage.iterdir()):
        dst = target / entry.name
        if _is_real_dir(entry) and _is_real_dir(dst):
            _merge(entry, dst)
        else:
            os.replace(entry, dst)


def extract_and_publish(
    archive: Path, target: Path, conflict: str, display_path: str
) -> tuple[int, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    if conflict == "error" and os.path.lexists(target):
        raise UploadFailure(
            "target_conflict", f"{display_path} already exists (conflict=error)", path=display_path
        )
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".upload"))
    trash: Path | None = None
    try:
        published = extract(archive, stage)
        stage.chmod(0o755)
        if not os.path.lexists(target):
            os.rename(stage, target)
        elif conflict == "replace":
            trash = (
                Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
                / "old"
            )
            os.rename(target, trash)
            os.rename(stage, target)
        elif not _is_real_dir(target):
            raise UploadFailure(
                "target_conflict",
                f"{display_path} exists and is not a directory",
                path=display_path,
            )
        else:
            conflicts = _merge_conflicts(stage, target)
            if conflicts:
                raise UploadFailure(
                    "target_conflict",
                    f"file/directory clash at {conflicts[0]} under {display_path}",
                    path=display_path,
                    details={"conflicts": conflicts[:100]},
                )
            _merge(stage, target)
        return published
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash.parent, ignore_errors=True)
