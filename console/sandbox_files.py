"""Files inside a sandbox's /workspace: the domain layer behind /v1 files and the console's file browser.

The work is done by console.file_tree (shared with volumes); this module finds the
sandbox's tree through the runtime driver, whose `host_path` fails for a sandbox
without a runtime, and keeps the sandbox-id-first helpers its callers use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from console.file_tree import (  # noqa: F401  (re-exported for callers)
    COPY_CHUNK,
    MAX_TEXT_READ_BYTES,
    FileOpError,
    FileTree,
    entry_dict,
    iter_stream,
    parse_permissions,
)
from console.runtime import get_driver

WORKSPACE = "/workspace"


def tree(sandbox_id: str) -> FileTree:
    """The sandbox's workspace as a file tree (raises sandbox_not_found without a runtime)."""
    return FileTree(root=get_driver().host_path(sandbox_id, WORKSPACE), prefix=WORKSPACE)


def normalize(path: Any, field: str = "path") -> str:
    return FileTree(root=Path("/nonexistent"), prefix=WORKSPACE).normalize(path, field)


def resolve(sandbox_id: str, path: Any, *, must_exist: bool = False, field: str = "path") -> Path:
    return tree(sandbox_id).resolve(path, must_exist=must_exist, field=field)


def workspace_root(sandbox_id: str) -> Path:
    return tree(sandbox_id).root


def sandbox_path(root: Path, host: Path) -> str:
    """The sandbox path (`/workspace/...`) of a host path under the workspace root."""
    return FileTree(root=root, prefix=WORKSPACE).display(host)


def info(sandbox_id: str, path: Any) -> dict[str, Any]:
    return tree(sandbox_id).info(path)


def listing(sandbox_id: str, path: Any, depth: int = 1) -> list[dict[str, Any]]:
    return tree(sandbox_id).listing(path, depth)


def exists(sandbox_id: str, path: Any) -> bool:
    return tree(sandbox_id).exists(path)


def existing_file(sandbox_id: str, path: Any) -> Path:
    return tree(sandbox_id).existing_file(path)


def read_text(sandbox_id: str, path: Any) -> str:
    return tree(sandbox_id).read_text(path)


def write_chunks(sandbox_id: str, path: Any, chunks: Any, *, limit: int | None = None) -> Path:
    return tree(sandbox_id).write_chunks(path, chunks, limit=limit)


def mkdir(sandbox_id: str, path: Any) -> None:
    tree(sandbox_id).mkdir(path)


def remove(sandbox_id: str, path: Any) -> None:
    tree(sandbox_id).remove(path)


def rename(sandbox_id: str, old_path: Any, new_path: Any) -> dict[str, Any]:
    return tree(sandbox_id).rename(old_path, new_path)


def chmod(sandbox_id: str, path: Any, permissions: Any) -> None:
    tree(sandbox_id).chmod(path, permissions)


def tar_directory(sandbox_id: str, path: Any) -> BinaryIO:
    return tree(sandbox_id).tar_directory(path)
