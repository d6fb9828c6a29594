"""A run's `[outputs]`: copied out of the sandbox into the artifact store when the run ends,
so they stay downloadable after the sandbox is destroyed. Bounded in count and bytes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from console import sandbox_files
from console.agents import config as agent_config
from console.models import AgentRun, Sandbox
from console.runtime.base import RuntimeError_

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
    for configured in agent_config.output_paths(config):
        spath = _sandbox_path(workdir, configured)
        try:
            host = sandbox_files.resolve(sandbox.public_id, spath)
        except RuntimeError_ as exc:
            found.append(_missing(configured, spath, str(exc)[:200]))
            continue
        if host.is_symlink() or not host.exists():
            found.append(_missing(configured, spath, "not found"))
            continue
        files = [host] if host.is_file() else sorted(_walk(host))
        for path in files:
            if len(found) >= MAX_FILES:
                break
            rel = "" if path == host else "/" + path.relative_to(host).as_posix()
            entry_path = spath.rstrip("/") + rel
            size = path.stat().st_size
            entry: dict[str, Any] = {
                "configured_path": configured,
                "path": entry_path,
                "name": PurePosixPath(entry_path).name,
                "kind": "file",
                "size_bytes": size,
                "access": {"sandbox_id": sandbox.public_id, "path": entry_path},
            }
            if size > budget:
                entry["status"] = "too_large"
            else:
                dest = target_root / str(len(found))
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest, follow_symlinks=False)
                budget -= size
                entry["status"] = "available"
                entry["store_key"] = str(len(found))
            found.append(entry)
    return found


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                yield path


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
