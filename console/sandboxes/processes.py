"""Running commands in a sandbox: the exec request, start, run to the end, logs.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from console.errors import DomainError
from console.models import (
    Sandbox,
)
from console.runtime import get_driver
from console.runtime.base import ExecRequest, ExecResult, ProcessLogs
from console.sandboxes.lookup import require_running
from console.sandboxes.operations import driver_call, quietly
from console.sandboxes.validation import validated_cwd, validated_envs


def exec_request(body: dict[str, Any], *, background: bool = False) -> ExecRequest:
    """An ExecRequest from the contract's exec body (HTTP or exec_start frame)."""
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise DomainError("invalid_request", "command must be a non-empty string")
    args = body.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise DomainError("invalid_request", "args must be a list of strings")
    envs = validated_envs(body.get("envs") or {})
    cwd = body.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise DomainError("invalid_request", "cwd must be a string")
    timeout = body.get("timeout_secs", 30)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
    ):
        raise DomainError("invalid_request", "timeout_secs must be a non-negative number")
    return ExecRequest(
        command=command,
        args=list(args),
        shell=bool(body.get("shell")),
        cwd=validated_cwd(cwd) if cwd else None,
        envs=envs,
        # A background process lives until killed; timeout_secs bounds waiting for it.
        timeout_secs=None if background or not timeout else float(timeout),
    )


def start_process(sandbox: Sandbox, request: ExecRequest) -> int:
    require_running(sandbox)
    driver = get_driver()
    return driver_call(
        lambda: driver.start_process(
            sandbox.runtime_id, request, default_cwd=sandbox.cwd, envs=dict(sandbox.envs)
        )
    )


def run_command(sandbox: Sandbox, request: ExecRequest) -> ExecResult:
    """Run to completion; past `timeout_secs` the process is killed and exec_timeout raised."""
    pid = start_process(sandbox, request)
    driver = get_driver()
    exit_code = driver_call(
        lambda: driver.wait_process(sandbox.runtime_id, pid, request.timeout_secs)
    )
    if exit_code is None:
        quietly(lambda: driver.kill_process(sandbox.runtime_id, pid))
        quietly(lambda: driver.wait_process(sandbox.runtime_id, pid, 5))
        raise DomainError(
            "exec_timeout",
            f"Command ran past its timeout of {request.timeout_secs:g} s and was killed",
            suggested_action="Raise --timeout, or run it with --background.",
            details={"pid": pid, "timeout_secs": request.timeout_secs},
        )
    logs = read_logs(sandbox, pid)
    return ExecResult(
        exit_code=exit_code,
        stdout=logs.stdout,
        stderr=logs.stderr,
        pid=pid,
        truncated=logs.truncated,
    )


def read_logs(sandbox: Sandbox, pid: int) -> ProcessLogs:
    """A process's output, at most EXEC_RESPONSE_MAX_BYTES of each stream."""
    limit = settings.EXEC_RESPONSE_MAX_BYTES
    return driver_call(lambda: get_driver().process_logs(sandbox.runtime_id, pid, limit=limit))
