"""The warm pools' jobs (docs/jobs.md): `warm_pools.fill` is asked for whenever a pool
changes or a sandbox leaves it; `warm_pools.sweep` looks at every pool every few
seconds, for what no request announces (a stale sandbox, an idle pool, a back-off
that ended, a fill whose worker died)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from console.jobs import RetryLater, enqueue, periodic, task
from console.models import SandboxStatus, WarmPool, WarmPoolState
from console.warm_pools import filler, rollout

SWEEP_SECONDS = 5.0
FILLS_PER_PROCESS = 2
_filling = threading.BoundedSemaphore(FILLS_PER_PROCESS)
SWEEP_MAX_POOLS = 500


def ask_filler(pool_pk: int, *, after: float = 0.0) -> None:
    """Queue a look at the pool, `after` seconds from now; it commits with the caller's
    transaction."""
    at = timezone.now() + timedelta(seconds=after) if after else None
    enqueue("warm_pools.fill", {"pool": pool_pk}, run_after=at, max_attempts=3)


@task("warm_pools.fill")
def fill(payload: dict[str, Any]) -> None:
    # A fill holds its worker thread while sandboxes start: at most FILLS_PER_PROCESS
    # at once, so webhook deliveries and other jobs keep threads of their own.
    if not _filling.acquire(blocking=False):
        raise RetryLater(timezone.now() + timedelta(seconds=1), "other fills are running")
    try:
        filler.work_on(int(payload["pool"]))
    finally:
        _filling.release()


@task(rollout.FOLLOW_TAGS)
def follow_tags(payload: dict[str, Any]) -> None:
    rollout.follow_tags(int(payload["template"]))


@periodic("warm_pools.sweep", every=SWEEP_SECONDS)
def sweep() -> list[int]:
    """Queue a fill for each pool that needs one and that no worker is at. Returns them."""
    now = timezone.now()
    holding = Q(inventory__status__in=(SandboxStatus.CREATING, SandboxStatus.RUNNING))
    candidates = (
        WarmPool.objects.filter(~Q(state=WarmPoolState.DELETED) | holding)
        .filter(Q(filler="") | Q(fill_lease_until__lt=now))
        .values_list("pk", flat=True)
        .distinct()
    )
    asked = []
    for pk in list(candidates[:SWEEP_MAX_POOLS]):
        if filler.needs_work(pk):
            ask_filler(pk)
            asked.append(pk)
    return asked
