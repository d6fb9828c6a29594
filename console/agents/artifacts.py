"""Reusable deployment artifacts: a sandbox snapshot taken after the install step.

The cache key digests what the install step depends on: the template, the workdir, the
install command and the content digests of the bundle's dependency files (lockfiles,
requirements, manifests). Versions that agree on these share an artifact; a run starts
from its snapshot, unpacks its own bundle over it and skips install (docs/agents.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import PurePosixPath
from typing import Any

from django.utils import timezone

from console.actor import SYSTEM
from console.agents import steps
from console.agents.logs import LineSink
from console.models import (
    AgentArtifact,
    AgentVersion,
    ArtifactStatus,
    VersionStatus,
)
from console.sandboxes import service as sandboxes

log = logging.getLogger(__name__)

INSTALL_INPUT_NAMES = frozenset(
    {
        "requirements.txt",
        "requirements-dev.txt",
        "constraints.txt",
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
        "Pipfile",
        "Pipfile.lock",
        "poetry.lock",
        "uv.lock",
        "package.json",
        "package-lock.json",
        "pnpm-lock.yaml",
        "yarn.lock",
        "bun.lockb",
        "go.mod",
        "go.sum",
        "Cargo.toml",
        "Cargo.lock",
        "Gemfile",
        "Gemfile.lock",
    }
)
BUILD_TIMEOUT_SECONDS = 1800


def install_inputs(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, digest) of the bundle's dependency files, sorted."""
    found = []
    for entry in manifest.get("entries") or []:
        path = str(entry.get("path") or "")
        name = PurePosixPath(path).name
        if entry.get("included") and entry.get("kind") == "file":
            if name in INSTALL_INPUT_NAMES or (
                name.startswith("requirements") and name.endswith(".txt")
            ):
                found.append((path, str(entry.get("digest") or "")))
    return sorted(found)


def cache_key(config: dict[str, Any], manifest: dict[str, Any]) -> str:
    material = {
        "template": config.get("template", "base"),
        "workdir": config.get("workdir", "/workspace/project"),
        "install": config.get("install"),
        "inputs": install_inputs(manifest),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def ready_artifact(version: AgentVersion) -> AgentArtifact | None:
    """The newest ready artifact for the version's key whose snapshot still exists."""
    if not version.cache_key:
        return None
    for artifact in AgentArtifact.objects.filter(
        project_id=version.deployment.project_id,
        cache_key=version.cache_key,
        status=ArtifactStatus.READY,
    ).select_related("snapshot")[:5]:
        if artifact.snapshot is not None and artifact.snapshot.archive_path:
            return artifact
    return None


def artifact_for_run(version: AgentVersion) -> AgentArtifact | None:
    """What a run or service start uses: nothing under no_cache, else a ready artifact."""
    if version.cache_policy == "no_cache" or not version.config.get("install"):
        return None
    return ready_artifact(version)


def build(version_pk: int) -> None:
    """Build the artifact of a `rebuild` version: template sandbox, bundle, install, snapshot.

    Runs off the request (the executor). The version becomes ready either way; a failed
    build leaves runs to install on their own (cache state `failed`).
    """
    version = AgentVersion.objects.select_related("deployment__project", "artifact").get(
        pk=version_pk
    )
    artifact = version.artifact
    assert artifact is not None
    sandbox = None
    try:
        sandbox = steps.create_sandbox(
            version,
            artifact=None,
            lifetime_seconds=BUILD_TIMEOUT_SECONDS,
            metadata={
                "agent_deployment": version.deployment.public_id,
                "agent_build": artifact.build_id,
            },
        )
        steps.unpack_bundle(sandbox, version)
        workdir = version.config.get("workdir", "/workspace/project")
        pid = steps.start(sandbox, version.config["install"], cwd=workdir, envs={})
        result = steps.follow(
            sandbox,
            pid,
            _BuildLog(artifact.build_id),
            deadline=time.monotonic() + BUILD_TIMEOUT_SECONDS,
            should_stop=lambda: False,
        )
        if result.exit_code != 0:
            why = "timed out" if result.exit_code is None else f"exited with {result.exit_code}"
            raise steps.StepFailed("install", f"install {why} during the artifact build")
        snapshot = sandboxes.snapshot_sandbox(sandbox, actor=SYSTEM)
        paths = [e["path"] for e in version.manifest.get("entries", []) if e.get("included")]
        AgentArtifact.objects.filter(pk=artifact.pk).update(
            status=ArtifactStatus.READY,
            snapshot=snapshot,
            bundle_paths=paths,
            size_bytes=snapshot.size_bytes,
            completed_at=timezone.now(),
        )
        _finish(version, "ready", "")
    except Exception as exc:
        message = exc.message if isinstance(exc, steps.StepFailed) else f"build crashed: {exc}"
        log.warning("artifact build %s failed: %s", artifact.build_id, message)
        AgentArtifact.objects.filter(pk=artifact.pk).update(
            status=ArtifactStatus.FAILED, failure_reason=message[:500], completed_at=timezone.now()
        )
        _finish(version, "failed", message)
    finally:
        if sandbox is not None:
            steps.destroy(sandbox.public_id, "agent artifact build finished")


def unusable(artifact: AgentArtifact, reason: str) -> None:
    """A run could not start from the artifact: no later run tries it again."""
    AgentArtifact.objects.filter(pk=artifact.pk).update(
        status=ArtifactStatus.FAILED, failure_reason=f"restore failed: {reason}"[:500]
    )


def _finish(version: AgentVersion, cache_status: str, reason: str) -> None:
    AgentVersion.objects.filter(pk=version.pk).update(
        status=VersionStatus.READY,
        cache_status=cache_status,
        cache_reason=reason[:200],
        ready_at=timezone.now(),
    )


class _BuildLog(LineSink):
    """Build output goes to the server log (a build belongs to no run or service)."""

    def __init__(self, build_id: str) -> None:
        self.build_id = build_id
        self.pending = {"stdout": "", "stderr": ""}

    def _emit(self, kind: str, line: str) -> None:
        log.info("build %s %s: %s", self.build_id, kind, line[:500])
