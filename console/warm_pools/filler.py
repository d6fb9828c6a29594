"""Keeping a pool at its target: the worker side of warm pools (docs/warm-pools.md).

One worker at a time works on a pool: it takes the pool's lease (a conditional UPDATE;
on PostgreSQL the row is picked with FOR UPDATE SKIP LOCKED first, as job claims are,
console/jobs/queue.py), so two workers never fill one pool twice over. Under the lease
it replaces sandboxes that no longer fit the pool (another template or size, stale,
idle), destroys the excess above `max_ready` (or all of it while draining or deleted),
then creates sandboxes one at a time through the normal create path until the pool
holds its target. After giving the lease back it looks once more, so a checkout that
came in while it finished is never left unfilled.

A sandbox leaves the pool for destruction only after it is taken: its `transition` set
while it still belongs to the pool, which a checkout's claim requires to be empty, so
a sandbox is either checked out or destroyed, never both.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from console.actor import SYSTEM
from console.errors import DomainError
from console.jobs import backoff_delay
from console.models import Sandbox, SandboxStatus, WarmPool, WarmPoolState
from console.sandboxes.owner import this_process
from console.warm_pools import live
from console.warm_pools.shapes import inventories, target

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
# Creates per lease: bounded, so one pool cannot hold a worker thread forever.
MAX_CREATES_PER_PASS = 40
FAILURE_BACKOFF_BASE = 2.0
FAILURE_BACKOFF_CAP = 300.0
TAKEN = "pool_release"
REASON_DRAIN = "warm_pool_drain"
REASON_EXPIRED = "warm_pool_expired"
REASON_TRIM = "warm_pool_trim"

# Degraded reasons (the contract's names) by the error code a fill failed with.
DEGRADED_BY_CODE = {
    "quota_exceeded": "quota_exceeded",
    "template_not_found": "template_build_unavailable",
    "runtime_unavailable": "no_eligible_hosts",
}


def work_on(pool_pk: int) -> bool:
    """Bring the pool to its target if no other worker is at it. True when this call
    did the work (False: another worker holds the lease and will)."""
    did = False
    for _ in range(3):  # after giving the lease back, look again (module docstring)
        holder = f"{this_process()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
        if not _take_lease(pool_pk, holder):
            return did
        try:
            _pass(pool_pk, holder)
            did = True
        finally:
            WarmPool.objects.filter(pk=pool_pk, filler=holder).update(
                filler="", fill_lease_until=None
            )
        if not needs_work(pool_pk):
            break
    return did


def needs_work(pool_pk: int) -> bool:
    pool = WarmPool.objects.filter(pk=pool_pk).first()
    if pool is None:
        return False
    inventory = inventories([pool])[pool.pk]
    if pool.state in (WarmPoolState.DRAINING, WarmPoolState.DELETED):
        return inventory.total > 0 or pool.state == WarmPoolState.DRAINING
    if inventory.total > (0 if _idle(pool) else pool.max_ready):
        return True
    if _stale(pool).exists() or _unfit(pool).exists():
        return True
    waiting = pool.next_fill_at is not None and pool.next_fill_at > timezone.now()
    return not waiting and inventory.total < _aim(pool)


def _take_lease(pool_pk: int, holder: str) -> bool:
    now = timezone.now()
    free = Q(filler="") | Q(fill_lease_until__lt=now)
    taken = {"filler": holder, "fill_lease_until": now + LEASE}
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            pk = (
                WarmPool.objects.filter(free, pk=pool_pk)
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)
                .first()
            )
            return pk is not None and bool(WarmPool.objects.filter(pk=pk).update(**taken))
    return bool(WarmPool.objects.filter(free, pk=pool_pk).update(**taken))


def _renew(pool_pk: int, holder: str) -> bool:
    return bool(
        WarmPool.objects.filter(pk=pool_pk, filler=holder).update(
            fill_lease_until=timezone.now() + LEASE
        )
    )


def _pass(pool_pk: int, holder: str) -> None:
    pool = WarmPool.objects.select_related("project").get(pk=pool_pk)
    live.pools_changed(pool.project, [pool.public_id])
    if pool.state in (WarmPoolState.DRAINING, WarmPoolState.DELETED):
        _release(pool, _inventory(pool).filter(status=SandboxStatus.RUNNING), REASON_DRAIN)
        if pool.state == WarmPoolState.DRAINING and not _inventory(pool).exists():
            # Drained: a pool that holds nothing and makes nothing is a disabled pool.
            WarmPool.objects.filter(pk=pool.pk, state=WarmPoolState.DRAINING).update(
                state=WarmPoolState.DISABLED, disabled_at=timezone.now(), updated_at=timezone.now()
            )
        _reconciled(pool)
        return
    old = _release(pool, _unfit(pool), REASON_EXPIRED)
    if old != pool.released_last_pass:  # the rollout's "released this tick"
        WarmPool.objects.filter(pk=pool.pk).update(released_last_pass=old)
    expired = old + _release(pool, _stale(pool), REASON_EXPIRED)
    if expired:
        WarmPool.objects.filter(pk=pool.pk).update(expired_count=F("expired_count") + expired)
    _trim(pool, ceiling=pool.max_ready)
    if _idle(pool):
        trimmed = _trim(pool, ceiling=0)
        if trimmed:
            WarmPool.objects.filter(pk=pool.pk).update(expired_count=F("expired_count") + trimmed)
    if pool.state == WarmPoolState.ENABLED:
        _fill(pool, holder)
    _reconciled(pool)


def _fill(pool: WarmPool, holder: str) -> None:
    from console.sandboxes import service as sandboxes

    for _ in range(MAX_CREATES_PER_PASS):
        pool.refresh_from_db()
        if pool.state != WarmPoolState.ENABLED or not _renew(pool.pk, holder):
            return
        if pool.next_fill_at is not None and pool.next_fill_at > timezone.now():
            return  # backing off after failures; the sweep comes back
        have = inventories([pool])[pool.pk].total
        if have >= _aim(pool):
            if pool.degraded_reason:
                WarmPool.objects.filter(pk=pool.pk).update(degraded_reason="", last_error="")
            return
        try:
            sandboxes.create_sandbox(
                pool.project,
                actor=SYSTEM,
                template=pool.template,
                vcpus=pool.vcpus,
                memory_mb=pool.memory_mb,
                disk_mb=pool.disk_mb,
                warm_pool=pool,
            )
        except DomainError as error:
            _failed(pool, error)
            return
        except Exception as exc:  # a fill must never kill the worker thread
            log.exception("warm pool %s fill failed", pool.public_id)
            _failed(pool, DomainError("runtime_error", str(exc)[:400] or type(exc).__name__))
            return
        WarmPool.objects.filter(pk=pool.pk).update(consecutive_failures=0, degraded_reason="")
        live.pools_changed(pool.project, [pool.public_id])


def _failed(pool: WarmPool, error: DomainError) -> None:
    failures = pool.consecutive_failures + 1
    delay = backoff_delay(failures, FAILURE_BACKOFF_BASE, FAILURE_BACKOFF_CAP)
    WarmPool.objects.filter(pk=pool.pk).update(
        failed_count=F("failed_count") + 1,
        consecutive_failures=failures,
        degraded_reason=DEGRADED_BY_CODE.get(error.code, "artifact_prewarm_failed"),
        last_error=f"{error.code}: {error.message}"[:500],
        next_fill_at=timezone.now() + timedelta(seconds=delay),
    )
    log.warning("warm pool %s could not fill: %s", pool.public_id, error.message)
    live.pools_changed(pool.project, [pool.public_id])


def _aim(pool: WarmPool) -> int:
    return 0 if _idle(pool) else target(pool)


def _idle(pool: WarmPool) -> bool:
    """No create asked the pool for a sandbox for idle_timeout_seconds: it lets its
    sandboxes go until the next one asks (docs/warm-pools.md)."""
    if not pool.idle_timeout_seconds:
        return False
    since = pool.last_demand_at or pool.enabled_at or pool.created_at
    return timezone.now() - since > timedelta(seconds=pool.idle_timeout_seconds)


def _inventory(pool: WarmPool) -> QuerySet[Sandbox]:
    return Sandbox.objects.filter(
        warm_pool=pool, status__in=(SandboxStatus.CREATING, SandboxStatus.RUNNING)
    )


def _unfit(pool: WarmPool) -> QuerySet[Sandbox]:
    """Ready sandboxes made for what the pool was before an update (template, size) or a
    rollout to another build (console/warm_pools/rollout.py)."""
    ready = _inventory(pool).filter(status=SandboxStatus.RUNNING)
    return ready.exclude(warm_pool_generation=pool.generation)


def _stale(pool: WarmPool) -> QuerySet[Sandbox]:
    ready = _inventory(pool).filter(status=SandboxStatus.RUNNING)
    if not pool.stale_after_seconds:
        return ready.none()
    cutoff = timezone.now() - timedelta(seconds=pool.stale_after_seconds)
    return ready.filter(started_at__lt=cutoff)


def _trim(pool: WarmPool, *, ceiling: int) -> int:
    """Destroy ready sandboxes (the oldest first) until the pool holds at most `ceiling`."""
    over = _inventory(pool).count() - ceiling
    if over <= 0:
        return 0
    oldest = _inventory(pool).filter(status=SandboxStatus.RUNNING).order_by("started_at", "pk")
    return _release(pool, oldest[:over], REASON_TRIM)


def _release(pool: WarmPool, rows: QuerySet[Sandbox], reason: str) -> int:
    """Take each sandbox out of reach of checkouts, then destroy it. Returns how many."""
    from console.sandboxes import service as sandboxes

    done = 0
    for pk in list(rows.values_list("pk", flat=True)[:100]):
        taken = Sandbox.objects.filter(
            pk=pk, warm_pool=pool, status=SandboxStatus.RUNNING, transition=""
        ).update(transition=TAKEN, transition_started_at=timezone.now())
        if not taken:
            continue  # checked out meanwhile: it is somebody's sandbox now
        sandbox = Sandbox.objects.select_related("project").get(pk=pk)
        sandboxes.destroy_sandbox(
            sandbox,
            actor=SYSTEM,
            reason=reason,
            metadata={"warm_pool_id": pool.public_id},
        )
        done += 1
    if done:
        live.pools_changed(pool.project, [pool.public_id])
    return done


def _reconciled(pool: WarmPool) -> None:
    WarmPool.objects.filter(pk=pool.pk).update(last_reconciled_at=timezone.now())
    live.pools_changed(pool.project, [pool.public_id])
