"""The worker loop: claim a due job, run it, record the outcome; beat the heart of the
running jobs and take back those of dead workers.

`manage.py serve` starts one worker in a thread; `manage.py worker --threads N` runs
more, in other processes or on other servers sharing the database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from console.jobs import queue, registry, wakeup
from console.jobs.models import Job

log = logging.getLogger(__name__)

# How often the main loop looks at its every-process ticks and the heartbeat clock.
LOCAL_TICK_SECONDS = 0.25


def run_forever(stop: threading.Event, threads: int = 1) -> None:
    registry.load()
    for name, func in registry.STARTUP:
        _guarded(name, func)
    _guarded("ensure_periodic", lambda: queue.ensure_periodic(list(registry.PERIODIC)))
    base = f"{socket.gethostname()}:{os.getpid()}"
    names = [f"{base}:{n}" for n in range(threads)]
    loops = [
        threading.Thread(target=_work, args=(stop, name), name=f"job-{n}", daemon=True)
        for n, name in enumerate(names)
    ]
    if wakeup.supported():
        loops.append(
            threading.Thread(
                target=wakeup.listen_forever,
                args=(stop, queue.wake),
                name="job-wakeup",
                daemon=True,
            )
        )
    for loop in loops:
        loop.start()
    due = {name: 0.0 for name in registry.EVERY_PROCESS}
    next_beat = time.monotonic() + queue.heartbeat_seconds()
    while not stop.wait(LOCAL_TICK_SECONDS):
        now = time.monotonic()
        for plan in registry.EVERY_PROCESS.values():
            if now >= due[plan.name]:
                _guarded(plan.name, plan.func)
                due[plan.name] = time.monotonic() + plan.every
        if now >= next_beat:
            _guarded("heartbeat", lambda: queue.heartbeat(names))
            _guarded("reap_stale", queue.reap_stale)
            next_beat = time.monotonic() + queue.heartbeat_seconds()
        _tidy_connections()
    queue.wake()  # idle threads see `stop` now rather than at their next poll
    for loop in loops:
        loop.join(timeout=30)


def _work(stop: threading.Event, worker: str) -> None:
    while not stop.is_set():
        job = None
        try:
            _tidy_connections()
            job = queue.claim(worker)
        except Exception:
            log.exception("claiming a job failed")
        if job is None:
            queue.wait_for_work(settings.JOB_POLL_MS / 1000)
            continue
        run_job(job, worker)


def run_job(job: Job, worker: str) -> None:
    """Run one claimed job and record how it ended; never raises."""
    try:
        registry.load()  # every kind known, whoever claimed the job (cheap once imported)
        _outcome(job, worker)
    except Exception:
        log.exception("recording the outcome of job %s failed", job)
    finally:
        _tidy_connections()


def _tidy_connections() -> None:
    # Drop broken or stale connections between jobs; never one inside a transaction
    # (a caller that runs a job within its own, as tests do, keeps it).
    if not connection.in_atomic_block:
        close_old_connections()


def _outcome(job: Job, worker: str) -> None:
    plan = registry.PERIODIC.get(job.kind) if job.unique_key else None
    if plan is not None:
        error = _guarded(job.kind, plan.func)
        queue.reschedule(
            job, worker, timezone.now() + timedelta(seconds=plan.every), error=error, reset=True
        )
        return
    func = registry.TASKS.get(job.kind)
    if func is None:
        job.attempts = job.max_attempts  # no code for it here: retrying cannot help
        queue.fail(job, worker, f"unknown job kind {job.kind!r}")
        return
    try:
        func(job.payload)
    except queue.RetryLater as later:
        queue.reschedule(job, worker, later.at, error=str(later), reset=False)
    except Exception as exc:
        log.exception("job %s failed (attempt %s)", job, job.attempts)
        queue.fail(job, worker, f"{type(exc).__name__}: {exc}")
    else:
        queue.finish(job, worker)


def _guarded(name: str, func: Callable[[], object]) -> str:
    """Run a tick; its failure is logged (and returned) and never stops the worker."""
    began = time.monotonic()
    try:
        func()
    except Exception as exc:
        log.exception("worker job %s failed", name)
        return f"{type(exc).__name__}: {exc}"
    finally:
        if time.monotonic() - began > 5:
            log.warning("worker job %s took %.1f s", name, time.monotonic() - began)
    return ""
