"""Worker jobs for sandboxes: reconcile the runtime on start, act on timeouts every second.

State changes go through the domain functions in console/sandboxes.py (imported when a
job runs), so a timeout does exactly what a user's pause or kill does, lifecycle
events included. Each due row is claimed with a conditional UPDATE first, so two
workers (a `serve` and a `worker` process on one database) never act on it twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from console.lifecycle import record_event
from console.models import (
    LIVE_STATUSES,
    ActorKind,
    EventStatus,
    Operation,
    Sandbox,
    SandboxStatus,
    TimeoutAction,
)
from console.runtime import get_driver
from console.worker import job, on_startup

log = logging.getLogger(__name__)

# A row still `creating` after this long was abandoned by a server that stopped mid-create.
CREATING_GRACE = timedelta(minutes=2)
# When a timeout action fails, try again after this long rather than every tick.
RETRY_AFTER = timedelta(seconds=30)


@on_startup("sandbox_reconcile")
def reconcile_runtime() -> list[str]:
    """Remove runtime traces of sandboxes the database no longer holds live, and mark
    live rows whose runtime is gone. Returns the ids of rows marked `error`."""
    driver = get_driver()
    live = list(Sandbox.objects.filter(status__in=LIVE_STATUSES).select_related("project"))
    removed = driver.reconcile({s.public_id for s in live})
    if removed:
        log.info("reconcile removed runtime leftovers of %s", ", ".join(removed))
    lost = []
    now = timezone.now()
    for sandbox in live:
        if driver.exists(sandbox.public_id):
            continue
        if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
            continue  # resuming restores it from its pause archive
        if sandbox.status == SandboxStatus.CREATING and now - sandbox.created_at < CREATING_GRACE:
            continue  # a create may be under way in another process
        message = "The sandbox's processes were lost when the server restarted"
        changed = Sandbox.objects.filter(pk=sandbox.pk, status=sandbox.status).update(
            status=SandboxStatus.ERROR, error_message=message, timeout_at=None, transition=""
        )
        if not changed:
            continue
        driver.destroy(sandbox.public_id)  # whatever half is left (a workspace without a netns)
        record_event(
            sandbox.project,
            Operation.RECONCILE,
            status=EventStatus.SUCCEEDED,
            actor_kind=ActorKind.RECONCILE,
            sandbox_id=sandbox.public_id,
            reason="runtime_lost",
            metadata={"previous_status": sandbox.status},
        )
        lost.append(sandbox.public_id)
    return lost


@job("sandbox_timeouts", every=1.0)
def act_on_timeouts() -> list[str]:
    """Destroy (or pause, for timeout_action=hibernate) running sandboxes past timeout_at."""
    from console import sandboxes

    now = timezone.now()
    due = Sandbox.objects.filter(
        status=SandboxStatus.RUNNING, timeout_at__lte=now, transition=""
    ).values_list("pk", "timeout_at")
    done = []
    for pk, timeout_at in list(due[:100]):
        # The claim: only the worker that moves timeout_at off its old value acts.
        claimed = Sandbox.objects.filter(
            pk=pk, status=SandboxStatus.RUNNING, timeout_at=timeout_at
        ).update(timeout_at=None)
        if not claimed:
            continue
        sandbox = Sandbox.objects.select_related("project").get(pk=pk)
        record_event(
            sandbox.project,
            Operation.TIMEOUT_EXPIRED,
            actor_kind=ActorKind.SYSTEM,
            sandbox_id=sandbox.public_id,
            metadata={"timeout_action": sandbox.timeout_action},
        )
        try:
            if sandbox.timeout_action == TimeoutAction.HIBERNATE:
                sandboxes.pause_sandbox(sandbox, actor_kind=ActorKind.SYSTEM, reason="timeout")
            else:
                sandboxes.destroy_sandbox(sandbox, actor_kind=ActorKind.SYSTEM, reason="timeout")
            done.append(sandbox.public_id)
        except Exception as exc:
            log.warning("timeout action on %s failed: %s", sandbox.public_id, exc)
            Sandbox.objects.filter(pk=pk, status=SandboxStatus.RUNNING, timeout_at=None).update(
                timeout_at=timezone.now() + RETRY_AFTER
            )
    return done


@job("sandbox_runtime_events", every=1.0)
def record_runtime_events() -> int:
    """Lifecycle events for what happened inside sandboxes on its own (OOM kills)."""
    events = get_driver().take_events()
    recorded = 0
    for event in events:
        sandbox = (
            Sandbox.objects.filter(public_id=event.sandbox_id).select_related("project").first()
        )
        if sandbox is None or event.kind != "oom":
            continue
        record_event(
            sandbox.project,
            Operation.OOM,
            actor_kind=ActorKind.SYSTEM,
            sandbox_id=sandbox.public_id,
            reason="memory_limit",
            metadata={**event.details, "memory_mb": sandbox.memory_mb},
        )
        recorded += 1
    return recorded
