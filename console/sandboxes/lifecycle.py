"""Lifecycle events (docs/api.md §7.2): record every sandbox/snapshot state change, shape it
for the API, and publish it to the project's channel-layer group for live views.

Live listeners (the lifecycle WebSocket, console pages) join `group_name(project)`;
each message is `{"type": "lifecycle.event", "event": <event dict>}`.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from console import live
from console.models import ActorKind, EventStatus, LifecycleEvent, Project
from console.timefmt import iso
from console.webhooks import service as webhooks

log = logging.getLogger(__name__)

EVENT_KEYS_OPTIONAL = (
    "sandbox_id",
    "snapshot_id",
    "source_sandbox_id",
    "target_sandbox_id",
    "user_id",
    "reason",
    "error_code",
    "error_message",
)


def group_name(project: Project) -> str:
    return f"lifecycle.{project.public_id}"


def record_event(
    project: Project,
    operation: str,
    *,
    status: str = EventStatus.SUCCEEDED,
    actor_kind: str = ActorKind.USER,
    sandbox_id: str = "",
    snapshot_id: str = "",
    source_sandbox_id: str = "",
    target_sandbox_id: str = "",
    user_id: str = "",
    reason: str = "",
    error_code: str = "",
    error_message: str = "",
    metadata: dict[str, Any] | None = None,
) -> LifecycleEvent:
    """Store one event and its webhook deliveries in one transaction (a stored event is
    never left undelivered, and one commit is cheaper than one per row), and publish it
    once the surrounding transaction commits."""
    with transaction.atomic():
        event = LifecycleEvent.objects.create(
            project=project,
            # Nanosecond clock: a total order for replay and `after_event_id` resumption.
            seq=time.time_ns(),
            operation=operation,
            status=status,
            actor_kind=actor_kind,
            sandbox_id=sandbox_id,
            snapshot_id=snapshot_id,
            source_sandbox_id=source_sandbox_id,
            target_sandbox_id=target_sandbox_id,
            user_id=user_id,
            reason=reason[:200],
            error_code=error_code[:64],
            error_message=error_message[:500],
            metadata=metadata or {},
        )
        payload = event_to_dict(event)
        webhooks.queue_deliveries(event, payload)
        group = group_name(project)
        transaction.on_commit(lambda: publish(group, payload))
    return event


def record_events(project: Project, events: list[dict[str, Any]]) -> list[LifecycleEvent]:
    """Several events of one change at once (each dict: `record_event`'s keywords): one
    INSERT, one webhook lookup and one publication (one hand-off to the server's loop)
    instead of one of each per event, for a path that counts its round trips (the warm-pool checkout, bench/README.md). Same rows, deliveries and
    publications, in the given order; no savepoint of its own (it adds nothing inside
    the caller's transaction: a failure rolls that back whole)."""
    rows = []
    base = time.time_ns()
    now = timezone.now()
    for offset, given in enumerate(events):
        spec = {"status": EventStatus.SUCCEEDED, "actor_kind": ActorKind.USER, **given}
        for key in ("reason", "error_code", "error_message"):
            spec[key] = spec.get(key, "")[: _CUT[key]]
        spec["metadata"] = spec.get("metadata") or {}
        # Distinct, ordered seq and occurred_at even when the clock does not move between
        # rows: lists order by either.
        at = now + timedelta(microseconds=offset)
        rows.append(LifecycleEvent(project=project, seq=base + offset, occurred_at=at, **spec))
    with transaction.atomic(savepoint=False):
        stored = LifecycleEvent.objects.bulk_create(rows)
        payloads = [event_to_dict(event) for event in stored]
        webhooks.queue_deliveries_of(project.pk, list(zip(stored, payloads, strict=True)))
        messages = [{"type": "lifecycle.event", "event": payload} for payload in payloads]
        transaction.on_commit(functools.partial(live.group_send_all, group_name(project), messages))
    return stored


_CUT = {"reason": 200, "error_code": 64, "error_message": 500}


def publish(group: str, event: dict[str, Any]) -> None:
    # Best effort; /v1 lifecycle sockets also read the table on a slow timer.
    live.group_send(group, {"type": "lifecycle.event", "event": event})


def event_to_dict(event: LifecycleEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(event.id),
        "occurred_at": iso(event.occurred_at),
        "audience": event.audience,
        "operation": event.operation,
        "status": event.status,
        "actor_kind": event.actor_kind,
    }
    for key in EVENT_KEYS_OPTIONAL:
        body[key] = getattr(event, key) or None
    body["metadata"] = event.metadata or {}
    return body


def events_for(
    project: Project,
    *,
    sandbox_id: str | None = None,
    snapshot_id: str | None = None,
    source_sandbox_id: str | None = None,
    target_sandbox_id: str | None = None,
    operation: str | None = None,
    status: str | None = None,
    since=None,
    until=None,
    about_sandbox: str | None = None,
):
    """The project's customer-audience events, filtered; `about_sandbox` matches a
    sandbox in any role (itself, fork source or target)."""
    from django.db.models import Q

    rows = LifecycleEvent.objects.filter(project=project, audience="customer")
    exact = {
        "sandbox_id": sandbox_id,
        "snapshot_id": snapshot_id,
        "source_sandbox_id": source_sandbox_id,
        "target_sandbox_id": target_sandbox_id,
        "operation": operation,
        "status": status,
    }
    rows = rows.filter(**{k: v for k, v in exact.items() if v})
    if about_sandbox:
        rows = rows.filter(
            Q(sandbox_id=about_sandbox)
            | Q(source_sandbox_id=about_sandbox)
            | Q(target_sandbox_id=about_sandbox)
        )
    if since is not None:
        rows = rows.filter(occurred_at__gte=since)
    if until is not None:
        rows = rows.filter(occurred_at__lte=until)
    return rows
