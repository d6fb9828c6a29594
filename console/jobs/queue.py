"""The job table's operations: enqueue, claim, finish, retry, heartbeat and reap.

A claim moves one due row from `queued` to `running` for one worker. On PostgreSQL
the candidate row is locked with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent
workers pick different rows without waiting on each other; on SQLite (one writer at
a time) the claim is a conditional UPDATE that only the first worker wins. Every
later write names the worker too, so a worker whose job was taken back by the reaper
(its heartbeat stopped) cannot overwrite the new owner's state.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from console.jobs import wakeup
from console.jobs.models import Job, JobStatus

# A running job whose worker has not beaten its heart for JOB_STALE_SECONDS (30 by
# default) is taken back; workers beat six times within that span.


def stale_after() -> timedelta:
    return timedelta(seconds=settings.JOB_STALE_SECONDS)


def heartbeat_seconds() -> float:
    return float(settings.JOB_STALE_SECONDS) / 6


# On SQLite, how many due rows one claim tries before giving up for this round.
CLAIM_CANDIDATES = 5
MAX_ERROR = 500

_wake = threading.Event()


class RetryLater(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a task to be run again at `at` (it has handled its own failure)."""

    def __init__(self, at: datetime, reason: str = "") -> None:
        super().__init__(reason)
        self.at = at


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempt` (1 = first retry): base * 2^(attempt-1),
    at most `cap`, with +-10% jitter so many failures do not retry in lockstep."""
    delay = min(float(cap), float(base) * 2.0 ** max(0, attempt - 1))
    return delay * random.uniform(0.9, 1.1)


def enqueue(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_after: datetime | None = None,
    max_attempts: int = 5,
) -> Job:
    """Add a job; it commits (or rolls back) with the caller's transaction. Workers of
    this process wake at commit; others by NOTIFY on PostgreSQL (console/jobs/wakeup.py),
    else at their next poll."""
    job = Job.objects.create(
        kind=kind,
        payload=payload or {},
        run_after=run_after or timezone.now(),
        max_attempts=max_attempts,
    )
    wakeup.notify()
    transaction.on_commit(_wake.set)
    return job


def wake() -> None:
    _wake.set()


def wait_for_work(timeout: float) -> None:
    if _wake.wait(timeout):
        _wake.clear()


def claim(worker: str) -> Job | None:
    now = timezone.now()
    due = Job.objects.filter(status=JobStatus.QUEUED, run_after__lte=now).order_by(
        "run_after", "pk"
    )
    taken = {
        "status": JobStatus.RUNNING,
        "worker": worker,
        "heartbeat_at": now,
        "attempts": F("attempts") + 1,
    }
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            pk = due.select_for_update(skip_locked=True).values_list("pk", flat=True).first()
            if pk is None:
                return None
            Job.objects.filter(pk=pk).update(**taken)
        return Job.objects.get(pk=pk)
    for pk in list(due.values_list("pk", flat=True)[:CLAIM_CANDIDATES]):
        if Job.objects.filter(pk=pk, status=JobStatus.QUEUED).update(**taken):
            return Job.objects.get(pk=pk)
    return None


def _mine(job: Job, worker: str) -> QuerySet[Job]:
    return Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, worker=worker)


def finish(job: Job, worker: str) -> None:
    """A one-shot job is done: its row goes (the domain keeps its own record)."""
    _mine(job, worker).delete()


def reschedule(job: Job, worker: str, at: datetime, *, error: str = "", reset: bool) -> None:
    """Back to `queued` until `at`; `reset` starts the attempt count again (periodic)."""
    fields: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "run_after": at,
        "worker": "",
        "heartbeat_at": None,
        "last_error": error[:MAX_ERROR],
    }
    if reset:
        fields["attempts"] = 0
    _mine(job, worker).update(**fields)


def fail(job: Job, worker: str, error: str, *, base: float = 5.0, cap: float = 3600.0) -> None:
    """A failed attempt: retried with exponential back-off until max_attempts, then kept
    as `failed` with its last error for an operator to look at."""
    if job.attempts >= job.max_attempts:
        _mine(job, worker).update(
            status=JobStatus.FAILED, worker="", heartbeat_at=None, last_error=error[:MAX_ERROR]
        )
        return
    at = timezone.now() + timedelta(seconds=backoff_delay(job.attempts, base, cap))
    reschedule(job, worker, at, error=error, reset=False)


def heartbeat(workers: list[str]) -> int:
    if not workers:
        return 0
    return Job.objects.filter(status=JobStatus.RUNNING, worker__in=workers).update(
        heartbeat_at=timezone.now()
    )


def reap_stale() -> list[int]:
    """Take back running jobs whose worker went silent (killed, host lost): queued
    again, or failed when they have used every attempt. Returns the reaped ids."""
    now = timezone.now()
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=now - stale_after())
    reaped = []
    for pk, beat, attempts, limit, worker in stale.values_list(
        "pk", "heartbeat_at", "attempts", "max_attempts", "worker"
    )[:100]:
        error = f"worker {worker} stopped answering"
        if attempts >= limit:
            change: dict[str, Any] = {"status": JobStatus.FAILED}
        else:
            change = {"status": JobStatus.QUEUED, "run_after": now}
        # Conditional on the heartbeat seen: a worker that beat meanwhile keeps its job.
        if Job.objects.filter(pk=pk, status=JobStatus.RUNNING, heartbeat_at=beat).update(
            worker="", heartbeat_at=None, last_error=error, **change
        ):
            reaped.append(pk)
    if reaped:
        _wake.set()
    return reaped


def ensure_periodic(names: list[str]) -> None:
    """One row per periodic job name (several servers share it); a row left `failed`
    by an older version is put back in the queue."""
    now = timezone.now()
    for name in names:
        key = f"periodic:{name}"
        Job.objects.get_or_create(
            unique_key=key, defaults={"kind": name, "run_after": now, "max_attempts": 1_000_000}
        )
        Job.objects.filter(unique_key=key, status=JobStatus.FAILED).update(
            status=JobStatus.QUEUED, run_after=now, attempts=0
        )
