"""What a sandbox of a custom template gets at create (docs/templates.md): the build it
runs on, the template's env, user and working directory, and its start command, started
in the background; with a readiness probe, create answers once the probe passes, or
fails saying why (the start command exited, or the probe timed out)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from console.errors import DomainError
from console.models import Project, Sandbox, TemplateBuild
from console.runtime import get_driver
from console.runtime.base import ExecRequest
from console.sandbox_templates import refs

PROBE_SECONDS = 5


@dataclass
class Choice:
    build: TemplateBuild | None
    defaults: dict[str, Any] = field(default_factory=dict)


def choose(project: Project, ref: str) -> Choice:
    """The build a sandbox of `ref` runs on (None: a builtin), or template_not_found."""
    found = refs.usable_build(project.team, ref)
    if found.build is None:
        return Choice(None)
    return Choice(found.build, dict(found.build.runtime_defaults or {}))


def spec_fields(build: TemplateBuild | None) -> dict[str, Any]:
    """CreateSpec fields of a sandbox on `build` (the builtin image under its layers)."""
    if build is None:
        return {}
    return {
        "template": build.base_image,
        "image_suite": build.image_suite,
        "layers": tuple(reversed(build.layers or [])),
        "default_user": (build.runtime_defaults or {}).get("user") or None,
    }


def _probe_command(readiness: dict[str, Any]) -> str | None:
    kind = readiness.get("kind")
    if kind == "tcp":
        return f"exec 3<>/dev/tcp/127.0.0.1/{int(readiness['port'])}"
    if kind == "http":
        url = f"http://127.0.0.1:{int(readiness['port'])}{readiness.get('path') or '/'}"
        return f"curl -fsS -o /dev/null --max-time 4 {shlex.quote(url)}"
    if kind == "command":
        return str(readiness["command"])
    return None


def start(sandbox: Sandbox, defaults: dict[str, Any]) -> None:
    """Start the template's start command; wait for its readiness probe. DomainError when it
    does not become ready (the caller removes the sandbox)."""
    command = defaults.get("start_cmd")
    readiness = defaults.get("readiness") or None
    if not command and not readiness:
        return
    driver = get_driver()
    sid = sandbox.runtime_id
    started_pid: int | None = None
    if command:
        started_pid = driver.start_process(
            sid,
            ExecRequest(command=command, shell=True, stdin=False, timeout_secs=None),
            default_cwd=sandbox.cwd,
            envs={},
        )
    if not readiness:
        return
    if readiness.get("kind") == "timeout":
        time.sleep(min(600.0, int(readiness.get("timeout_ms", 0)) / 1000))
        return
    probe = _probe_command(readiness)
    time.sleep(min(600, int(readiness.get("startup_grace_secs", 2))))
    deadline = time.monotonic() + int(readiness.get("timeout_secs", 30))
    interval = int(readiness.get("interval_ms", 500)) / 1000
    while True:
        pid = driver.start_process(
            sid,
            ExecRequest(command=str(probe), shell=True, stdin=False, timeout_secs=PROBE_SECONDS),
            default_cwd=sandbox.cwd,
            envs={},
        )
        code = driver.wait_process(sid, pid, PROBE_SECONDS)
        if code is None:
            driver.kill_process(sid, pid)
        if code == 0:
            return
        if started_pid is not None:
            exited = driver.wait_process(sid, started_pid, 0)
            if exited is not None:
                logs = driver.process_logs(sid, started_pid, limit=4096)
                tail = "\n".join((logs.output or "").strip().splitlines()[-5:])
                raise DomainError(
                    "template_start_failed",
                    f"the template's start command exited with code {exited} before it was "
                    f"ready" + (f"; last output:\n{tail}" if tail else ""),
                )
        if time.monotonic() >= deadline:
            raise DomainError(
                "template_not_ready",
                f"the template's readiness probe ({readiness.get('kind')}) did not pass within "
                f"{readiness.get('timeout_secs', 30)} s",
            )
        time.sleep(interval)
