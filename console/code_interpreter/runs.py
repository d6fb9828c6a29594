"""Runs: the record of each execution, and background runs (`code/runs`) done as jobs."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from console.code_interpreter import contexts, executions, kernels
from console.errors import DomainError
from console.jobs import queue
from console.models import CODE_RUN_TERMINAL, CodeRun, CodeRunStatus, Sandbox
from console.timefmt import iso

log = logging.getLogger(__name__)

JOB_KIND = "code.run"
STATUSES = tuple(CodeRunStatus.values)
CANCEL_WAIT_SECONDS = 10.0
# Beyond the longest timeout, the interrupt grace and a margin: a run this old is lost.
LOST_AFTER_SECONDS = 600


def to_dict(run: CodeRun) -> dict[str, Any]:
    return {
        "id": run.public_id,
        "sandbox_id": run.sandbox.public_id,
        "context_id": run.context_public_id,
        "status": run.status,
        "timeout_secs": run.timeout_secs,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "completed_at": iso(run.completed_at),
        "cancel_requested_at": iso(run.cancel_requested_at),
        "expires_at": iso(run.expires_at),
        "execution": run.execution,
        "failure_reason": run.failure_reason or None,
    }


def get(sandbox: Sandbox, public_id: str) -> CodeRun:
    run = (
        CodeRun.objects.select_related("sandbox")
        .filter(sandbox=sandbox, public_id=public_id)
        .first()
    )
    if run is None:
        raise DomainError("run_not_found", f"Code run {public_id} not found")
    return run


def start_background(sandbox: Sandbox, body: dict[str, Any]) -> CodeRun:
    with transaction.atomic():
        run = executions.prepare(sandbox, body, background=True)
        # Code runs once: a worker lost mid-run does not run it again.
        queue.enqueue(JOB_KIND, {"run": run.public_id}, max_attempts=1)
    return run


def run_job(payload: dict[str, Any]) -> None:
    run = (
        CodeRun.objects.select_related("sandbox", "sandbox__project")
        .filter(public_id=payload.get("run"))
        .first()
    )
    if run is None or run.status in CODE_RUN_TERMINAL:
        return
    try:
        context, client = executions.open_kernel(run)
    except DomainError as exc:
        executions.fail(run, f"{exc.code}: {exc.message}")
        return
    for _event in executions.execute(run, context, client):
        pass


def cancel(run: CodeRun) -> CodeRun:
    """Ask the run to stop: a queued run never starts, a running one is interrupted."""
    if run.status in CODE_RUN_TERMINAL:
        return run
    now = timezone.now()
    CodeRun.objects.filter(pk=run.pk, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now
    )
    moved = CodeRun.objects.filter(pk=run.pk, status=CodeRunStatus.QUEUED).update(
        status=CodeRunStatus.CANCELLED,
        failure_reason="cancelled",
        pending_envs={},
        completed_at=now,
    )
    if not moved:
        try:
            kernels.interrupt(contexts.get(run.sandbox, run.context_public_id))
        except DomainError as exc:
            log.info("cancel of %s could not interrupt: %s", run.public_id, exc)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status in CODE_RUN_TERMINAL:
                break
            time.sleep(0.1)
    run.refresh_from_db()
    return run


def remove_expired() -> int:
    """Finished runs past their expiry (a bounded batch per call)."""
    ids = list(
        CodeRun.objects.filter(
            expires_at__lte=timezone.now(), status__in=CODE_RUN_TERMINAL
        ).values_list("pk", flat=True)[:1000]
    )
    return CodeRun.objects.filter(pk__in=ids).delete()[0]


def fail_lost() -> int:
    """Runs still queued or running long past the longest timeout: their server went away
    mid-run (a restart), so nobody will record their end. Marked failed, `lost`."""
    cutoff = timezone.now() - timedelta(seconds=executions.MAX_TIMEOUT_SECS + LOST_AFTER_SECONDS)
    return CodeRun.objects.filter(
        status__in=(CodeRunStatus.QUEUED, CodeRunStatus.RUNNING), created_at__lt=cutoff
    ).update(
        status=CodeRunStatus.FAILED,
        failure_reason="lost",
        pending_envs={},
        completed_at=timezone.now(),
    )
