"""The WarmPool JSON (contract §4.5) and its status counters, counted from the pool's
sandboxes rather than kept on the side, so they are never stale."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count

from console.models import Sandbox, SandboxStatus, TemplateBuild, WarmPool, WarmPoolState
from console.timefmt import iso
from console.warm_pools.templates import display_name


@dataclass(frozen=True)
class Inventory:
    """The pool's sandboxes now: started and ready, or still starting; `old_*` are those
    made for an earlier generation (before an update or a rollout), being replaced."""

    ready: int = 0
    warming: int = 0
    old_ready: int = 0
    old_warming: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.warming


def inventories(pools: Iterable[WarmPool]) -> dict[int, Inventory]:
    """Each pool's inventory, in one query."""
    generations = {pool.pk: pool.generation for pool in pools}
    counts: dict[int, dict[tuple[str, bool], int]] = {pk: {} for pk in generations}
    rows = (
        Sandbox.objects.filter(
            warm_pool_id__in=list(generations),
            status__in=(SandboxStatus.CREATING, SandboxStatus.RUNNING),
        )
        .values_list("warm_pool_id", "status", "warm_pool_generation")
        .annotate(n=Count("pk"))
    )
    for pk, status, generation, n in rows:
        old = generation != generations[pk]
        counts[pk][(status, old)] = counts[pk].get((status, old), 0) + n
    running, creating = SandboxStatus.RUNNING, SandboxStatus.CREATING
    return {
        pk: Inventory(
            ready=found.get((running, False), 0) + found.get((running, True), 0),
            warming=found.get((creating, False), 0) + found.get((creating, True), 0),
            old_ready=found.get((running, True), 0),
            old_warming=found.get((creating, True), 0),
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
        # Only what a checkout may take: not the old generation's, being replaced.
        "ready": 0 if emptying else inventory.ready - inventory.old_ready,
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
    return "ready" if inventory.ready - inventory.old_ready >= pool.min_ready else "warming"


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
        "resolved_template": display_name(pool),
        "resolved_template_build_id": _build_id(pool.template_build),
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
        "track_tag": pool.track_tag or None,
        "rollout_generation": pool.rollout_generation,
        "previous_resolved_template": pool.previous_template or None,
        "previous_resolved_template_build_id": _build_id(pool.previous_template_build),
        "previous_runtime_artifact_id": None,
        "rollout_status": rollout_status(pool, inventory),
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


def _build_id(build: TemplateBuild | None) -> str | None:
    return build.public_id if build is not None else None


def rollout_status(pool: WarmPool, inventory: Inventory) -> dict[str, Any]:
    """The client's TemplateWarmPoolRolloutStatus (exactly its keys): the build the pool
    makes now, its sandboxes of this generation and of the whole pool, and how many of
    an older generation are still to be replaced (docs/warm-pools.md, "Rollout")."""
    emptying = pool.state in (WarmPoolState.DRAINING, WarmPoolState.DELETED)
    base = pool.rollout_base or {}
    current_ready = inventory.ready - inventory.old_ready
    current_warming = inventory.warming - inventory.old_warming
    since = {
        "claimed": int(pool.claimed_count) - int(base.get("claimed", 0)),
        "failed": int(pool.failed_count) - int(base.get("failed", 0)),
        "released": int(pool.expired_count) - int(base.get("expired", 0)),
    }
    return {
        "version_policy": pool.version_policy,
        "track_tag": pool.track_tag or None,
        "rollout_generation": pool.rollout_generation,
        "current_identity": {
            "template": pool.template,
            "resolved_template_build_id": _build_id(pool.template_build),
            "runtime_artifact_id": None,
            "warm_profile_key": None,
            "create_fingerprint": None,
        },
        "current_counts": {
            "ready": 0 if emptying else current_ready,
            "warming": 0 if emptying else current_warming,
            **since,
            "draining": current_ready + current_warming if emptying else 0,
            "other": 0,
        },
        "observed_pool_counts": {
            "ready": 0 if emptying else inventory.ready,
            "warming": 0 if emptying else inventory.warming,
            "claimed": int(pool.claimed_count),
            "failed": int(pool.failed_count),
            "draining": inventory.total if emptying else 0,
            "released": int(pool.expired_count),
            "other": 0,
        },
        "old_ready_or_warming": inventory.old_ready + inventory.old_warming,
        "old_ready_or_warming_released_this_tick": int(pool.released_last_pass),
        "updated_at": iso(pool.rollout_updated_at or pool.created_at),
    }
