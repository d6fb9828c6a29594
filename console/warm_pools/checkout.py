"""`POST /v1/sandboxes` with `warm_pool`: take a ready sandbox from the pool, or not
(docs/warm-pools.md, "Checkout").

- `prefer` takes a ready sandbox and falls back to a cold create on a miss;
  `require` answers `warm_pool_unavailable` on a miss; `bypass` always creates cold.
  A request without a mode uses the pool's `checkout_policy`.
- The claim is one conditional UPDATE (the sandbox must still belong to the pool, be
  running and not taken for destruction, and be of the pool's current generation, read
  in the UPDATE itself); on PostgreSQL the candidate is picked by a FOR UPDATE SKIP
  LOCKED subquery of that UPDATE, so concurrent checkouts take different sandboxes
  instead of queueing on one. Two creates never get the same sandbox.
- On PostgreSQL the claim, the pool's counter and the read-back are one statement, and
  both lifecycle events one INSERT: each statement is a round trip, and the checkout's
  latency is mostly round trips (bench/README.md, "Warm-pool checkout").
- The sandbox has never been handed out before: a pool only ever holds sandboxes it
  created, and one that leaves it never comes back.
- What the request asks for that can still apply to a started sandbox is applied
  (env for later processes, metadata, timeout and its action, cwd, auto_resume,
  gateway network settings); what cannot (another template or size, an egress
  policy, volumes, a snapshot) is refused, naming the field, never ignored.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from console.actor import SYSTEM, Actor
from console.errors import DomainError
from console.models import (
    CheckoutMode,
    EventStatus,
    Operation,
    Project,
    Sandbox,
    SandboxStatus,
    WarmPool,
)
from console.runtime import get_driver, netpolicy
from console.runtime.base import RuntimeError_
from console.sandboxes import service as sandboxes
from console.sandboxes.lifecycle import record_events
from console.sandboxes.owner import this_instance
from console.tokens import TRAFFIC, new_secret
from console.warm_pools.jobs import ask_filler
from console.warm_pools.pools import SERVING, get_pool
from console.warm_pools.templates import fits

MAX_WAIT_MS = 30_000
POLL_SECONDS = 0.025
REFILL_AFTER_SECONDS = 0.2
SPEC_KEYS = frozenset({"id", "mode", "wait_ms"})


def create(
    project: Project,
    spec: Any,
    *,
    actor: Actor,
    **create_args: Any,
) -> tuple[Sandbox, str, dict[str, Any]]:
    """A running sandbox for a create that names a warm pool; returns it, its raw
    traffic token, and the `warm_pool_checkout` the answer carries (contract §2.3)."""
    pool_id, mode, wait_ms = _parsed(spec)
    pool = get_pool(project, pool_id) if pool_id is not None else None
    if mode is None:
        mode = pool.checkout_policy if pool is not None else CheckoutMode.PREFER
    if pool is None and mode != CheckoutMode.BYPASS:
        raise DomainError(
            "invalid_request", "warm_pool.id is required unless warm_pool.mode is bypass"
        )
    said: dict[str, Any] = {"mode": mode}
    if pool is not None:
        said["id"] = pool.public_id

    def cold(source: str, **extra: Any) -> tuple[Sandbox, str, dict[str, Any]]:
        sandbox, token = sandboxes.create_sandbox(project, actor=actor, **create_args)
        return sandbox, token, {"source": source, "hit": False, **said, **extra}

    if mode == CheckoutMode.BYPASS or pool is None:
        return cold("bypassed")
    fields = _fitting_fields(project, pool, create_args)
    started = time.monotonic()
    deadline = started + wait_ms / 1000
    asked = False
    while True:
        claimed = _claim(pool, fields, actor=actor)
        if claimed is not None or time.monotonic() >= deadline:
            break
        if not asked:
            ask_filler(pool.pk)  # a waiting create wants the pool refilled now
            asked = True
        time.sleep(POLL_SECONDS)
    waited = int((time.monotonic() - started) * 1000)
    if claimed is not None:
        sandbox, token = claimed
        return sandbox, token, {"source": "ready_instance", "hit": True, **said, "wait_ms": waited}
    # A miss is demand too: it wakes an idle pool (docs/warm-pools.md, "The worker").
    with transaction.atomic():
        WarmPool.objects.filter(pk=pool.pk).update(last_demand_at=timezone.now())
        if not asked:
            ask_filler(pool.pk)
    if mode == CheckoutMode.REQUIRE:
        raise DomainError(
            "warm_pool_unavailable",
            f"Warm pool {pool.public_id} has no ready sandbox"
            + (f" (waited {waited} ms)" if wait_ms else ""),
            retryable=True,
            suggested_action="Retry later, wait with --warm-pool-wait, or use "
            "--warm-pool-mode prefer to fall back to a cold create.",
            details={"warm_pool_id": pool.public_id, "wait_ms": waited},
        )
    return cold("cold_create", wait_ms=waited)


def _parsed(spec: Any) -> tuple[str | None, str | None, int]:
    if not isinstance(spec, dict):
        raise DomainError("invalid_request", "warm_pool must be an object {id, mode, wait_ms}")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise DomainError("invalid_request", f"Unknown warm_pool field(s): {', '.join(unknown)}")
    pool_id = spec.get("id")
    if pool_id is not None and (not isinstance(pool_id, str) or not pool_id.strip()):
        raise DomainError("invalid_request", "warm_pool.id must be a warm pool id")
    mode = spec.get("mode")
    if mode is not None and mode not in CheckoutMode.values:
        raise DomainError("invalid_request", "warm_pool.mode must be prefer, require or bypass")
    wait_ms = spec.get("wait_ms")
    if wait_ms is None:
        wait_ms = 0
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or not 0 <= wait_ms <= MAX_WAIT_MS:
        raise DomainError("invalid_request", f"warm_pool.wait_ms must be from 0 to {MAX_WAIT_MS}")
    return (pool_id.strip() if pool_id else None), mode, wait_ms


def _fitting_fields(project: Project, pool: WarmPool, args: dict[str, Any]) -> dict[str, Any]:
    """The request's fields, once sure each one can apply to a sandbox already started."""
    if args.get("snapshot") is not None:
        raise _cannot("snapshot_id", "a sandbox from a snapshot is restored, never checked out")
    if args.get("volumes"):
        raise _cannot("volumes", "volumes are mounted when a sandbox starts")
    if args.get("desktop"):
        raise _cannot("desktop", "a desktop's screen is set up when its sandbox starts")
    given = {key: args.get(key) for key in _VALIDATED}
    fields = sandboxes.validated_create_fields(project, snapshot=None, **given)
    if not fits(project, pool, fields["template"]):
        raise _cannot(
            "template", f"the pool's sandboxes are {pool.template!r}, not {fields['template']!r}"
        )
    for name, pooled in (
        ("vcpus", pool.vcpus),
        ("memory_mb", pool.memory_mb),
        ("disk_mb", pool.disk_mb),
    ):
        asked = args.get(name)
        if asked is not None and asked != pooled:
            raise _cannot(name, f"the pool's sandboxes have {name} {pooled}, not {asked}")
    asked_egress = netpolicy.as_dict(netpolicy.parse(fields["internet_access"], fields["network"]))
    if asked_egress != netpolicy.as_dict(netpolicy.parse(True, {})):
        raise _cannot("network", "egress rules and internet_access are fixed when a sandbox starts")
    return fields


_VALIDATED = (
    "template",
    "envs",
    "metadata",
    "cwd",
    "timeout_ms",
    "timeout_action",
    "auto_resume",
    "network",
    "internet_access",
    "vcpus",
    "memory_mb",
    "disk_mb",
)


def _cannot(field: str, why: str) -> DomainError:
    return DomainError(
        "invalid_request",
        f"{field} cannot apply to a warm pool's sandbox: {why}",
        suggested_action="Create without --warm-pool (or --warm-pool-mode bypass), or use a "
        "warm pool made for these settings.",
        details={"field": field},
    )


def _claim(pool: WarmPool, fields: dict[str, Any], *, actor: Actor) -> tuple[Sandbox, str] | None:
    """Take one ready sandbox of the pool and make it the caller's, or None."""
    ready = Sandbox.objects.filter(
        warm_pool=pool,
        status=SandboxStatus.RUNNING,
        transition="",
        # Only sandboxes this server runs: its runtime is the one that can act on them
        # (docs/runtime-ownership.md).
        owner=this_instance(),
        # Made for the pool as it is now (template, build and size), not before an update
        # or a rollout: read in the claim itself, so a rollout recorded while this
        # request ran is seen (docs/warm-pools.md, "Rollout").
        warm_pool_generation=F("warm_pool__generation"),
    )
    if pool.stale_after_seconds:
        ready = ready.filter(
            started_at__gte=timezone.now() - timedelta(seconds=pool.stale_after_seconds)
        )
    token = new_secret(TRAFFIC)
    now = timezone.now()
    mine = {
        "warm_pool": None,
        "envs": fields["envs"],
        "metadata": fields["metadata"],
        "cwd": fields["cwd"],
        "network": fields["network"],
        "timeout_ms": fields["timeout_ms"],
        "timeout_action": fields["timeout_action"],
        "auto_resume": fields["auto_resume"],
        "timeout_at": now + timedelta(milliseconds=fields["timeout_ms"]),
        # It becomes the caller's sandbox now: listed (and ordered) from this moment.
        "created_at": now,
        "created_by_key": actor.api_key,
        "traffic_token_prefix": token.prefix,
        "traffic_token_digest": token.digest,
    }
    # A draining or deleted pool hands nothing out.
    ordered = ready.filter(warm_pool__state__in=SERVING).order_by("started_at", "pk")
    needs_cwd = fields["cwd"] != sandboxes.WORKSPACE
    # One transaction for the usual checkout: claim, counters, both events, the refill.
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            sandbox = _claim_in_one_statement(pool, ready, ordered, mine, now)
        else:
            sandbox = _claim_oldest(pool, ready, ordered, mine, now)
        if sandbox is None:
            return None
        event = _Checkout(sandbox, pool, actor)
        # Refill behind the checkout, a moment later: the new sandbox's start (often in
        # this very process) then does not compete with this answer for the CPU.
        ask_filler(pool.pk, after=REFILL_AFTER_SECONDS)
        if not needs_cwd:
            event.record(EventStatus.REQUESTED, EventStatus.SUCCEEDED)
            return sandbox, token.raw
        event.record(EventStatus.REQUESTED)
    try:
        # The client expects its cwd to exist from the start, as on a cold create.
        get_driver().files(sandbox.runtime_id).mkdir(sandbox.cwd)
    except RuntimeError_ as exc:
        error = DomainError(exc.code, f"Could not make cwd {sandbox.cwd}: {exc}")
        event.record(EventStatus.FAILED, error=error)
        sandboxes.destroy_sandbox(sandbox, actor=SYSTEM, reason="warm_pool_checkout")
        raise error from exc
    event.record(EventStatus.SUCCEEDED)
    return sandbox, token.raw


def _claim_in_one_statement(
    pool: WarmPool, ready: QuerySet[Sandbox], ordered: QuerySet[Sandbox], mine: dict, now: Any
) -> Sandbox | None:
    """PostgreSQL: pick, claim, count and read back the sandbox in one round trip.

    Django 5.2's ORM has no UPDATE ... RETURNING, so the ORM's own UPDATE (the `ready`
    conditions, the candidate picked by a FOR UPDATE SKIP LOCKED subquery so concurrent
    checkouts take different sandboxes instead of queueing on one) is compiled to SQL and
    wrapped in a data-modifying WITH: it returns the claimed row, and the pool's counter
    moves in the same statement only when a row was claimed. A candidate that changed
    under the lock is rechecked by PostgreSQL and skipped; the outer UPDATE keeps the
    `ready` conditions anyway, so it can only take a sandbox that is still ready."""
    pick = ordered.select_for_update(skip_locked=True, of=("self",)).values("pk")[:1]
    update = cast(UpdateQuery, ready.filter(pk__in=pick).query.chain(UpdateQuery))
    update.add_update_values(mine)
    claim_sql, claim_params = update.get_compiler(connection.alias).as_sql()
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in Sandbox._meta.concrete_fields)
    sql = (
        f"WITH claimed AS ({claim_sql} RETURNING {columns}), "
        f"counted AS (UPDATE {quote(WarmPool._meta.db_table)} "
        f"SET claimed_count = claimed_count + 1, last_demand_at = %s "
        f"WHERE id = %s AND EXISTS (SELECT 1 FROM claimed)) "
        f"SELECT {columns} FROM claimed"
    )
    found = list(Sandbox.objects.raw(sql, [*claim_params, now, pool.pk]))
    if not found:
        return None
    sandbox = found[0]
    sandbox.project = pool.project  # the pool's, already loaded: no query
    return sandbox


def _claim_oldest(
    pool: WarmPool, ready: QuerySet[Sandbox], ordered: QuerySet[Sandbox], mine: dict, now: Any
) -> Sandbox | None:
    """SQLite: one writer at a time (this transaction holds the write lock from its start),
    so the oldest ready one is ours; the UPDATE stays conditional anyway."""
    won = ordered.values_list("pk", flat=True).first()
    if won is None or not ready.filter(pk=won).update(**mine):
        return None
    WarmPool.objects.filter(pk=pool.pk).update(
        claimed_count=F("claimed_count") + 1, last_demand_at=now
    )
    return Sandbox.objects.select_related("project").get(pk=won)


class _Checkout:
    """The checkout's lifecycle events: a `create` (the 0.1.9 client knows nine
    operations) by the caller, whose metadata names the pool it came from."""

    def __init__(self, sandbox: Sandbox, pool: WarmPool, actor: Actor) -> None:
        self.sandbox = sandbox
        self.actor = actor
        self.metadata: dict[str, Any] = {
            "timeout_action": sandbox.timeout_action,
            "template": sandbox.template,
            "warm_pool_id": pool.public_id,
            "warm_pool_checkout": "ready_instance",
        }
        if actor.api_key is not None:
            self.metadata["api_key_id"] = actor.api_key.public_id

    def record(self, *statuses: str, error: DomainError | None = None) -> None:
        """One event per status, written together (one INSERT)."""
        extra: dict[str, str] = {}
        if error is not None:
            extra = {"error_code": error.code, "error_message": error.message}
        record_events(
            self.sandbox.project,
            [
                {
                    "operation": Operation.CREATE,
                    "status": status,
                    "actor_kind": self.actor.kind,
                    "sandbox_id": self.sandbox.public_id,
                    "user_id": str(self.actor.user.pk) if self.actor.user is not None else "",
                    "reason": self.actor.reason,
                    "metadata": self.metadata,
                    **extra,
                }
                for status in statuses
            ],
        )
