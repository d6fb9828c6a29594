"""Worker jobs for sandboxes: reconcile the runtime on start, fail interrupted creates,
act on timeouts every second. Each server handles only the sandboxes it owns
(console/sandboxes/owner.py).

State changes go through the domain functions in console/sandboxes/service.py (imported when a
job runs), so a timeout does exactly what a user's pause or kill does, lifecycle
events included. Each due row is claimed with a conditional UPDATE first, so two
workers (a `serve` and a `worker` process on one database) never act on it twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from console.actor import SYSTEM
from console.jobs import every_process, on_startup
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
from console.sandboxes.lifecycle import record_event
from console.sandboxes.owner import process_alive, this_instance

log = logging.getLogger(__name__)

# When a timeout action fails, try again after this long rather than every tick.
RETRY_AFTER = timedelta(seconds=30)
INTERRUPTED = "The server stopped while this sandbox was being created"


def _owned():
    """Sandboxes this runtime instance owns ("" = recorded before owners were)."""
    return Sandbox.objects.filter(owner__in=(this_instance(), ""))


def _building_sandboxes() -> set[str]:
    """The build sandboxes of template builds under way (docs/templates.md)."""
    from console.models import TemplateBuild

    return set(
        TemplateBuild.objects.filter(status="building")
        .exclude(sandbox_id="")
        .values_list("sandbox_id", flat=True)
    )


@on_startup("sandbox_reconcile")
def reconcile_runtime() -> list[str]:
    """Remove runtime traces of sandboxes the database no longer holds live, and mark this
    instance's live rows whose runtime is gone. Other servers' sandboxes are theirs to
    reconcile. Returns the ids of rows marked `error`."""
    driver = get_driver()
    live = list(_owned().filter(status__in=LIVE_STATUSES).select_related("project"))
    removed = driver.reconcile({s.runtime_id for s in live} | _building_sandboxes())
    if removed:
        log.info("reconcile removed runtime leftovers of %s", ", ".join(removed))
    lost = fail_interrupted_creates()
    for sandbox in live:
        if sandbox.public_id in lost or sandbox.status == SandboxStatus.CREATING:
            continue  # a create under way in another process of this instance
        if driver.exists(sandbox.runtime_id):
            continue
        if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
            continue  # resuming restores it from its pause archive
        message = "The sandbox's processes were lost when the server restarted"
        if _mark_error(sandbox, message, reason="runtime_lost"):
            lost.append(sandbox.public_id)
    return lost


@every_process("sandbox_interrupted_creates", every=5.0)
def fail_interrupted_creates() -> list[str]:
    """Mark failed this instance's creates whose process is gone (a `kill -9` or crash
    mid-create), which frees their quota. Returns their ids."""
    failed = []
    creating = _owned().filter(status=SandboxStatus.CREATING).select_related("project")
    for sandbox in creating[:100]:
        if sandbox.create_process and process_alive(sandbox.create_process):
            continue
        if not sandbox.create_process and timezone.now() - sandbox.created_at < LEGACY_GRACE:
            continue  # made before creates recorded their process: give it time
        if _mark_error(sandbox, INTERRUPTED, reason="interrupted", operation=Operation.CREATE):
            failed.append(sandbox.public_id)
    return failed


# A `creating` row without a recorded process (made before they were) is taken as
# abandoned after this long.
LEGACY_GRACE = timedelta(minutes=2)


def _mark_error(
    sandbox: Sandbox, message: str, *, reason: str, operation: str = Operation.RECONCILE
) -> bool:
    changed = Sandbox.objects.filter(pk=sandbox.pk, status=sandbox.status).update(
        status=SandboxStatus.ERROR,
        error_message=message,
        timeout_at=None,
        transition="",
        create_process="",
    )
    if not changed:
        return False
    get_driver().destroy(sandbox.runtime_id)  # whatever half is left
    record_event(
        sandbox.project,
        operation,
        status=EventStatus.FAILED if operation == Operation.CREATE else EventStatus.SUCCEEDED,
        actor_kind=ActorKind.RECONCILE,
        sandbox_id=sandbox.public_id,
        reason=reason,
        error_code="runtime_error" if operation == Operation.CREATE else "",
        error_message=message if operation == Operation.CREATE else "",
        metadata={"previous_status": sandbox.status},
    )
    return True


@every_process("sandbox_timeouts", every=1.0)
def act_on_timeouts() -> list[str]:
    """Destroy (or pause, for timeout_action=hibernate) this instance's running sandboxes
    past timeout_at."""
    from console.sandboxes import service as sandboxes

    now = timezone.now()
    due = (
        _owned()
        .filter(status=SandboxStatus.RUNNING, timeout_at__lte=now, transition="")
        .values_list("pk", "timeout_at")
    )
    done = []
    for pk, timeout_at in list(due[:100]):
        # The claim: only the worker that moves timeout_at off its old value acts.
        claimed = Sandbox.objects.filter(
            pk=pk, status=SandboxStatus.RUNNING, timeout_at=timeout_at
        ).update(timeout_at=None)
        if not claimed:
            continue
        sandbox = Sandbox.objects.select_related("project").get(pk=pk)
        policy = {"timeout_action": sandbox.timeout_action, "timeout_ms": sandbox.timeout_ms}
        record_event(
            sandbox.project,
            Operation.TIMEOUT_EXPIRED,
            actor_kind=ActorKind.SYSTEM,
            sandbox_id=sandbox.public_id,
            reason=sandboxes.REASON_TIMEOUT,
            metadata=policy,
        )
        try:
            if sandbox.timeout_action == TimeoutAction.HIBERNATE:
                sandboxes.pause_sandbox(
                    sandbox,
                    actor=SYSTEM,
                    reason=sandboxes.REASON_TIMEOUT,
                    metadata=policy,
                )
            else:
                sandboxes.destroy_sandbox(
                    sandbox,
                    actor=SYSTEM,
                    reason=sandboxes.REASON_TIMEOUT,
                    metadata=policy,
                )
            done.append(sandbox.public_id)
        except Exception as exc:
            log.warning("timeout action on %s failed: %s", sandbox.public_id, exc)
            Sandbox.objects.filter(pk=pk, status=SandboxStatus.RUNNING, timeout_at=None).update(
                timeout_at=timezone.now() + RETRY_AFTER
            )
    return done


@every_process("sandbox_runtime_events", every=1.0)
def record_runtime_events() -> int:
    """Lifecycle events for what happened inside sandboxes on its own (OOM kills)."""
    events = get_driver().take_events()
    recorded = 0
    for event in events:
        # The driver names sandboxes by runtime id (a resumed one runs in its predecessor's).
        sandbox = (
            Sandbox.objects.filter(
                Q(runtime_name=event.sandbox_id) | Q(runtime_name="", public_id=event.sandbox_id)
            )
            .exclude(status=SandboxStatus.DESTROYED)
            .select_related("project")
            .first()
        )
        if sandbox is None or event.kind != "oom":
            continue
        # The 0.1.9 client parses `operation` into its nine names and fails on any other,
        # so an OOM kill is a system `reconcile` event whose reason says `oom`.
        record_event(
            sandbox.project,
            Operation.RECONCILE,
            actor_kind=ActorKind.SYSTEM,
            sandbox_id=sandbox.public_id,
            reason="oom",
            metadata={**event.details, "event": "oom", "memory_mb": sandbox.memory_mb},
        )
        recorded += 1
    return recorded
