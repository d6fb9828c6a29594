"""Files inside a sandbox's /workspace: the domain layer behind /v1 files and the console's file browser.

The work is done by console.file_tree (shared with volumes); this module finds the
sandbox's tree through the runtime driver, whose `host_path` fails for a sandbox
without a runtime, and keeps the sandbox-id-first helpers its callers use.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from console.file_tree import FileTree
from console.runtime import get_driver

WORKSPACE = "/workspace"


def tree(sandbox_id: str) -> FileTree:
    """The sandbox's workspace as a file tree (raises sandbox_not_found without a runtime)."""
    return FileTree(root=get_driver().host_path(sandbox_id, WORKSPACE), prefix=WORKSPACE)


def info(sandbox_id: str, path: Any) -> dict[str, Any]:
    return tree(sandbox_id).info(path)


def listing(sandbox_id: str, path: Any, depth: int = 1) -> list[dict[str, Any]]:
    return tree(sandbox_id).listing(path, depth)


def existing_file(sandbox_id: str, path: Any) -> Path:
    return tree(sandbox_id).existing_file(path)


def read_text(sandbox_id: str, path: Any) -> str:
    return tree(sandbox_id).read_text(path)


def write_chunks(
    sandbox_id: str, path: Any, chunks: Iterable[bytes], *, limit: int | None = None
) -> Path:
    return tree(sandbox_id).write_chunks(path, chunks, limit=limit)


def remove(sandbox_id: str, path: Any) -> None:
    tree(sandbox_id).remove(path)


def rename(sandbox_id: str, old_path: Any, new_path: Any) -> dict[str, Any]:
    return tree(sandbox_id).rename(old_path, new_path)


def chmod(sandbox_id: str, path: Any, permissions: Any) -> None:
    tree(sandbox_id).chmod(path, permissions)
