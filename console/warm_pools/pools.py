"""Warm pools as a resource: validate, create, change state, delete (docs/warm-pools.md).

The /v1 API and the console both call these; they raise ApiError with the contract's
codes. Filling and emptying is the worker's job (console/warm_pools/filler.py): every
change here asks it to look at the pool again.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from console.api.errors import ApiError
from console.audit import service as audit
from console.models import (
    ApiKey,
    CheckoutMode,
    Project,
    VersionPolicy,
    WarmPool,
    WarmPoolState,
)
from console.warm_pools import live
from console.warm_pools.templates import resolve_template

# Bounds (docs/warm-pools.md, "Limits").
MAX_POOLS_PER_PROJECT = 20
MAX_READY = 20
MAX_LABELS = 32
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 255
MAX_METADATA_BYTES = 16 * 1024
MAX_NAME = 63
MAX_SECONDS = 7 * 24 * 3600

CREATE_KEYS = frozenset(
    {
        "template_ref",
        "name",
        "min_ready",
        "max_ready",
        "resources",
        "idle_timeout_seconds",
        "stale_after_seconds",
        "checkout_policy",
        "version_policy",
        "track_tag",
        "labels",
        "metadata",
    }
)
REQUIRED = ("template_ref", "name", "min_ready", "max_ready")
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
        raise ApiError("warm_pool_not_found", f"Warm pool {public_id} not found")
    return pool


def create_pool(
    project: Project,
    body: dict[str, Any],
    *,
    api_key: ApiKey | None = None,
    request: HttpRequest | None = None,
) -> WarmPool:
    unknown = sorted(set(body) - CREATE_KEYS)
    if unknown:
        raise ApiError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    body = {key: value for key, value in body.items() if value is not None}  # null = absent
    missing = [key for key in REQUIRED if body.get(key) is None]
    if missing:
        raise ApiError("invalid_request", f"Missing field(s): {', '.join(missing)}")
    fields = _validated(project, body, current=None)
    now = timezone.now()
    try:
        with transaction.atomic():
            # Lock the project row so two concurrent creates count each other.
            Project.objects.select_for_update().filter(pk=project.pk).first()
            live_pools = WarmPool.objects.filter(project=project).exclude(
                state=WarmPoolState.DELETED
            )
            if live_pools.count() >= MAX_POOLS_PER_PROJECT:
                raise ApiError(
                    "quota_exceeded",
                    f"This project has {MAX_POOLS_PER_PROJECT} warm pools, the most it may have",
                    suggested_action="Delete a warm pool first.",
                    details={"max_warm_pools": MAX_POOLS_PER_PROJECT},
                )
            pool = WarmPool.objects.create(
                project=project,
                created_by_key=api_key,
                state=WarmPoolState.ENABLED,
                created_at=now,
                updated_at=now,
                enabled_at=now,
                last_demand_at=now,
                **fields,
            )
            _audit("warm_pool.created", pool, request, template=pool.template_ref)
            _ask_filler(pool)
    except IntegrityError:
        raise _name_taken(str(body.get("name"))) from None
    live.pools_changed(project, [pool.public_id])
    return pool


def update_pool(
    pool: WarmPool, body: dict[str, Any], *, request: HttpRequest | None = None
) -> WarmPool:
    """PATCH: any subset of the create keys (`scale` sends min_ready and max_ready)."""
    unknown = sorted(set(body) - CREATE_KEYS)
    if unknown:
        raise ApiError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    given = {key: value for key, value in body.items() if value is not None}
    if not given:
        raise ApiError("invalid_request", "Nothing to change: send at least one field")
    fields = _validated(pool.project, given, current=pool)
    made_of = ("template", "vcpus", "memory_mb", "disk_mb")
    if any(name in fields and fields[name] != getattr(pool, name) for name in made_of):
        fields["generation"] = F("generation") + 1  # its ready sandboxes get replaced
    try:
        with transaction.atomic():
            row = WarmPool.objects.filter(pk=pool.pk).exclude(state=WarmPoolState.DELETED)
            if not row.update(**fields, updated_at=timezone.now()):
                raise ApiError("warm_pool_not_found", f"Warm pool {pool.public_id} not found")
            _audit("warm_pool.updated", pool, request, changed=sorted(given))
            _ask_filler(pool)
    except IntegrityError:
        raise _name_taken(str(given.get("name"))) from None
    pool.refresh_from_db()
    live.pools_changed(pool.project, [pool.public_id])
    return pool


def enable_pool(pool: WarmPool, *, request: HttpRequest | None = None) -> WarmPool:
    now = timezone.now()
    return _set_state(
        pool,
        WarmPoolState.ENABLED,
        request,
        enabled_at=now,
        last_demand_at=now,
        degraded_reason="",
        consecutive_failures=0,
        next_fill_at=None,
    )


def disable_pool(pool: WarmPool, *, request: HttpRequest | None = None) -> WarmPool:
    """Stop refilling; what is ready stays ready and can still be checked out."""
    return _set_state(pool, WarmPoolState.DISABLED, request, disabled_at=timezone.now())


def drain_pool(pool: WarmPool, *, request: HttpRequest | None = None) -> WarmPool:
    """Stop refilling and destroy the ready sandboxes; the worker does the destroying and
    moves the pool to `disabled` once it holds none."""
    return _set_state(pool, WarmPoolState.DRAINING, request, drain_requested_at=timezone.now())


def delete_pool(pool: WarmPool, *, request: HttpRequest | None = None) -> WarmPool:
    """Gone at once for the API (404 after); the worker destroys what it still holds."""
    return _set_state(pool, WarmPoolState.DELETED, request, deleted_at=timezone.now())


def reconcile_pool(pool: WarmPool, *, request: HttpRequest | None = None) -> WarmPool:
    """Ask the worker to look at the pool now (fill, trim, replace stale sandboxes), and
    lift a failure back-off so a fixed problem is retried at once."""
    with transaction.atomic():
        WarmPool.objects.filter(pk=pool.pk).update(next_fill_at=None)
        _ask_filler(pool)
    pool.refresh_from_db()
    return pool


def _set_state(pool: WarmPool, state: str, request: HttpRequest | None, **fields: Any) -> WarmPool:
    with transaction.atomic():
        changed = (
            WarmPool.objects.filter(pk=pool.pk)
            .exclude(state=WarmPoolState.DELETED)
            .update(state=state, updated_at=timezone.now(), **fields)
        )
        if not changed:
            raise ApiError("warm_pool_not_found", f"Warm pool {pool.public_id} not found")
        _audit(AUDITED[state], pool, request)
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


def _audit(action: str, pool: WarmPool, request: HttpRequest | None, **extra: Any) -> None:
    audit.record(
        action,
        team=pool.project.team,
        request=request,
        target_type="warm_pool",
        target_id=pool.public_id,
        name=pool.name,
        project=pool.project.public_id,
        **extra,
    )


def _ask_filler(pool: WarmPool) -> None:
    from console.warm_pools.jobs import ask_filler

    ask_filler(pool.pk)


def _name_taken(name: str) -> ApiError:
    return ApiError(
        "warm_pool_conflict",
        f"This project already has a warm pool named {name!r}",
        suggested_action="Pick another --name, or delete that pool first.",
    )


# --- validation -------------------------------------------------------------------------


def _validated(
    project: Project, body: dict[str, Any], *, current: WarmPool | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _name(body["name"])
    if "template_ref" in body:
        ref = body["template_ref"]
        if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
            raise ApiError("invalid_request", "template_ref must be a template name or ref")
        fields["template_ref"] = ref.strip()
        fields["template"] = resolve_template(project, ref.strip())
    low = body.get("min_ready", current.min_ready if current else None)
    high = body.get("max_ready", current.max_ready if current else None)
    if "min_ready" in body or "max_ready" in body:
        low = _count("min_ready", low)
        high = _count("max_ready", high)
        if low > high:
            raise ApiError(
                "invalid_request", f"min_ready ({low}) must not be more than max_ready ({high})"
            )
        limit = project.running_sandbox_limit
        if low > limit:
            raise ApiError(
                "invalid_request",
                f"min_ready {low} is more than this project may run at once ({limit})",
                suggested_action=f"Use --min-ready {limit} or less.",
                details={"running_sandbox_limit": limit},
            )
        fields.update(min_ready=low, max_ready=high)
    if "resources" in body:
        fields.update(_resources(body["resources"], current))
    for key in ("idle_timeout_seconds", "stale_after_seconds"):
        if key in body:
            fields[key] = _seconds(key, body[key])
    if "checkout_policy" in body:
        mode = body["checkout_policy"]
        if mode not in CheckoutMode.values:
            raise ApiError("invalid_request", "checkout_policy must be prefer, require or bypass")
        fields["checkout_policy"] = mode
    _version_policy(body)
    if "labels" in body:
        fields["labels"] = _labels(body["labels"])
    if "metadata" in body:
        fields["metadata"] = _metadata(body["metadata"])
    return fields


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_NAME:
        raise ApiError("invalid_request", f"name must be 1 to {MAX_NAME} characters")
    return value.strip()


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_READY:
        raise ApiError(
            "invalid_request",
            f"{name} must be an integer from 0 to {MAX_READY}",
            details={"max_ready_limit": MAX_READY},
        )
    return value


def _resources(value: Any, current: WarmPool | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError("invalid_request", "resources must be an object")
    unknown = sorted(set(value) - {"vcpus", "memory_mb", "disk_mb"})
    if unknown:
        raise ApiError("invalid_request", f"Unknown resources field(s): {', '.join(unknown)}")
    return {
        "vcpus": _bounded(
            "resources.vcpus",
            value.get("vcpus"),
            current.vcpus if current else 2,
            1,
            settings.SANDBOX_MAX_VCPUS,
        ),
        "memory_mb": _bounded(
            "resources.memory_mb",
            value.get("memory_mb"),
            current.memory_mb if current else 512,
            64,
            settings.SANDBOX_MAX_MEMORY_MB,
        ),
        "disk_mb": _bounded(
            "resources.disk_mb",
            value.get("disk_mb"),
            current.disk_mb if current else None,
            64,
            settings.SANDBOX_MAX_DISK_MB,
        ),
    }


def _bounded(name: str, value: Any, default: Any, low: int, high: int) -> Any:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError("invalid_request", f"{name} must be an integer from {low} to {high}")
    return value


def _seconds(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SECONDS:
        raise ApiError("invalid_request", f"{name} must be an integer from 1 to {MAX_SECONDS}")
    return value


def _version_policy(body: dict[str, Any]) -> None:
    """Pools keep the template they were made with (pinned). Following a tag needs
    template tags, which this server does not have yet: refused, never ignored."""
    policy = body.get("version_policy")
    if policy is not None and policy not in VersionPolicy.values:
        raise ApiError("invalid_request", "version_policy must be pinned_build or track_tag")
    if policy == VersionPolicy.TRACK_TAG or body.get("track_tag") is not None:
        raise ApiError(
            "not_implemented",
            "version_policy track_tag (and --track-tag) is not available on this server: "
            "template tags do not exist yet",
            suggested_action="Leave --version-policy unset (pinned_build); change the pool's "
            "template with an update when you want another one.",
        )


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ApiError("invalid_request", "labels must be an object of strings")
    if len(value) > MAX_LABELS:
        raise ApiError("invalid_request", f"At most {MAX_LABELS} labels")
    for key, text in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_LABEL_KEY or "=" in key:
            raise ApiError(
                "invalid_request", f"label name {key!r} must be 1 to {MAX_LABEL_KEY} characters"
            )
        if not isinstance(text, str) or len(text) > MAX_LABEL_VALUE:
            raise ApiError(
                "invalid_request", f"label {key} must be a string of at most {MAX_LABEL_VALUE}"
            )
    return dict(value)


def _metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError("invalid_request", "metadata must be a JSON object")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ApiError("invalid_request", f"metadata must be at most {MAX_METADATA_BYTES} bytes")
    return value
