"""Tree paths to real paths, refusing every way out of the tree's root.

A tree is a real directory shown under a prefix: a sandbox's workspace as
`/workspace/...`, a volume as `/...` (prefix `/`). Defaults are the sandbox's.
"""

from __future__ import annotations

import functools
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


def sandbox_path(path: str | None, prefix: str = WORKSPACE) -> str:
    """Normalise a tree path: relative paths are under `prefix`; no way out of it."""
    path = (path or "").strip() or prefix
    if "\0" in path:
        raise PathRefused("path contains a NUL byte")
    if ".." in path.replace("\\", "/").split("/"):
        raise PathRefused(f"path {path!r} uses '..'; give a path inside {prefix}")
    joined = posixpath.normpath(posixpath.join(prefix, path))
    if joined.startswith("//"):
        joined = "/" + joined.lstrip("/")  # POSIX keeps a leading `//`; we never mean it
    if prefix != "/" and joined != prefix and not joined.startswith(prefix + "/"):
        raise PathRefused(f"path {path!r} is outside {prefix}")
    return joined


def to_host(
    root: Path, path: str | None, *, follow_symlinks: bool = True, prefix: str = WORKSPACE
) -> Path:
    """The real path under `root` (the tree's directory) for a tree path.

    Symlinks are resolved and the result must stay inside root. With
    follow_symlinks=False the last component is not followed (for lstat, unlink,
    rename of a link itself); its parent must still resolve inside root.
    """
    spath = sandbox_path(path, prefix)
    rel = spath[len(prefix) :].lstrip("/")
    real_root = root.resolve()
    candidate = real_root / rel if rel else real_root
    if follow_symlinks or candidate == real_root:
        resolved = candidate.resolve()
    else:
        resolved = candidate.parent.resolve() / candidate.name
    if resolved != real_root and real_root not in resolved.parents:
        raise PathRefused(f"path {spath!r} leads outside {prefix} through a symlink")
    return resolved


def to_sandbox(root: Path, host: Path, prefix: str = WORKSPACE) -> str:
    rel = host.relative_to(root.resolve()).as_posix()
    return prefix if rel == "." else f"{prefix.rstrip('/')}/{rel}"


@functools.lru_cache(maxsize=256)
def _name(lookup: Callable[[int], tuple[Any, ...]], ident: int) -> str:
    # Cached: a listing of 10,000 files would otherwise read /etc/passwd 20,000 times.
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


def listing(
    root: Path, host_dir: Path, depth: int, prefix: str = WORKSPACE, limit: int | None = None
) -> list[FileEntry]:
    """Entries under host_dir down to `depth` levels (at most `limit`), never following
    symlinked dirs."""
    if not host_dir.is_dir():
        if host_dir.exists():
            raise PathRefused(f"{to_sandbox(root, host_dir, prefix)} is not a directory")
        raise FileMissing(f"{to_sandbox(root, host_dir, prefix)} does not exist")
    out: list[FileEntry] = []
    # Tree paths by string joins from the listed directory's own: resolving the root per
    # entry cost more than the lstat (10,000 entries).
    base = to_sandbox(root, host_dir, prefix).rstrip("/")

    def walk(directory: Path, shown: str, level: int) -> None:
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for child in children:
            if limit is not None and len(out) >= limit:
                return
            path = Path(child.path)
            item = entry(path, f"{shown}/{child.name}")
            out.append(item)
            if level < depth and item.type == "dir":
                walk(path, f"{shown}/{child.name}", level + 1)

    walk(host_dir, base, 1)
    return out
