"""A run's `[outputs]`: copied out of the sandbox into the artifact store when the run ends,
so they stay downloadable after the sandbox is destroyed. Bounded in count and bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from console.agents import config as agent_config
from console.models import AgentRun, Sandbox
from console.runtime.base import FileEntry, FileStore, RuntimeError_
from console.sandboxes import files as sandbox_files

MAX_FILES = 1000


def store_dir(run: AgentRun) -> Path:
    return Path(settings.DATA_DIR) / "agents" / "outputs" / run.public_id


def _sandbox_path(workdir: str, configured: str) -> str:
    return configured if configured.startswith("/") else f"{workdir.rstrip('/')}/{configured}"


def collect(run: AgentRun, sandbox: Sandbox) -> list[dict[str, Any]]:
    config = run.version.config
    workdir = config.get("workdir", "/workspace/project")
    target_root = store_dir(run)
    budget = settings.AGENT_MAX_OUTPUT_BYTES
    found: list[dict[str, Any]] = []
    files = sandbox_files.store(sandbox.runtime_id)
    for configured in agent_config.output_paths(config):
        spath = _sandbox_path(workdir, configured)
        try:
            top = files.stat(spath)
            if top.type == "symlink":
                found.append(_missing(configured, spath, "a symlink (outputs are files)"))
                continue
            entries = (
                [(spath, top)]
                if top.type == "file"
                else sorted(_files_under(files, spath), key=lambda item: item[0])
            )
        except RuntimeError_ as exc:
            found.append(_missing(configured, spath, str(exc)[:200]))
            continue
        for path, entry in entries:
            if len(found) >= MAX_FILES:
                break
            item: dict[str, Any] = {
                "configured_path": configured,
                "path": path,
                "name": PurePosixPath(path).name,
                "kind": "file",
                "size_bytes": entry.size,
                "access": {"sandbox_id": sandbox.public_id, "path": path},
            }
            if entry.size > budget:
                item["status"] = "too_large"
            else:
                key = str(len(found))
                dest = target_root / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                with files.open_read(path) as source, dest.open("wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                budget -= entry.size
                item["status"] = "available"
                item["store_key"] = key
            found.append(item)
    return found


def _files_under(files: FileStore, spath: str) -> Iterator[tuple[str, FileEntry]]:
    for path, entry in files.walk(spath):
        if entry.type == "file":
            yield path, entry


def _missing(configured: str, spath: str, why: str) -> dict[str, Any]:
    return {
        "configured_path": configured,
        "path": spath,
        "name": PurePosixPath(spath).name,
        "kind": "missing",
        "status": "missing",
        "reason": why,
    }


def public(entry: dict[str, Any], download_url: str | None) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k != "store_key"}
    if download_url and entry.get("status") == "available":
        out["download_url"] = download_url
    return out


def stored_file(run: AgentRun, index: int) -> tuple[Path, dict[str, Any]] | None:
    entries = run.outputs or []
    if not 0 <= index < len(entries):
        return None
    entry = entries[index]
    key = entry.get("store_key")
    if not key:
        return None
    path = store_dir(run) / str(key)
    return (path, entry) if path.is_file() else None


def remove(run: AgentRun) -> None:
    shutil.rmtree(store_dir(run), ignore_errors=True)
