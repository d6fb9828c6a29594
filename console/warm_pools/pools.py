"""Warm pools as a resource: validate, create, change state, delete (docs/warm-pools.md).

The /v1 API and the console both call these; they raise DomainError with the contract's
codes. Filling and emptying is the worker's job (console/warm_pools/filler.py): every
change here asks it to look at the pool again.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from console.actor import Actor
from console.audit import service as audit
from console.errors import DomainError
from console.models import (
    Project,
    WarmPool,
    WarmPoolState,
)
from console.warm_pools import live, rollout
from console.warm_pools.validation import CREATE_KEYS, REQUIRED, validated

MAX_POOLS_PER_PROJECT = 20
# A pool in these states holds sandboxes a create may check out.
SERVING = (WarmPoolState.ENABLED, WarmPoolState.DISABLED)


def get_pool(project: Project, public_id: str) -> WarmPool:
    """The project's pool; another project's, a deleted one or none: warm_pool_not_found."""
    pool = (
        WarmPool.objects.filter(project=project, public_id=public_id)
        .exclude(state=WarmPoolState.DELETED)
        .first()
    )
    if pool is None:
        raise DomainError("warm_pool_not_found", f"Warm pool {public_id} not found")
    pool.project = project  # the same row, already loaded: no query when it is read
    return pool


def create_pool(
    project: Project,
    body: dict[str, Any],
    *,
    actor: Actor | None = None,
) -> WarmPool:
    unknown = sorted(set(body) - CREATE_KEYS)
    if unknown:
        raise DomainError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    body = {key: value for key, value in body.items() if value is not None}  # null = absent
    missing = [key for key in REQUIRED if body.get(key) is None]
    if missing:
        raise DomainError("invalid_request", f"Missing field(s): {', '.join(missing)}")
    fields = validated(project, body, current=None)
    now = timezone.now()
    try:
        with transaction.atomic():
            # Lock the project row so two concurrent creates count each other.
            Project.objects.select_for_update().filter(pk=project.pk).first()
            live_pools = WarmPool.objects.filter(project=project).exclude(
                state=WarmPoolState.DELETED
            )
            if live_pools.count() >= MAX_POOLS_PER_PROJECT:
                raise DomainError(
                    "quota_exceeded",
                    f"This project has {MAX_POOLS_PER_PROJECT} warm pools, the most it may have",
                    suggested_action="Delete a warm pool first.",
                    details={"max_warm_pools": MAX_POOLS_PER_PROJECT},
                )
            pool = WarmPool.objects.create(
                project=project,
                created_by_key=actor.api_key if actor is not None else None,
                state=WarmPoolState.ENABLED,
                created_at=now,
                updated_at=now,
                enabled_at=now,
                last_demand_at=now,
                **fields,
            )
            _audit(
                "warm_pool.created",
                pool,
                actor,
                template=pool.template_ref,
                build=pool.template_build.public_id if pool.template_build else None,
                track_tag=pool.track_tag or None,
            )
            _ask_filler(pool)
    except IntegrityError:
        raise _name_taken(str(body.get("name"))) from None
    live.pools_changed(project, [pool.public_id])
    return pool


def update_pool(pool: WarmPool, body: dict[str, Any], *, actor: Actor | None = None) -> WarmPool:
    """PATCH: any subset of the create keys (`scale` sends min_ready and max_ready)."""
    unknown = sorted(set(body) - CREATE_KEYS)
    if unknown:
        raise DomainError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    given = {key: value for key, value in body.items() if value is not None}
    if not given:
        raise DomainError("invalid_request", "Nothing to change: send at least one field")
    fields = validated(pool.project, given, current=pool)
    if "template" in fields:
        fields.update(rollout.moved(pool, fields["template"], fields["template_build"]))
    sized = ("vcpus", "memory_mb", "disk_mb")
    if any(name in fields and fields[name] != getattr(pool, name) for name in sized):
        fields["generation"] = F("generation") + 1  # its ready sandboxes get replaced
    try:
        with transaction.atomic():
            row = WarmPool.objects.filter(pk=pool.pk).exclude(state=WarmPoolState.DELETED)
            if not row.update(**fields, updated_at=timezone.now()):
                raise DomainError("warm_pool_not_found", f"Warm pool {pool.public_id} not found")
            _audit("warm_pool.updated", pool, actor, changed=sorted(given))
            _ask_filler(pool)
    except IntegrityError:
        raise _name_taken(str(given.get("name"))) from None
    pool.refresh_from_db()
    live.pools_changed(pool.project, [pool.public_id])
    return pool


def enable_pool(pool: WarmPool, *, actor: Actor | None = None) -> WarmPool:
    now = timezone.now()
    return _set_state(
        pool,
        WarmPoolState.ENABLED,
        actor,
        enabled_at=now,
        last_demand_at=now,
        degraded_reason="",
        consecutive_failures=0,
        next_fill_at=None,
    )


def disable_pool(pool: WarmPool, *, actor: Actor | None = None) -> WarmPool:
    """Stop refilling; what is ready stays ready and can still be checked out."""
    return _set_state(pool, WarmPoolState.DISABLED, actor, disabled_at=timezone.now())


def drain_pool(pool: WarmPool, *, actor: Actor | None = None) -> WarmPool:
    """Stop refilling and destroy the ready sandboxes; the worker does the destroying and
    moves the pool to `disabled` once it holds none."""
    return _set_state(pool, WarmPoolState.DRAINING, actor, drain_requested_at=timezone.now())


def delete_pool(pool: WarmPool, *, actor: Actor | None = None) -> WarmPool:
    """Gone at once for the API (404 after); the worker destroys what it still holds."""
    return _set_state(pool, WarmPoolState.DELETED, actor, deleted_at=timezone.now())


def reconcile_pool(pool: WarmPool, *, actor: Actor | None = None) -> WarmPool:
    """Ask the worker to look at the pool now (fill, trim, replace stale sandboxes), and
    lift a failure back-off so a fixed problem is retried at once."""
    with transaction.atomic():
        WarmPool.objects.filter(pk=pool.pk).update(next_fill_at=None)
        _ask_filler(pool)
    pool.refresh_from_db()
    return pool


def _set_state(pool: WarmPool, state: str, actor: Actor | None, **fields: Any) -> WarmPool:
    with transaction.atomic():
        changed = (
            WarmPool.objects.filter(pk=pool.pk)
            .exclude(state=WarmPoolState.DELETED)
            .update(state=state, updated_at=timezone.now(), **fields)
        )
        if not changed:
            raise DomainError("warm_pool_not_found", f"Warm pool {pool.public_id} not found")
        _audit(AUDITED[state], pool, actor)
        _ask_filler(pool)
    pool.refresh_from_db()
    live.pools_changed(pool.project, [pool.public_id])
    return pool


AUDITED: dict[str, str] = {
    WarmPoolState.ENABLED: "warm_pool.enabled",
    WarmPoolState.DISABLED: "warm_pool.disabled",
    WarmPoolState.DRAINING: "warm_pool.drain_requested",
    WarmPoolState.DELETED: "warm_pool.deleted",
}


def _audit(action: str, pool: WarmPool, actor: Actor | None, **extra: Any) -> None:
    audit.record(
        action,
        team=pool.project.team,
        actor=actor,
        target_type="warm_pool",
        target_id=pool.public_id,
        name=pool.name,
        project=pool.project.public_id,
        **extra,
    )


def _ask_filler(pool: WarmPool) -> None:
    from console.warm_pools.jobs import ask_filler

    ask_filler(pool.pk)


def _name_taken(name: str) -> DomainError:
    return DomainError(
        "warm_pool_conflict",
        f"This project already has a warm pool named {name!r}",
        suggested_action="Pick another --name, or delete that pool first.",
    )
