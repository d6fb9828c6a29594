"""The `webhook.deliver` job: one attempt per run, signed, logged, and retried with
exponential back-off until WEBHOOK_MAX_ATTEMPTS, then `dead_letter`. A webhook whose
deliveries keep ending in dead_letter is disabled, with an audit entry."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from console.audit import service as audit
from console.jobs import RetryLater, backoff_delay, task
from console.models import Delivery, DeliveryAttempt, DeliveryStatus, Webhook
from console.webhooks import client, secrets, signing, targets
from console.webhooks.service import DELIVER

log = logging.getLogger(__name__)

RETRY_CAP_SECONDS = 3600.0
DONE = (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD_LETTER)


def body_for(delivery: Delivery) -> bytes:
    event = delivery.event
    envelope = {
        "type": f"lifecycle.{delivery.operation}",
        "timestamp": event.get("occurred_at"),
        "data": event,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


@task(DELIVER)
def deliver(payload: dict[str, Any]) -> None:
    found = (
        Delivery.objects.select_related("webhook__project__team")
        .filter(pk=int(payload["delivery"]))
        .first()
    )
    if found is None or found.delivery_status in DONE:
        return
    webhook = found.webhook
    if not webhook.enabled and not found.is_test:
        _close(found, DeliveryStatus.DEAD_LETTER, "the webhook was disabled before delivery")
        return
    Delivery.objects.filter(pk=found.pk).update(delivery_status=DeliveryStatus.IN_PROGRESS)
    outcome = attempt(webhook, found)
    _record(found, outcome)


def attempt(webhook: Webhook, delivery: Delivery) -> client.Outcome:
    """Sign and send once. Refusals and a secret that cannot be read are failed
    attempts like any other (logged, retried), never exceptions."""
    began = time.monotonic()
    try:
        target = targets.resolve(webhook.url)
        secret = secrets.decrypt(webhook.secret_encrypted)
    except targets.TargetRefused as refused:
        return client.Outcome(
            _ms(began), error_code="target_refused", error_message=refused.message
        )
    except secrets.SecretError as exc:
        return client.Outcome(_ms(began), error_code="secret_unreadable", error_message=str(exc))
    body = body_for(delivery)
    headers = signing.headers(secret, delivery.public_id, int(time.time()), body)
    return client.post(target, body, headers)


def _ms(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def _record(delivery: Delivery, outcome: client.Outcome) -> None:
    now = timezone.now()
    number = delivery.attempt_count + 1
    error = outcome.error_message or (
        "" if outcome.ok else f"the receiver answered HTTP {outcome.response_status}"
    )
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            attempt_number=number,
            attempted_at=now,
            duration_ms=outcome.duration_ms,
            response_status=outcome.response_status,
            error_code=outcome.error_code or ("" if outcome.ok else "http_status"),
            error_message=error[:500],
            response_excerpt=outcome.excerpt,
        )
        common = {
            "attempt_count": number,
            "last_attempt_at": now,
            "last_response_status": outcome.response_status,
            "last_error": error[:500],
        }
        if outcome.ok:
            _close(delivery, DeliveryStatus.SUCCEEDED, "", **common)
            return
        if number >= settings.WEBHOOK_MAX_ATTEMPTS:
            _close(delivery, DeliveryStatus.DEAD_LETTER, error, **common)
            return
        delay = backoff_delay(number, settings.WEBHOOK_RETRY_BASE_MS / 1000, RETRY_CAP_SECONDS)
        retry_at = now + timedelta(seconds=delay)
        Delivery.objects.filter(pk=delivery.pk).update(
            delivery_status=DeliveryStatus.QUEUED, next_attempt_at=retry_at, **common
        )
        Webhook.objects.filter(pk=delivery.webhook_id).update(
            last_delivery_at=now, last_delivery_status=DeliveryStatus.QUEUED, last_error=error[:500]
        )
    raise RetryLater(retry_at, f"attempt {number} failed: {error}")


def _close(delivery: Delivery, status: str, error: str, **fields: Any) -> None:
    """The delivery's last word, and the webhook's summary (disabling it when its
    deliveries keep failing)."""
    now = timezone.now()
    fields.setdefault("last_error", error[:500])
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            delivery_status=status, next_attempt_at=None, **fields
        )
        summary: dict[str, Any] = {
            "last_delivery_at": now,
            "last_delivery_status": status,
            "last_error": error[:500],
        }
        if delivery.is_test:
            Webhook.objects.filter(pk=delivery.webhook_id).update(**summary)
            return
        if status == DeliveryStatus.SUCCEEDED:
            summary["consecutive_failures"] = 0
        else:
            summary["consecutive_failures"] = F("consecutive_failures") + 1
        Webhook.objects.filter(pk=delivery.webhook_id).update(**summary)
        if status == DeliveryStatus.DEAD_LETTER:
            _disable_if_failing(delivery.webhook_id)


def _disable_if_failing(webhook_pk: int) -> None:
    limit = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    reason = f"disabled after {limit} deliveries in a row failed"
    # Conditional: of several workers closing failures at once, one disables and audits.
    disabled = Webhook.objects.filter(
        pk=webhook_pk, enabled=True, consecutive_failures__gte=limit
    ).update(enabled=False, disabled_reason=reason, updated_at=timezone.now())
    if not disabled:
        return
    webhook = Webhook.objects.select_related("project__team").get(pk=webhook_pk)
    log.warning("webhook %s %s", webhook.public_id, reason)
    audit.record(
        "webhook.auto_disabled",
        team=webhook.project.team,
        actor_label="system",
        target_type="webhook",
        target_id=webhook.public_id,
        url=webhook.url,
        project=webhook.project.public_id,
        consecutive_failures=webhook.consecutive_failures,
    )
