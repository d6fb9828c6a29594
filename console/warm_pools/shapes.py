"""The WarmPool JSON (contract §4.5) and its status counters, counted from the pool's
sandboxes rather than kept on the side, so they are never stale."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count

from console.models import Sandbox, SandboxStatus, WarmPool, WarmPoolState
from console.timefmt import iso


@dataclass(frozen=True)
class Inventory:
    """The pool's sandboxes now: started and ready, or still starting."""

    ready: int = 0
    warming: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.warming


def inventories(pools: Iterable[WarmPool]) -> dict[int, Inventory]:
    """Each pool's inventory, in one query."""
    pks = [pool.pk for pool in pools]
    counts: dict[int, dict[str, int]] = {pk: {} for pk in pks}
    rows = (
        Sandbox.objects.filter(
            warm_pool_id__in=pks, status__in=(SandboxStatus.CREATING, SandboxStatus.RUNNING)
        )
        .values_list("warm_pool_id", "status")
        .annotate(n=Count("pk"))
    )
    for pk, status, n in rows:
        counts[pk][status] = n
    return {
        pk: Inventory(
            ready=found.get(SandboxStatus.RUNNING, 0), warming=found.get(SandboxStatus.CREATING, 0)
        )
        for pk, found in counts.items()
    }


def target(pool: WarmPool) -> int:
    """What the worker aims to keep ready (docs/warm-pools.md, "Target")."""
    if pool.state != WarmPoolState.ENABLED:
        return 0
    return pool.min_ready


def status_counts(pool: WarmPool, inventory: Inventory) -> dict[str, int]:
    emptying = pool.state in (WarmPoolState.DRAINING, WarmPoolState.DELETED)
    aim = target(pool)
    short = max(0, aim - inventory.total)
    return {
        "target": aim,
        "ready": 0 if emptying else inventory.ready,
        "warming": 0 if emptying else inventory.warming,
        "claimed": int(pool.claimed_count),
        "draining": inventory.total if emptying else 0,
        "failed": int(pool.failed_count),
        "expired": int(pool.expired_count),
        "unavailable": short if pool.degraded_reason else 0,
    }


def public_status(pool: WarmPool, inventory: Inventory) -> str:
    """One word for lists and `--status` filters: ready, warming, degraded, disabled,
    draining or deleted."""
    if pool.state != WarmPoolState.ENABLED:
        return str(pool.state)
    if pool.degraded_reason:
        return "degraded"
    return "ready" if inventory.ready >= pool.min_ready else "warming"


PUBLIC_STATUSES = ("ready", "warming", "degraded", "disabled", "draining", "deleted")


def degraded_reason(pool: WarmPool) -> str | None:
    if pool.state == WarmPoolState.DRAINING:
        return "drain_active"
    return pool.degraded_reason or None


def pool_to_dict(pool: WarmPool, inventory: Inventory | None = None) -> dict[str, Any]:
    """WarmPool: every key the client reads, plus `public_status` and `last_error`."""
    if inventory is None:
        inventory = inventories([pool])[pool.pk]
    resources: dict[str, Any] = {"vcpus": pool.vcpus, "memory_mb": pool.memory_mb}
    if pool.disk_mb is not None:
        resources["disk_mb"] = pool.disk_mb
    return {
        "id": pool.public_id,
        "name": pool.name,
        "template_ref": pool.template_ref,
        "resolved_template": pool.template,
        "resolved_template_build_id": None,
        "runtime_artifact_id": None,
        "state": pool.state,
        "min_ready": pool.min_ready,
        "max_ready": pool.max_ready,
        "resources": resources,
        "status": status_counts(pool, inventory),
        "public_status": public_status(pool, inventory),
        "degraded_reason": degraded_reason(pool),
        "last_error": pool.last_error or None,
        "idle_timeout_seconds": pool.idle_timeout_seconds,
        "stale_after_seconds": pool.stale_after_seconds,
        "checkout_policy": pool.checkout_policy,
        "version_policy": pool.version_policy,
        "track_tag": None,
        "labels": pool.labels or {},
        "metadata": pool.metadata or {},
        "created_at": iso(pool.created_at),
        "updated_at": iso(pool.updated_at),
        "enabled_at": iso(pool.enabled_at),
        "disabled_at": iso(pool.disabled_at),
        "drain_requested_at": iso(pool.drain_requested_at),
        "last_reconciled_at": iso(pool.last_reconciled_at),
        "deleted_at": iso(pool.deleted_at),
    }
