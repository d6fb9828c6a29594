"""Sandbox paths (`/workspace/...`) to real paths, refusing every way out of /workspace."""

from __future__ import annotations

import grp
import os
import posixpath
import pwd
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.runtime.base import FileEntry, FileMissing, PathRefused

WORKSPACE = "/workspace"


def sandbox_path(path: str | None) -> str:
    """Normalise a sandbox path: relative paths are under /workspace; no way out of it."""
    path = (path or "").strip() or WORKSPACE
    if "\0" in path:
        raise PathRefused("path contains a NUL byte")
    if ".." in path.replace("\\", "/").split("/"):
        raise PathRefused(f"path {path!r} uses '..'; give a path inside {WORKSPACE}")
    joined = posixpath.normpath(posixpath.join(WORKSPACE, path))
    if joined != WORKSPACE and not joined.startswith(WORKSPACE + "/"):
        raise PathRefused(f"path {path!r} is outside {WORKSPACE}")
    return joined


def to_host(root: Path, path: str | None, *, follow_symlinks: bool = True) -> Path:
    """The real path under `root` (the workspace directory) for a sandbox path.

    Symlinks are resolved and the result must stay inside root. With
    follow_symlinks=False the last component is not followed (for lstat, unlink,
    rename of a link itself); its parent must still resolve inside root.
    """
    spath = sandbox_path(path)
    rel = spath[len(WORKSPACE) :].lstrip("/")
    real_root = root.resolve()
    candidate = real_root / rel if rel else real_root
    if follow_symlinks or candidate == real_root:
        resolved = candidate.resolve()
    else:
        resolved = candidate.parent.resolve() / candidate.name
    if resolved != real_root and real_root not in resolved.parents:
        raise PathRefused(f"path {spath!r} leads outside {WORKSPACE} through a symlink")
    return resolved


def to_sandbox(root: Path, host: Path) -> str:
    rel = host.relative_to(root.resolve()).as_posix()
    return WORKSPACE if rel == "." else f"{WORKSPACE}/{rel}"


def _name(lookup: Callable[[int], Any], ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def entry(host: Path, spath: str) -> FileEntry:
    """Describe host (not following a final symlink) as the sandbox path spath."""
    try:
        st = host.lstat()
    except FileNotFoundError as exc:
        raise FileMissing(f"{spath} does not exist") from exc
    is_link = stat.S_ISLNK(st.st_mode)
    target = os.readlink(host) if is_link else None
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileEntry(
        name=posixpath.basename(spath) or spath,
        path=spath,
        is_dir=is_dir,
        size=st.st_size,
        type="symlink" if is_link else ("dir" if is_dir else "file"),
        mode=stat.S_IMODE(st.st_mode),
        permissions=stat.filemode(st.st_mode),
        owner=_name(pwd.getpwuid, st.st_uid),
        group=_name(grp.getgrgid, st.st_gid),
        modified_time=datetime.fromtimestamp(st.st_mtime, UTC).isoformat().replace("+00:00", "Z"),
        symlink_target=target,
    )


def listing(root: Path, host_dir: Path, depth: int) -> list[FileEntry]:
    """Entries under host_dir down to `depth` levels, never following symlinked dirs."""
    if not host_dir.is_dir():
        if host_dir.exists():
            raise PathRefused(f"{to_sandbox(root, host_dir)} is not a directory")
        raise FileMissing(f"{to_sandbox(root, host_dir)} does not exist")
    out: list[FileEntry] = []

    def walk(directory: Path, level: int) -> None:
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for child in children:
            path = Path(child.path)
            item = entry(path, to_sandbox(root, path))
            out.append(item)
            if level < depth and item.type == "dir":
                walk(path, level + 1)

    walk(host_dir, 1)
    return out
