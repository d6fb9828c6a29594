"""The steps a run, a service start and an artifact build share, on the public runtime API.

A backing sandbox comes from the version's template (or from an artifact's snapshot),
the bundle is unpacked at the workdir with the same checked extraction uploads use,
and commands run as sandbox processes whose output is followed into log events.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from console.actor import SYSTEM
from console.agents import config as agent_config
from console.agents.logs import LineSink
from console.errors import DomainError
from console.models import (
    AgentArtifact,
    AgentVersion,
    Sandbox,
)
from console.runtime import get_driver
from console.runtime.base import ExecRequest, FileStore, RuntimeError_
from console.sandboxes import files as sandbox_files
from console.sandboxes import service as sandboxes
from console.sandboxes.upload_extract import UploadFailure, extract_and_publish

INPUT_PATH = "/workspace/.nullspace/input.json"
# Past the run's own deadline, so the worker's timeout never races the run's.
SANDBOX_MARGIN_SECONDS = 120


class StepFailed(Exception):
    """A step that cannot go on: `phase` is the contract's failure phase."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase
        self.message = message


@dataclass
class StepResult:
    exit_code: int | None  # None: the deadline passed and the process was killed
    stopped: bool  # the caller's stop condition ended it (a cancel)


def create_sandbox(
    version: AgentVersion,
    *,
    artifact: AgentArtifact | None,
    lifetime_seconds: int,
    metadata: dict[str, str],
) -> Sandbox:
    """A running sandbox for the version, restored from the artifact's snapshot when given."""
    config = version.config
    resources = config.get("resources") or {}
    permissions = config.get("permissions") or {}
    try:
        sandbox, _token = sandboxes.create_sandbox(
            version.deployment.project,
            actor=SYSTEM,
            template=None if artifact else config.get("template", "base"),
            envs={},  # values are given per process and never stored on the sandbox row
            metadata=metadata,
            cwd="/workspace",
            timeout_ms=min(
                (lifetime_seconds + SANDBOX_MARGIN_SECONDS) * 1000,
                _max_timeout_ms(),
            ),
            internet_access=permissions.get("internet_access", True) is not False,
            network=agent_config.network(config) or None,
            vcpus=resources.get("vcpus"),
            memory_mb=resources.get("memory_mb"),
            disk_mb=resources.get("disk_mb"),
            snapshot=artifact.snapshot if artifact else None,
        )
    except DomainError as error:
        raise StepFailed("sandbox", f"could not create the sandbox: {error.message}") from None
    return sandbox


def create_sandbox_for(
    version: AgentVersion,
    *,
    lifetime_seconds: int,
    metadata: dict[str, str],
    note: Callable[[str], object],
) -> tuple[Sandbox, AgentArtifact | None]:
    """A sandbox from the version's ready artifact, or from its template when there is none
    or the artifact cannot be restored (then marked failed, and install runs instead)."""
    from console.agents import artifacts

    artifact = artifacts.artifact_for_run(version)
    if artifact is not None:
        try:
            return (
                create_sandbox(
                    version, artifact=artifact, lifetime_seconds=lifetime_seconds, metadata=metadata
                ),
                artifact,
            )
        except StepFailed as failure:
            artifacts.unusable(artifact, failure.message)
            note(
                f"artifact {artifact.public_id} could not be restored ({failure.message}); installing instead"
            )
    sandbox = create_sandbox(
        version, artifact=None, lifetime_seconds=lifetime_seconds, metadata=metadata
    )
    return sandbox, None


def _max_timeout_ms() -> int:
    return int(settings.MAX_SANDBOX_TIMEOUT_MS)


def unpack_bundle(
    sandbox: Sandbox, version: AgentVersion, *, stale_paths: list[str] | None = None
) -> None:
    """The version's bundle at its workdir. Over an artifact (stale_paths given), the bundle is
    merged so installed files stay, after removing the artifact's bundle files this one lacks."""
    workdir = version.config.get("workdir", "/workspace/project")
    if not version.bundle_path or not Path(version.bundle_path).exists():
        raise StepFailed("bundle", f"the bundle of {version.public_id} is missing from the store")
    try:
        files = sandbox_files.store(sandbox.runtime_id)
        target = files.path(workdir)
        if stale_paths is not None:
            current = {e["path"] for e in version.manifest.get("entries", []) if e.get("included")}
            for path in sorted(set(stale_paths) - current, reverse=True):
                _remove_quietly(files, f"{target}/{path}")
        extract_and_publish(
            Path(version.bundle_path),
            files,
            target,
            "merge" if stale_paths is not None else "replace",
            workdir,
            limit=settings.MAX_FILE_BYTES,
        )
    except (UploadFailure, RuntimeError_) as exc:
        raise StepFailed("bundle", f"could not unpack the bundle at {workdir}: {exc}") from None


def _remove_quietly(files: FileStore, path: str) -> None:
    try:
        files.remove(path)
    except RuntimeError_:
        pass


def write_input(sandbox: Sandbox, payload: dict[str, Any]) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode()
    sandbox_files.write_chunks(sandbox.runtime_id, INPUT_PATH, [data])


def start(sandbox: Sandbox, command: str, *, cwd: str, envs: dict[str, str]) -> int:
    request = ExecRequest(
        command=command, shell=True, cwd=cwd, envs=envs, timeout_secs=None, stdin=False
    )
    try:
        return sandboxes.start_process(sandbox, request)
    except DomainError as error:
        raise StepFailed("runtime", f"could not start {command!r}: {error.message}") from None


def follow(
    sandbox: Sandbox,
    pid: int,
    sink: LineSink,
    *,
    deadline: float,
    should_stop: Callable[[], bool],
) -> StepResult:
    """Stream the process's output into `sink` until it exits, the deadline passes (killed),
    or `should_stop()` turns true (killed; checked about once a second)."""
    driver = get_driver()
    stop = threading.Event()
    stopped = False

    def watch() -> None:
        nonlocal stopped
        while not stop.wait(1.0):
            if should_stop():
                stopped = True
                stop.set()

    watcher = threading.Thread(target=watch, daemon=True, name=f"agent-watch-{pid}")
    watcher.start()
    exit_code: int | None = None
    try:
        remaining = max(0.0, deadline - time.monotonic())
        for event in driver.follow_output(sandbox.runtime_id, pid, stop_after=remaining, stop=stop):
            if event.kind == "exit":
                exit_code = event.exit_code
                break
            sink.feed(event.kind, event.data)
    finally:
        stop.set()
        watcher.join(timeout=5)
        sink.close()
    if exit_code is None:
        kill(sandbox, pid)
    return StepResult(exit_code=exit_code, stopped=stopped)


def kill(sandbox: Sandbox | str, pid: int) -> None:
    """End a process of the sandbox (given as a row or its public id) and wait for it."""
    if isinstance(sandbox, str):
        found = Sandbox.objects.filter(public_id=sandbox).first()
        if found is None:
            return
        sandbox = found
    driver = get_driver()
    try:
        driver.kill_process(sandbox.runtime_id, pid)
        driver.wait_process(sandbox.runtime_id, pid, 5)
    except RuntimeError_:
        pass


def destroy(sandbox_id: str, reason: str) -> None:
    sandbox = Sandbox.objects.select_related("project").filter(public_id=sandbox_id).first()
    if sandbox is not None:
        sandboxes.destroy_sandbox(sandbox, actor=SYSTEM, reason=reason)
