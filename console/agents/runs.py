"""A job run from queued to a terminal status (docs/api.md §6.4 Run; docs/agents.md).

queued -> starting (sandbox, bundle, input) -> installing (unless a ready artifact holds
the install) -> running (the entrypoint) -> succeeded | failed | timed_out | cancelled.
Every step is a log event; a failure names its phase. Outputs are copied out of the
sandbox before it goes, then the sandbox is destroyed, or kept for `retention_seconds`
when the run asked to retain a failure.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.utils import timezone

from console.actor import SYSTEM
from console.agents import config as agent_config
from console.agents import logs, outputs, steps
from console.models import AgentRun, RunStatus, Sandbox
from console.sandboxes import service as sandboxes

DEFAULT_RETENTION_SECONDS = 3600


def _move(run: AgentRun, status: str, **fields: Any) -> bool:
    """Advance a run that is not terminal and not cancelled; False when it was cancelled."""
    changed = AgentRun.objects.filter(pk=run.pk, cancel_requested=False, status__in=_LIVE).update(
        status=status, updated_at=timezone.now(), **fields
    )
    run.refresh_from_db()
    return bool(changed)


_LIVE = (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.INSTALLING, RunStatus.RUNNING)


def _cancel_requested(run: AgentRun) -> bool:
    return AgentRun.objects.filter(pk=run.pk, cancel_requested=True).exists()


def execute(run_pk: int, envs: dict[str, str]) -> None:
    run = AgentRun.objects.select_related("deployment__project", "version__deployment").get(
        pk=run_pk
    )
    version = run.version
    config = version.config
    workdir = config.get("workdir", "/workspace/project")
    timeout = agent_config.timeout_seconds(config)
    deadline = time.monotonic() + timeout
    secrets = list(envs.values())
    if not _move(run, RunStatus.STARTING, started_at=timezone.now()):
        return
    logs.record(run, "run_starting", f"run {run.public_id} of version {version.number} starting")
    sandbox: Sandbox | None = None
    phase = "sandbox"
    try:
        sandbox, artifact = steps.create_sandbox_for(
            version,
            lifetime_seconds=timeout,
            metadata={"agent_deployment": run.deployment.public_id, "agent_run": run.public_id},
            note=lambda message: logs.record(run, "artifact_unusable", message, level="warn"),
        )
        AgentRun.objects.filter(pk=run.pk).update(
            sandbox_public_id=sandbox.public_id, used_artifact=artifact is not None
        )
        run.refresh_from_db()
        logs.record(
            run,
            "sandbox_created",
            f"sandbox {sandbox.public_id} created"
            + (f" from artifact {artifact.public_id} (cache hit)" if artifact else ""),
            metadata={"artifact_id": artifact.public_id if artifact else None},
        )
        phase = "bundle"
        steps.unpack_bundle(
            sandbox, version, stale_paths=artifact.bundle_paths if artifact else None
        )
        steps.write_input(sandbox, run.input or {})
        process_env = {
            **envs,
            "NULLSPACE_INPUT_FILE": steps.INPUT_PATH,
            "NULLSPACE_RUN_ID": run.public_id,
            "NULLSPACE_DEPLOYMENT_ID": run.deployment.public_id,
            "NULLSPACE_VERSION_ID": version.public_id,
        }
        install = config.get("install")
        if install and artifact is None:
            phase = "install"
            if not _move(run, RunStatus.INSTALLING):
                return _finish_cancelled(run, sandbox)
            logs.record(run, "install_started", f"install: {install}")
            outcome = _step(run, sandbox, install, workdir, process_env, secrets, deadline)
            if outcome is not None:
                return _fail(run, sandbox, "install", *outcome)
            logs.record(run, "install_succeeded", "install finished")
        phase = "entrypoint"
        if not _move(run, RunStatus.RUNNING):
            return _finish_cancelled(run, sandbox)
        logs.record(run, "entrypoint_started", f"entrypoint: {config['entrypoint']}")
        outcome = _step(run, sandbox, config["entrypoint"], workdir, process_env, secrets, deadline)
        if outcome is not None:
            return _fail(run, sandbox, "entrypoint", *outcome)
        collected = outputs.collect(run, sandbox)
        AgentRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.SUCCEEDED,
            exit_code=0,
            outputs=collected,
            completed_at=timezone.now(),
            updated_at=timezone.now(),
        )
        run.refresh_from_db()
        logs.record(run, "run_succeeded", f"run succeeded; {len(collected)} output(s) kept")
        steps.destroy(sandbox.public_id, "agent run finished")
    except steps.StepFailed as failure:
        _fail(run, sandbox, failure.phase, RunStatus.FAILED, failure.message, None)
    except Exception as exc:  # never leave a run live because of a bug
        _fail(run, sandbox, phase, RunStatus.FAILED, f"internal error: {exc}", None)
        raise


def _step(
    run: AgentRun,
    sandbox: Sandbox,
    command: str,
    workdir: str,
    envs: dict[str, str],
    secrets: list[str],
    deadline: float,
) -> tuple[str, str, int | None] | None:
    """Run one command to its end; None on exit 0, else (status, reason, exit code)."""
    pid = steps.start(sandbox, command, cwd=workdir, envs=envs)
    AgentRun.objects.filter(pk=run.pk).update(process_id=pid)
    run.process_id = pid
    sink = logs.LineSink(run, secrets, pid)
    result = steps.follow(
        sandbox, pid, sink, deadline=deadline, should_stop=lambda: _cancel_requested(run)
    )
    if result.stopped or _cancel_requested(run):
        return RunStatus.CANCELLED, "cancelled on request", result.exit_code
    if result.exit_code is None:
        return RunStatus.TIMED_OUT, "timed out after the run's timeout_seconds", None
    if result.exit_code != 0:
        return RunStatus.FAILED, f"exited with code {result.exit_code}", result.exit_code
    return None


def _fail(
    run: AgentRun,
    sandbox: Sandbox | None,
    phase: str,
    status: str,
    reason: str,
    exit_code: int | None,
) -> None:
    if status == RunStatus.CANCELLED:
        phase = "cancel"
    label = {"install": "install", "entrypoint": "entrypoint"}.get(phase, phase)
    message = reason if status == RunStatus.CANCELLED else f"{label} {reason}"
    collected = outputs.collect(run, sandbox) if sandbox is not None else []
    retain = (
        sandbox is not None
        and status in (RunStatus.FAILED, RunStatus.TIMED_OUT)
        and run.retain_on_failure
    )
    retained_until = None
    if retain:
        seconds = run.retention_seconds or DEFAULT_RETENTION_SECONDS
        retained_until = timezone.now() + timedelta(seconds=seconds)
    AgentRun.objects.filter(pk=run.pk).exclude(status__in=_TERMINAL).update(
        status=status,
        failure_reason=message[:500],
        failure_phase=phase,
        exit_code=exit_code,
        outputs=collected,
        retained_until=retained_until,
        completed_at=timezone.now(),
        updated_at=timezone.now(),
    )
    run.refresh_from_db()
    events = {str(RunStatus.CANCELLED): "run_cancelled", str(RunStatus.TIMED_OUT): "run_timed_out"}
    event = events.get(str(status), "run_failed")
    logs.record(
        run,
        event,
        message,
        level="warn" if status == RunStatus.CANCELLED else "error",
        metadata={"failure_phase": phase},
    )
    if sandbox is None:
        return
    if retain:
        assert retained_until is not None
        seconds = int((retained_until - timezone.now()).total_seconds()) + 1
        sandboxes.set_timeout(sandbox, seconds * 1000, "destroy", actor=SYSTEM)
        logs.record(
            run,
            "sandbox_retained",
            f"sandbox {sandbox.public_id} kept for debugging for {seconds} s",
            metadata={"retained_until": retained_until.isoformat()},
        )
    else:
        steps.destroy(sandbox.public_id, "agent run finished")


_TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT)


def _finish_cancelled(run: AgentRun, sandbox: Sandbox) -> None:
    _fail(run, sandbox, "cancel", RunStatus.CANCELLED, "cancelled on request", None)


def cancel(run: AgentRun, reason: str | None) -> AgentRun:
    """Ask a live run to stop: a queued run is cancelled at once; a started one has its
    process killed here (any server process can), and its thread records the end."""
    AgentRun.objects.filter(pk=run.pk, status__in=_LIVE).update(cancel_requested=True)
    message = f"cancelled on request: {reason}" if reason else "cancelled on request"
    if AgentRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED,
        failure_reason=message[:500],
        failure_phase="cancel",
        completed_at=timezone.now(),
    ):
        run.refresh_from_db()
        logs.record(
            run, "run_cancelled", message, level="warn", metadata={"failure_phase": "cancel"}
        )
    run.refresh_from_db()
    if run.status in _LIVE and run.sandbox_public_id and run.process_id:
        steps.kill(run.sandbox_public_id, run.process_id)
    return run
