"""Webhooks as a domain: create, change, delete, and turn lifecycle events into
deliveries (docs/webhooks.md). Deliveries are queued in the same transaction as the
event, so an event that is stored is always delivered (or logged as failed)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console import jobs
from console.actor import Actor
from console.audit import service as audit
from console.errors import DomainError
from console.models import (
    Delivery,
    DeliveryStatus,
    EventStatus,
    LifecycleEvent,
    Operation,
    Project,
    Webhook,
)
from console.timefmt import iso
from console.webhooks import secrets, targets

DELIVER = "webhook.deliver"
MAX_WEBHOOKS_PER_PROJECT = 20
UPDATABLE = ("url", "operations", "signing_secret", "enabled")
# What a webhook may subscribe to: the operations the 0.1.9 client can parse. An
# operation added later would make `webhooks list` and `deliveries` fail in that client,
# so it must be added here deliberately.
SUBSCRIBABLE = (
    Operation.CREATE,
    Operation.DESTROY,
    Operation.TIMEOUT_UPDATED,
    Operation.TIMEOUT_EXPIRED,
    Operation.HIBERNATE,
    Operation.SNAPSHOT_CREATED,
    Operation.RESUME_FROM_SNAPSHOT,
    Operation.FORK,
    Operation.RECONCILE,
)


def get_webhook(project: Project, public_id: str) -> Webhook:
    found = Webhook.objects.filter(project=project, public_id=public_id).first()
    if found is None:
        raise DomainError("webhook_not_found", f"Webhook {public_id} not found")
    return found


def get_delivery(webhook: Webhook, public_id: str) -> Delivery:
    found = Delivery.objects.filter(webhook=webhook, public_id=public_id).first()
    if found is None:
        raise DomainError("delivery_not_found", f"Delivery {public_id} not found")
    return found


def _checked_url(value: Any) -> str:
    targets.resolve(value)  # TargetRefused is the answer for a URL we will not call
    return str(value).strip()


def _checked_operations(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise DomainError("invalid_request", "operations must be a non-empty list")
    unknown = [op for op in value if op not in SUBSCRIBABLE]
    if unknown:
        raise DomainError(
            "invalid_request",
            f"Unknown operation(s) {', '.join(map(str, unknown))}; "
            f"choose from {', '.join(SUBSCRIBABLE)}",
        )
    return list(dict.fromkeys(value))


def _checked_secret(value: Any) -> str:
    secrets.signing_key(value)  # SecretError for anything but a whsec_ secret
    return str(value)


def _checked_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DomainError("invalid_request", "enabled must be true or false")
    return value


def create_webhook(
    project: Project,
    *,
    url: Any,
    operations: Any,
    signing_secret: Any,
    enabled: Any = True,
    actor: Actor | None = None,
) -> Webhook:
    fields = {
        "url": _checked_url(url),
        "operations": _checked_operations(operations),
        "secret_encrypted": secrets.encrypt(_checked_secret(signing_secret)),
        "enabled": _checked_enabled(enabled),
    }
    with transaction.atomic():
        # Lock the project row so two creates cannot both pass the count.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS_PER_PROJECT:
            raise DomainError(
                "quota_exceeded", f"A project can have at most {MAX_WEBHOOKS_PER_PROJECT} webhooks"
            )
        created_by = actor.user if actor is not None else None
        webhook = Webhook.objects.create(project=project, created_by=created_by, **fields)
        _audit("webhook.created", webhook, actor=actor)
    return webhook


def update_webhook(
    webhook: Webhook, changes: dict[str, Any], *, actor: Actor | None = None
) -> Webhook:
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise DomainError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    if not changes:
        raise DomainError("invalid_request", f"Send at least one of {', '.join(UPDATABLE)}")
    if "url" in changes:
        webhook.url = _checked_url(changes["url"])
    if "operations" in changes:
        webhook.operations = _checked_operations(changes["operations"])
    if "signing_secret" in changes:
        webhook.secret_encrypted = secrets.encrypt(_checked_secret(changes["signing_secret"]))
    if "enabled" in changes:
        enabled = _checked_enabled(changes["enabled"])
        if enabled and not webhook.enabled:
            webhook.consecutive_failures = 0
            webhook.disabled_reason = ""
        webhook.enabled = enabled
    webhook.updated_at = timezone.now()
    with transaction.atomic():
        webhook.save()
        changed = sorted(k for k in changes if k != "signing_secret")
        if "signing_secret" in changes:
            changed.append("signing_secret (rotated)")
        _audit("webhook.updated", webhook, actor=actor, changed=changed)
    return webhook


def delete_webhook(webhook: Webhook, *, actor: Actor | None = None) -> None:
    with transaction.atomic():
        _audit("webhook.deleted", webhook, actor=actor)
        webhook.delete()


def _audit(action: str, webhook: Webhook, *, actor: Actor | None, **extra: Any) -> None:
    audit.record(
        action,
        team=webhook.project.team,
        actor=actor,
        target_type="webhook",
        target_id=webhook.public_id,
        url=webhook.url,
        project=webhook.project.public_id,
        **extra,
    )


def queue_deliveries(event: LifecycleEvent, payload: dict[str, Any]) -> list[Delivery]:
    """A delivery (and its job) for each enabled webhook of the event's project that
    subscribes to its operation. Called inside the event's own transaction. Only outcomes
    (succeeded, failed) are delivered: every operation is first recorded as `requested`,
    and a receiver wants to know what happened, once per operation."""
    if event.audience != "customer" or event.status == EventStatus.REQUESTED:
        return []
    hooks = [
        hook
        for hook in Webhook.objects.filter(project_id=event.project_id, enabled=True)
        if event.operation in hook.operations
    ]
    return [_queue(hook, payload, is_test=False) for hook in hooks]


def queue_deliveries_of(
    project_pk: int, events: list[tuple[LifecycleEvent, dict[str, Any]]]
) -> list[Delivery]:
    """`queue_deliveries` for several events of one project, with one webhook lookup, and
    none when no event is delivered (all `requested`)."""
    wanted = [
        (event, payload)
        for event, payload in events
        if event.audience == "customer" and event.status != EventStatus.REQUESTED
    ]
    if not wanted:
        return []
    hooks = list(Webhook.objects.filter(project_id=project_pk, enabled=True))
    return [
        _queue(hook, payload, is_test=False)
        for event, payload in wanted
        for hook in hooks
        if event.operation in hook.operations
    ]


def send_test_event(webhook: Webhook) -> Delivery:
    """A made-up event for the webhook's first operation, marked `metadata.test`."""
    event = {
        "id": str(uuid.uuid4()),
        "occurred_at": iso(timezone.now()),
        "audience": "customer",
        "operation": webhook.operations[0] if webhook.operations else Operation.CREATE,
        "status": EventStatus.SUCCEEDED,
        "actor_kind": "user",
        "sandbox_id": None,
        "metadata": {"test": True},
    }
    with transaction.atomic():
        return _queue(webhook, event, is_test=True)


def _queue(webhook: Webhook, event: dict[str, Any], *, is_test: bool) -> Delivery:
    now = timezone.now()
    delivery = Delivery.objects.create(
        webhook=webhook,
        event_id=event["id"],
        event=event,
        operation=event["operation"],
        status=event["status"],
        is_test=is_test,
        next_attempt_at=now,
    )
    jobs.enqueue(
        DELIVER,
        {"delivery": delivery.pk},
        # A few claims more than attempts: a worker that dies mid-attempt costs one.
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS + 3,
    )
    Webhook.objects.filter(pk=webhook.pk).update(last_delivery_status=DeliveryStatus.QUEUED)
    return delivery


def webhook_to_dict(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.public_id,
        "url": webhook.url,
        "operations": list(webhook.operations),
        "enabled": webhook.enabled,
        "has_signing_secret": bool(webhook.secret_encrypted),
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
        "last_delivery_at": iso(webhook.last_delivery_at) if webhook.last_delivery_at else None,
        "last_delivery_status": webhook.last_delivery_status or None,
        "last_error": webhook.last_error or None,
    }


def delivery_to_dict(delivery: Delivery) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return iso(value) if value else None

    return {
        "id": delivery.public_id,
        "webhook_id": delivery.webhook.public_id,
        "event_id": delivery.event_id,
        "operation": delivery.operation,
        "status": delivery.status,
        "delivery_status": delivery.delivery_status,
        "attempt_count": delivery.attempt_count,
        "created_at": iso(delivery.created_at),
        "next_attempt_at": when(delivery.next_attempt_at),
        "last_attempt_at": when(delivery.last_attempt_at),
        "last_response_status": delivery.last_response_status,
        "last_error": delivery.last_error or None,
    }


def delivery_detail(delivery: Delivery) -> dict[str, Any]:
    return {
        "delivery": delivery_to_dict(delivery),
        "event": delivery.event,
        "attempts": [
            {
                "id": attempt.public_id,
                "delivery_id": delivery.public_id,
                "attempt_number": attempt.attempt_number,
                "attempted_at": iso(attempt.attempted_at),
                "duration_ms": attempt.duration_ms,
                "response_status": attempt.response_status,
                "error_code": attempt.error_code or None,
                "error_message": attempt.error_message or None,
            }
            for attempt in delivery.attempts.all()
        ],
    }
